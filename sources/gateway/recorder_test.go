package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sources/gateway/gatewaytest"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGatewaySpoolsWhileKafkaIsDown: callers are answered as usual while
// Kafka refuses; every event is spooled, then published oldest first once
// Kafka is back, each exactly once with the tokens the upstream reported.
func TestGatewaySpoolsWhileKafkaIsDown(t *testing.T) {
	e := newEnv(t, nil)
	e.pub.setErr(errKafkaDown)
	paths := []struct{ path, body string }{
		{"/v1/chat/completions", chatBody}, {"/v1/responses", responsesBody}, {"/v1/messages", messagesBody},
	}
	var ids []string
	for i := 0; i < 12; i++ {
		p := paths[i%3]
		customer := []string{"acme", "globex"}[i%2]
		status, body := e.call(p.path, customer, p.body)
		if status != 200 {
			t.Fatalf("request %d while Kafka is down: %d %s", i, status, body)
		}
		var r struct{ ID string }
		_ = json.Unmarshal([]byte(body), &r)
		ids = append(ids, r.ID)
	}
	waitFor(t, "12 spooled events", func() bool { return e.g.Stats().SpoolDepth == 12 })
	if n := len(e.pub.published()); n != 0 {
		t.Fatalf("%d events published while Kafka was down", n)
	}
	e.pub.setErr(nil)
	waitFor(t, "the spool to drain", func() bool { return e.g.Stats().SpoolDepth == 0 })
	_, evs := e.waitEvents(12)
	reports := map[string]gatewaytest.Report{}
	for _, r := range append(e.openai.Reports(), e.anthropic.Reports()...) {
		reports[r.ID] = r
	}
	for i, ev := range evs {
		if ev.ID != ids[i] {
			t.Fatalf("event %d is %s, want %s: not published in arrival order", i, ev.ID, ids[i])
		}
		want := reports[ev.ID].Expected()
		want[schemas.UnitRequests] = 1
		if ev.Quantities != want {
			t.Errorf("event %s: %v, want %v", ev.ID, ev.Quantities, want)
		}
	}
	st := e.g.Stats()
	if st.Spooled != 12 || st.Drained != 12 || st.Lost != 0 || st.PublishErrors == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestGatewaySpoolSurvivesRestart: a gateway stopped while Kafka is down
// keeps its events on disk; the next one publishes them first.
func TestGatewaySpoolSurvivesRestart(t *testing.T) {
	e := newEnv(t, nil)
	e.pub.setErr(errKafkaDown)
	for i := 0; i < 5; i++ {
		if status, body := e.call("/v1/chat/completions", "acme", chatBody); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
	}
	e.stop() // graceful: whatever was queued is spooled
	if st := e.g.Stats(); st.Spooled != 5 || st.SpoolDepth != 5 {
		t.Fatalf("after stop: spooled %d depth %d, want 5 and 5", st.Spooled, st.SpoolDepth)
	}
	e.pub = &fakePublisher{}
	e.start(e.cfg)
	if d := e.g.Stats().SpoolDepth; d != 5 && d != 0 {
		t.Fatalf("the restarted gateway found %d spooled events, want 5", d)
	}
	waitFor(t, "the spool to drain", func() bool { return e.g.Stats().SpoolDepth == 0 })
	e.waitEvents(5)
}

// gatePublisher blocks every Publish until release is closed.
type gatePublisher struct {
	release chan struct{}
	fakePublisher
}

func (g *gatePublisher) Publish(ctx context.Context, msgs []kafka.Message) error {
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.fakePublisher.Publish(ctx, msgs)
}

func testRecorder(t *testing.T, pub Publisher, edit func(*Config)) (*recorder, *Spool, *Stats) {
	t.Helper()
	cfg := Config{PublishTimeout: 10 * time.Second, Spool: SpoolConfig{Dir: filepath.Join(t.TempDir(), "spool"), RetryMax: 20 * time.Millisecond}}
	cfg.SetDefaults()
	if edit != nil {
		edit(&cfg)
	}
	sp, err := OpenSpool(cfg.Spool, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	var st Stats
	return newRecorder(&cfg, pub, sp, &st, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)), sp, &st
}

func msg(i int) kafka.Message {
	return kafka.Message{Topic: "t", Key: []byte("acme"), Value: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

// TestRecorderQueueFull: when the queue is full (Kafka slow), record does
// not wait: it spools. Nothing is lost or doubled.
func TestRecorderQueueFull(t *testing.T) {
	pub := &gatePublisher{release: make(chan struct{})}
	rec, sp, st := testRecorder(t, pub, func(c *Config) { c.Spool.QueueSize, c.Spool.BatchSize = 2, 1 })
	go rec.run()
	done := make(chan struct{})
	go func() {
		for i := 0; i < 10; i++ {
			rec.record(msg(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("record blocked on a slow Kafka")
	}
	if st.QueueFull.Load() == 0 || sp.Depth() == 0 {
		t.Fatalf("queue full %d, spool depth %d: expected the overflow in the spool", st.QueueFull.Load(), sp.Depth())
	}
	close(pub.release)
	waitFor(t, "everything published", func() bool { return len(pub.published()) == 10 && sp.Depth() == 0 })
	rec.close()
	seen := map[string]bool{}
	for _, m := range pub.published() {
		if seen[string(m.Value)] {
			t.Fatalf("%s published twice", m.Value)
		}
		seen[string(m.Value)] = true
	}
	if len(seen) != 10 || st.Lost.Load() != 0 {
		t.Fatalf("published %d distinct events, lost %d", len(seen), st.Lost.Load())
	}
}

// tooLargePublisher refuses one value as too large, and fails everything
// while down.
type tooLargePublisher struct {
	fakePublisher
	big  string
	mu   sync.Mutex
	down bool
}

func (p *tooLargePublisher) Publish(ctx context.Context, msgs []kafka.Message) error {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		return errKafkaDown
	}
	for _, m := range msgs {
		if string(m.Value) == p.big {
			return fmt.Errorf("%w: [10] Message Size Too Large", ErrMessageTooLarge)
		}
	}
	return p.fakePublisher.Publish(ctx, msgs)
}

// TestRecorderParksTooLarge: an event Kafka will never take is parked, and
// the events behind it in the spool still go out.
func TestRecorderParksTooLarge(t *testing.T) {
	pub := &tooLargePublisher{big: string(msg(2).Value), down: true}
	rec, sp, st := testRecorder(t, pub, nil)
	go rec.run()
	for i := 0; i < 5; i++ {
		rec.record(msg(i))
	}
	waitFor(t, "5 spooled", func() bool { return sp.Depth() == 5 })
	pub.mu.Lock()
	pub.down = false
	pub.mu.Unlock()
	waitFor(t, "the spool to drain", func() bool { return sp.Depth() == 0 })
	rec.close()
	got := pub.published()
	if len(got) != 4 || sp.Parked() != 1 || st.Parked.Load() != 1 {
		t.Fatalf("published %d, parked %d: want 4 and 1", len(got), sp.Parked())
	}
	for i, want := range []int{0, 1, 3, 4} {
		if string(got[i].Value) != string(msg(want).Value) {
			t.Fatalf("published %s at %d, want %s", got[i].Value, i, msg(want).Value)
		}
	}
}

func TestSpoolEntryRoundTrip(t *testing.T) {
	m := kafka.Message{Topic: "tariff.usage.gateway", Key: []byte("acme"), Value: []byte(`{"id":"x"}`)}
	got, err := decodeEntry(encodeEntry(&m))
	if err != nil || got.Topic != m.Topic || string(got.Key) != "acme" || string(got.Value) != string(m.Value) {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {5, 'a'}, {1, 't', 9}} {
		if _, err := decodeEntry(bad); err == nil {
			t.Errorf("decodeEntry(%q) accepted a corrupt entry", bad)
		}
	}
}
