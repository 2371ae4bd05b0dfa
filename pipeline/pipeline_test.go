package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

// fakeSource serves queued batches and records commits.
type fakeSource struct {
	batches   [][]kafka.Message
	committed []int64
	cancel    func() // called when the queue is empty
}

func (s *fakeSource) Fetch(ctx context.Context, b *sources.Batch) error {
	b.Reset()
	if len(s.batches) == 0 {
		s.cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	b.Messages = append(b.Messages, s.batches[0]...)
	s.batches = s.batches[1:]
	return nil
}

func (s *fakeSource) Commit(_ context.Context, b *sources.Batch) error {
	for _, m := range b.Messages {
		s.committed = append(s.committed, m.Offset)
	}
	return nil
}

func (s *fakeSource) Format(string) string { return "csv" }

// csvDecoder reads "id,customer,model,input;id,customer,model,input" —
// several events per message — to exercise the pipeline without the real
// decoders.
type csvDecoder struct{}

func (csvDecoder) Name() string { return "csv" }
func (csvDecoder) Decode(dst []schemas.UsageEvent, msg []byte) ([]schemas.UsageEvent, error) {
	for _, rec := range strings.Split(string(msg), ";") {
		f := strings.Split(rec, ",")
		if len(f) != 4 {
			return dst, &schemas.DecodeError{Decoder: "csv", Reason: "expected 4 fields"}
		}
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return dst, &schemas.DecodeError{Decoder: "csv", Field: "input", Reason: err.Error()}
		}
		ev := schemas.UsageEvent{ID: f[0], CustomerID: f[1], Model: f[2], Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
		ev.Quantities[schemas.UnitInput] = n
		dst = append(dst, ev)
	}
	return dst, nil
}

// fakeRater charges 1e-6 per input token, and refuses model "unknown".
type fakeRater struct{}

func (fakeRater) Rate(ev *schemas.UsageEvent, out *sinks.RatedEvent) error {
	if ev.Model == "unknown" {
		return fmt.Errorf("model %q: %w", ev.Model, ErrUnpriced)
	}
	out.Event = *ev
	price := decimal.New(1, -6)
	cost := price.Mul(decimal.NewFromInt(ev.Quantities[schemas.UnitInput]))
	out.Cost, out.Charge = cost, cost
	out.Lines = append(out.Lines, sinks.Line{Unit: schemas.UnitInput, Quantity: ev.Quantities[schemas.UnitInput], UnitPrice: price, Cost: cost, Charge: cost})
	return nil
}

// memSink keeps rows; it fails the first failN writes.
type memSink struct {
	events []sinks.RatedEvent
	failN  int
	writes int
}

func (s *memSink) WriteBatch(_ context.Context, b *sinks.Batch) error {
	s.writes++
	if s.failN > 0 {
		s.failN--
		return errors.New("clickhouse is down")
	}
	for _, e := range b.Events {
		e.Lines = append([]sinks.Line(nil), e.Lines...) // the batch is reused after return
		s.events = append(s.events, e)
	}
	return nil
}
func (s *memSink) Close() error { return nil }

type memDLQ struct{ recs []sinks.DeadLetter }

func (d *memDLQ) Write(_ context.Context, recs []sinks.DeadLetter) error {
	d.recs = append(d.recs, recs...)
	return nil
}

type harness struct {
	src   *fakeSource
	sink  *memSink
	dlq   *memDLQ
	store *Store
	p     *Pipeline
}

func newHarness(t *testing.T, dir string, batches ...[]kafka.Message) *harness {
	t.Helper()
	store, err := OpenStore(StoreConfig{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := &harness{src: &fakeSource{batches: batches}, sink: &memSink{}, dlq: &memDLQ{}, store: store}
	h.p = New(Config{RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond}, h.src,
		map[string]schemas.Decoder{"csv": csvDecoder{}}, fakeRater{}, h.sink, h.dlq, store, zerolog.Nop())
	return h
}

func (h *harness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.src.cancel = cancel
	if err := h.p.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func msgs(partition int, first int64, values ...string) []kafka.Message {
	out := make([]kafka.Message, len(values))
	for i, v := range values {
		out[i] = kafka.Message{Topic: "usage", Partition: partition, Offset: first + int64(i), Value: []byte(v)}
	}
	return out
}

func (h *harness) total() (n int, input int64) {
	for _, e := range h.sink.events {
		input += e.Event.Quantities[schemas.UnitInput]
	}
	return len(h.sink.events), input
}

func TestDuplicatesAreIgnoredWithinAndAcrossBatches(t *testing.T) {
	h := newHarness(t, t.TempDir(),
		msgs(0, 0, "e1,acme,m,100", "e2,acme,m,200;e1,acme,m,100"), // e1 twice in one batch
		msgs(0, 2, "e2,acme,m,200", "e3,acme,m,300"),               // e2 again, later
		msgs(1, 0, "e3,acme,m,300", "e1,globex,m,50"),              // e3 via another partition; same id, other customer
	)
	h.run(t)
	n, input := h.total()
	if n != 4 || input != 650 {
		t.Fatalf("rated %d events, %d tokens; want 4 events (e1,e2,e3 of acme and e1 of globex), 650 tokens", n, input)
	}
	if got := h.p.Stats.Duplicates.Load(); got != 3 {
		t.Fatalf("duplicates = %d, want 3", got)
	}
	if len(h.src.committed) != 6 {
		t.Fatalf("committed %d offsets, want 6", len(h.src.committed))
	}
}

// TestRedeliveredBatchIsSkipped simulates a crash after the state commit and
// before the Kafka commit: the restarted pipeline gets the same messages
// again and must not write them again.
func TestRedeliveredBatchIsSkipped(t *testing.T) {
	dir := t.TempDir()
	first := msgs(0, 0, "e1,acme,m,100", "e2,acme,m,200")
	h := newHarness(t, dir, first)
	h.run(t)
	h.store.Close()

	h2 := newHarness(t, dir, first, msgs(0, 2, "e3,acme,m,300"))
	h2.run(t)
	n, input := h2.total()
	if n != 1 || input != 300 {
		t.Fatalf("after restart rated %d events, %d tokens; want only e3 (1, 300)", n, input)
	}
	if got := h2.p.Stats.Redelivered.Load(); got != 2 {
		t.Fatalf("redelivered = %d, want 2", got)
	}
	if got := h2.p.Stats.Duplicates.Load(); got != 0 {
		t.Fatalf("duplicates = %d, want 0 (skipped by offset, not by key)", got)
	}
}

// TestCrashBeforeStateCommitRewritesSameRows: the sink has the batch but the
// state store does not (crash between them). Redelivery rates and writes the
// same rows again, which the ClickHouse table collapses; the store then
// records the keys once.
func TestCrashBeforeStateCommitRewritesSameRows(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, msgs(0, 0, "e1,acme,m,100"))
	h.run(t)
	h.store.Close()
	// A fresh store: the state commit "never happened".
	h2 := newHarness(t, t.TempDir(), msgs(0, 0, "e1,acme,m,100"))
	h2.run(t)
	if n, _ := h2.total(); n != 1 {
		t.Fatalf("rated %d, want the same event again (1)", n)
	}
	a, b := h.sink.events[0], h2.sink.events[0]
	if a.Event.ID != b.Event.ID || !a.Cost.Equal(b.Cost) || a.Offset != b.Offset {
		t.Fatalf("redelivered row differs: %+v vs %+v", a, b)
	}
}

func TestSinkFailureRetriesWithoutCommitting(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0, 0, "e1,acme,m,100"))
	h.sink.failN = 3
	h.run(t)
	if h.sink.writes != 4 {
		t.Fatalf("writes = %d, want 3 failures then 1 success", h.sink.writes)
	}
	if n, _ := h.total(); n != 1 || len(h.src.committed) != 1 {
		t.Fatalf("rated %d, committed %d; want 1 and 1", n, len(h.src.committed))
	}
}

func TestShutdownDuringOutageDoesNotCommit(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0, 0, "e1,acme,m,100"))
	h.sink.failN = 1 << 30
	ctx, cancel := context.WithCancel(context.Background())
	h.src.cancel = func() {}
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	err := h.p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "gave up at shutdown") {
		t.Fatalf("err = %v, want a give-up error", err)
	}
	if len(h.src.committed) != 0 {
		t.Fatalf("committed %v during an outage", h.src.committed)
	}
	if next, _ := h.store.NextOffset("usage", 0); next != -1 {
		t.Fatalf("stored offset %d during an outage, want none", next)
	}
}

