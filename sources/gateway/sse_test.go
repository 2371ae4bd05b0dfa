package gateway

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/schemas"
)

type sseEvent struct{ raw, name, data string }

func readSSE(t testing.TB, in string, size int) []sseEvent {
	t.Helper()
	sr := newSSEReader(strings.NewReader(in), size)
	var out []sseEvent
	for {
		raw, name, data, err := sr.next()
		if len(raw) > 0 {
			out = append(out, sseEvent{string(raw), string(name), string(data)})
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestSSEReader(t *testing.T) {
	long := strings.Repeat("x", 100)
	in := "event: message_start\ndata: {\"a\":1}\n\n" +
		": keep-alive comment\n\n" +
		"data: first\r\ndata: second\r\n\r\n" +
		"event:ping\ndata:{}\n\n" +
		"data: " + long + "\n\n" +
		"data: [DONE]" // no final blank line
	got := readSSE(t, in, 16) // a small buffer: lines longer than it
	want := []sseEvent{
		{"event: message_start\ndata: {\"a\":1}\n\n", "message_start", `{"a":1}`},
		{": keep-alive comment\n\n", "", ""},
		{"data: first\r\ndata: second\r\n\r\n", "", "first\nsecond"},
		{"event:ping\ndata:{}\n\n", "ping", "{}"},
		{"data: " + long + "\n\n", "", long},
		{"data: [DONE]", "", "[DONE]"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// FuzzSSEReader: whatever the upstream sends, the events' raw bytes put
// back together are exactly the stream: the gateway adds, drops or
// changes nothing it does not mean to.
func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("event: a\ndata: b\n\ndata: c\r\n\r\n: x\n\ndata: [DONE]"), 16)
	f.Add([]byte("\n\n\n"), 4096)
	f.Fuzz(func(t *testing.T, in []byte, size int) {
		size = 16 + size%4096
		if size < 16 {
			size = 16
		}
		sr := newSSEReader(bytes.NewReader(in), size)
		var out []byte
		for {
			raw, _, _, err := sr.next()
			out = append(out, raw...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("reassembled %q, want %q", out, in)
		}
	})
}

func TestTapChatDropsOnlyTheInjectedUsageChunk(t *testing.T) {
	usageChunk := []byte(`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}`)
	contentWithUsage := []byte(`{"id":"c1","choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}`)
	for _, c := range []struct {
		injected bool
		data     []byte
		drop     bool
	}{
		{true, usageChunk, true},
		{false, usageChunk, false},
		{true, contentWithUsage, false}, // content must still reach the caller
		{true, []byte(`{"id":"c1","choices":[{"delta":{"content":"x"}}],"usage":null}`), false},
	} {
		var u usage
		tp := tap{api: apiChat, injected: c.injected, u: &u}
		if got := tp.observe(nil, c.data); got != c.drop {
			t.Errorf("injected %v, %s: drop %v, want %v", c.injected, c.data, got, c.drop)
		}
	}
}

func TestTapAnthropicMergesStartAndFinalUsage(t *testing.T) {
	var u usage
	tp := tap{api: apiMessages, u: &u}
	tp.observe([]byte("message_start"), []byte(`{"type":"message_start","message":{"id":"msg_1","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"output_tokens":1}}}`))
	tp.observe([]byte("message_delta"), []byte(`{"type":"message_delta","usage":{"output_tokens":5}}`))
	tp.observe([]byte("message_delta"), []byte(`{"type":"message_delta","usage":{"output_tokens":9}}`))
	if u.id != "msg_1" || string(u.raw) != `{"input_tokens":10,"output_tokens":1}` || string(u.final) != `{"output_tokens":9}` {
		t.Fatalf("%+v", u)
	}
	ev := appendEvent(nil, &eventInput{id: u.id, time: testNow, customer: "acme", provider: "anthropic", model: u.model, outcome: "ok", u: &u, api: apiMessages, upstream: "a"})
	evs := decodeAll(t, []kafka.Message{{Key: []byte("acme"), Value: ev}})
	if evs[0].Quantities[schemas.UnitInput] != 10 || evs[0].Quantities[schemas.UnitOutput] != 9 {
		t.Fatalf("merged usage %v: want input 10 output 9 (the last delta's cumulative count)", evs[0].Quantities)
	}
}
