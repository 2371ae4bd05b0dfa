package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// qty builds a Quantities array from unit/count pairs.
func qty(m map[Unit]int64) [NumUnits]int64 {
	var q [NumUnits]int64
	for u, v := range m {
		q[u] = v
	}
	return q
}

// sonnetBuckets is the README's reference request: Claude Sonnet 4.5, 1,200
// uncached + 2,000 cache-write (5m) + 8,000 cache-read input tokens, 450
// output tokens of which 120 are reasoning tokens.
var sonnetBuckets = qty(map[Unit]int64{
	UnitInput: 1200, UnitCachedInput: 8000, UnitCacheWrite5m: 2000,
	UnitOutput: 330, UnitReasoning: 120,
})

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonPath extracts a sub-document from a JSON file for building test
// messages (test code may use encoding/json freely).
func jsonPath(t testing.TB, doc []byte, path ...string) json.RawMessage {
	t.Helper()
	cur := json.RawMessage(doc)
	for _, p := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cur, &m); err != nil {
			var a []json.RawMessage
			if err2 := json.Unmarshal(cur, &a); err2 != nil {
				t.Fatalf("path %v: %v", path, err)
			}
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			cur = a[i]
			continue
		}
		v, ok := m[p]
		if !ok {
			t.Fatalf("path %v: no %q", path, p)
		}
		cur = v
	}
	return cur
}

func mustDecoder(t testing.TB, format string, opts DecodeOptions) Decoder {
	t.Helper()
	d, err := DecoderFor(format, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// decodeOne decodes msg and requires exactly one event.
func decodeOne(t *testing.T, d Decoder, msg []byte) UsageEvent {
	t.Helper()
	evs, err := d.Decode(nil, msg)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	return evs[0]
}

// wantDecodeError decodes msg, requires a DecodeError for field whose reason
// contains reason, and checks that nothing was appended.
func wantDecodeError(t *testing.T, d Decoder, msg []byte, index int, field, reason string) {
	t.Helper()
	dst := make([]UsageEvent, 1, 8)
	out, err := d.Decode(dst, msg)
	if err == nil {
		t.Fatalf("decoded %d events, want error on %s (%s)", len(out)-1, field, reason)
	}
	if len(out) != 1 {
		t.Errorf("error returned %d events appended, want none", len(out)-1)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	if de.Decoder != d.Name() && d.Name() != FormatAuto {
		t.Errorf("decoder %q, want %q", de.Decoder, d.Name())
	}
	if de.Field != field || de.Index != index || !strings.Contains(de.Reason, reason) {
		t.Errorf("error %q: got index %d field %q reason %q; want index %d field %q reason containing %q",
			err, de.Index, de.Field, de.Reason, index, field, reason)
	}
}

// checkInvariants is what every fuzz target asserts about a decoded event.
func checkInvariants(t *testing.T, evs []UsageEvent) {
	t.Helper()
	for i, ev := range evs {
		if ev.ID == "" || ev.CustomerID == "" || ev.Model == "" {
			t.Fatalf("event %d: empty id/customer/model: %+v", i, ev)
		}
		if ev.Time.IsZero() || ev.Time.Before(minEventTime) {
			t.Fatalf("event %d: bad time %v", i, ev.Time)
		}
		for u, q := range ev.Quantities {
			if q < 0 {
				t.Fatalf("event %d: negative %s %d", i, Unit(u), q)
			}
		}
		if ev.Tier >= NumTiers {
			t.Fatalf("event %d: tier %d", i, ev.Tier)
		}
		if ev.ReportedCost.Valid && ev.ReportedCost.Decimal.IsNegative() {
			t.Fatalf("event %d: negative cost", i)
		}
		if ev.Source == "" {
			t.Fatalf("event %d: no source", i)
		}
		if err := ev.Validate(ev.Time); err != nil {
			var ve *ValidationError
			// Validate may still refuse over-long ids; everything else
			// is the decoder's job.
			if !errors.As(err, &ve) || (ve.Field != "id" && ve.Field != "customer_id") {
				t.Fatalf("event %d: %v", i, err)
			}
		}
	}
}

var refTime = time.Date(2026, 2, 22, 0, 0, 0, 123000000, time.UTC)

func readTestdataFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDaysFromCivil(t *testing.T) {
	for d := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2110; d = d.AddDate(0, 0, 1) {
		if got, want := daysFromCivil(d.Year(), int(d.Month()), d.Day()), d.Unix()/86400; got != want {
			t.Fatalf("%v: %d, want %d", d, got, want)
		}
		if daysIn(d.Month(), d.Year()) != time.Date(d.Year(), d.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day() {
			t.Fatalf("daysIn %v", d)
		}
	}
	for _, y := range []int{0, 1, 399, 400, 1600, 1900, 9999} {
		for m := 1; m <= 12; m++ {
			want := time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
			if got := daysFromCivil(y, m, 1); got != want {
				t.Fatalf("%d-%d: %d want %d", y, m, got, want)
			}
		}
	}
}

func TestHasSpecialByte(t *testing.T) {
	for c := range 256 {
		special := c == '"' || c == '\\' || c < 0x20 || c >= 0x80
		for pos := range 8 {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			w := uint64(0)
			for i := 7; i >= 0; i-- {
				w = w<<8 | uint64(b[i])
			}
			if hasSpecialByte(w) != special {
				t.Fatalf("byte %#x at %d: got %v", c, pos, !special)
			}
		}
	}
}

// TestWhitespaceRuns pins the 8-byte whitespace fast path at every run
// length around its boundaries.
func TestWhitespaceRuns(t *testing.T) {
	d := mustDecoder(t, FormatGateway, DecodeOptions{})
	for n := range 40 {
		pad := strings.Repeat(" ", n)
		for _, sep := range []string{pad, "\n" + pad, pad + "\t", "\r\n" + pad + "\n" + pad} {
			msg := "{" + sep + `"id"` + sep + ":" + sep + `"e"` + sep + "," + sep +
				`"time":1771718400123,"customer_id":"c","model":"m","usage":{` + sep + "}" + sep + "}" + sep
			if _, err := d.Decode(nil, []byte(msg)); err != nil {
				t.Fatalf("%d spaces %q: %v", n, sep, err)
			}
		}
	}
}

// TestConcurrentDecode shares each decoder between goroutines, as the
// pipeline's partition workers do (run with -race).
func TestConcurrentDecode(t *testing.T) {
	msgs := map[string][]byte{
		FormatGateway:    readTestdataFile(t, "examples/gateway_event.json"),
		FormatLiteLLM:    readTestdata(t, "litellm_standard_logging_payload.json"),
		FormatOpenRouter: readTestdata(t, "openrouter_broadcast_webhook_otlp.json"),
		FormatMeter:      readTestdata(t, "amberflo_meter_record.json"),
	}
	for format, msg := range msgs {
		d := mustDecoder(t, format, DecodeOptions{})
		want, err := d.Decode(nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		for range 4 {
			go func() {
				var dst []UsageEvent
				var err error
				for range 200 {
					if dst, err = d.Decode(dst[:0], msg); err != nil || len(dst) != len(want) || dst[0].ID != want[0].ID {
						done <- fmt.Errorf("%s: %v", format, err)
						return
					}
				}
				done <- nil
			}()
		}
		for range 4 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
}