func TestRefusedMessagesGoWholeToDeadLetters(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0, 0,
		"garbage",                          // undecodable
		"e1,acme,m,100;e2,acme,m,-5",       // second event impossible: whole message refused
		"e3,acme,m,100;e4,acme,unknown,10", // second event unpriced: whole message refused
		"e5,,m,1",                          // no customer
		"e6,acme,m,7",                      // fine
	))
	h.run(t)
	if n, input := h.total(); n != 1 || input != 7 {
		t.Fatalf("rated %d events, %d tokens; want only e6", n, input)
	}
	if len(h.dlq.recs) != 4 {
		t.Fatalf("dead letters = %d, want 4", len(h.dlq.recs))
	}
	want := []struct{ stage, reason string }{
		{"csv", "expected 4 fields"},
		{"validate", "event 1 of 2: input: negative quantity -5"},
		{"rate", "event 1 of 2: model \"unknown\": unpriced"},
		{"validate", "customer_id: missing customer id"},
	}
	for i, w := range want {
		r := h.dlq.recs[i]
		if r.Decoder != w.stage || !strings.Contains(r.Reason, w.reason) || r.Offset != int64(i) || string(r.Value) == "" {
			t.Errorf("dead letter %d = %s %q (offset %d), want %s containing %q", i, r.Decoder, r.Reason, r.Offset, w.stage, w.reason)
		}
	}
	if got := h.p.Stats.Unpriced.Load(); got != 1 {
		t.Fatalf("unpriced = %d, want 1", got)
	}
	// e1 and e3 were refused with their messages, so they are not marked
	// seen: the fixed message can be replayed.
	txn := h.store.DB().NewTransaction(false)
	defer txn.Discard()
	for _, id := range []string{"e1", "e3"} {
		if seen, _, _ := h.store.Seen(txn, nil, "acme", id); seen {
			t.Errorf("%s marked seen although its message was refused", id)
		}
	}
	if len(h.src.committed) != 5 {
		t.Fatalf("committed %d offsets, want all 5", len(h.src.committed))
	}
}
