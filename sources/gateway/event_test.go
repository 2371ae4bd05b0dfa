package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestAppendEventStrings: whatever an upstream names its model or id, the
// event is valid JSON that the strict gateway decoder accepts, with the
// same strings (invalid UTF-8 replaced).
func TestAppendEventStrings(t *testing.T) {
	for _, s := range []string{"plain", `quote " and \ backslash`, "tab\tnewline\ncontrol\x01\x7f", "ünïcødé ✓ 𝄞", "bad \xff utf8"} {
		u := usage{kind: usageOpenAI, raw: []byte(`{"prompt_tokens":1,"completion_tokens":2}`)}
		ev := appendEvent(nil, &eventInput{id: "id " + s, time: testNow, customer: "acme", provider: "openai", model: s, api: apiChat, upstream: "openai", outcome: "ok", u: &u})
		if !json.Valid(ev) {
			t.Fatalf("invalid JSON for %q: %s", s, ev)
		}
		evs := decodeAll(t, []kafka.Message{{Key: []byte("acme"), Value: ev}})
		want := strings.ToValidUTF8(s, "\uFFFD")
		if evs[0].Model != want || evs[0].ID != "id "+want {
			t.Errorf("model %q id %q, want %q", evs[0].Model, evs[0].ID, want)
		}
	}
	id := newEventID()
	if len(id) != 39 || !strings.HasPrefix(id, "gw-") || id[17] != '4' || newEventID() == id {
		t.Errorf("event id %q", id)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.observe(time.Duration(i) * time.Microsecond)
	}
	s := h.snapshot()
	check := func(name string, got, want time.Duration) {
		t.Helper()
		if got < want || float64(got) > 1.25*float64(want) {
			t.Errorf("%s %s, want %s (+25%%)", name, got, want)
		}
	}
	check("p50", s.P50, 500*time.Microsecond)
	check("p99", s.P99, 990*time.Microsecond)
	check("max", s.Max, 1000*time.Microsecond)
	if s.Count != 1000 || s.P999 > s.Max {
		t.Errorf("%+v", s)
	}
	for _, ns := range []int64{0, 1, 3, 4, 5, 7, 8, 1 << 40} {
		if b := bucketOf(ns); bucketUpper(b) <= ns || (b > 0 && bucketUpper(b-1) > ns) {
			t.Errorf("bucket of %d is %d with upper %d", ns, b, bucketUpper(b))
		}
	}
}
