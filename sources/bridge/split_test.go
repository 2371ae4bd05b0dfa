package bridge

import (
	"bytes"
	"encoding/json"
	"testing"
	"unsafe"
)

func TestSplitRecords(t *testing.T) {
	f := func(body string, want ...string) {
		t.Helper()
		got, err := splitRecords(nil, []byte(body))
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d records %q, want %d", body, len(got), got, len(want))
		}
		for i := range got {
			if string(got[i]) != want[i] {
				t.Errorf("%q: record %d = %q, want %q", body, i, got[i], want[i])
			}
		}
	}
	f(`{"a":1}`, `{"a":1}`)
	f(" \n[ ]\n")
	f(`[{"a":"}"},{"b":"\"]"}]`, `{"a":"}"}`, `{"b":"\"]"}`)
	f("{\"a\":[{}]}\n{\"b\":\"\\\\\"}\r\n\n", `{"a":[{}]}`, `{"b":"\\"}`)
	f(`[ {"x":{"y":[1,{"z":null}]}} , {} ]`, `{"x":{"y":[1,{"z":null}]}}`, `{}`)
}

// FuzzSplitRecords checks the splitter against encoding/json: a body that
// is a valid JSON array of objects, or a valid object, always splits, into
// records that are valid JSON, sub-slices of the body in order; whatever
// splits is made only of objects.
func FuzzSplitRecords(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `[{"a":1},{"b":[2,3]}]`, "{}\n{}\n", `[]`, `[{"a":"\"}"}]`, `{"a":[}`, `[{},]`, `"x"`,
		`[{"a":"\u005c"}]`, "{\"a\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := splitRecords(nil, body)
		trimmed := body[skipWS(body, 0):] // JSON whitespace only: not \f or \v
		var arr []json.RawMessage
		var obj map[string]json.RawMessage
		switch {
		case len(trimmed) > 0 && trimmed[0] == '[' && json.Unmarshal(body, &arr) == nil && allObjects(arr):
			if err != nil {
				t.Fatalf("valid array of objects refused: %v", err)
			}
			if len(recs) != len(arr) {
				t.Fatalf("%d records, encoding/json sees %d", len(recs), len(arr))
			}
		case json.Unmarshal(body, &obj) == nil && obj != nil:
			if err != nil || len(recs) != 1 {
				t.Fatalf("valid object: %d records, %v", len(recs), err)
			}
		}
		if err != nil {
			return
		}
		prev := 0
		base := uintptr(unsafe.Pointer(unsafe.SliceData(body)))
		for i, r := range recs {
			if len(r) < 2 || r[0] != '{' || r[len(r)-1] != '}' {
				t.Fatalf("record %d %q is not an object", i, r)
			}
			off := int(uintptr(unsafe.Pointer(unsafe.SliceData(r))) - base)
			if off < prev || off+len(r) > len(body) || !bytes.Equal(body[off:off+len(r)], r) {
				t.Fatalf("record %d is not a sub-slice of the body in order", i)
			}
			prev = off + len(r)
			if json.Valid(body) && !json.Valid(r) {
				t.Fatalf("record %d %q of a valid body is not valid JSON", i, r)
			}
		}
	})
}

func allObjects(arr []json.RawMessage) bool {
	for _, a := range arr {
		if len(a) == 0 || a[0] != '{' {
			return false
		}
	}
	return true
}
