package schemas

import (
	"encoding/json"
	"testing"
)

// TestAppendJSONString: the output is one valid JSON string that decodes
// to the input (invalid UTF-8 to U+FFFD), with control characters and DEL
// escaped.
func TestAppendJSONString(t *testing.T) {
	for _, tc := range []struct{ in, want, text string }{
		{"acme", "acme", `"acme"`},
		{`a"b\c`, `a"b\c`, `"a\"b\\c"`},
		{"line\nnext\ttab\rret", "line\nnext\ttab\rret", `"line\nnext\ttab\rret"`},
		{"\x00\x1f\x7f", "\x00\x1f\x7f", `"\u0000\u001f\u007f"`},
		{"café ✓", "café ✓", `"café ✓"`},
		{"bad\xffbyte", "bad\ufffdbyte", `"bad\ufffdbyte"`},
	} {
		got := string(AppendJSONString([]byte("x"), tc.in))
		if got != "x"+tc.text {
			t.Errorf("AppendJSONString(%q) = %s, want %s", tc.in, got[1:], tc.text)
		}
		var back string
		if err := json.Unmarshal([]byte(got[1:]), &back); err != nil || back != tc.want {
			t.Errorf("%q: decodes to %q (%v), want %q", tc.in, back, err, tc.want)
		}
	}
}
