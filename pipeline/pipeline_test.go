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

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/rating"
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

// memLog is an in-memory changelog partition.
type memLog struct{ records [][]byte }

func (l *memLog) len() int { return len(l.records) }

func (l *memLog) Append(_ context.Context, _ int, rec []byte) (int64, error) {
	l.records = append(l.records, append([]byte(nil), rec...))
	return int64(len(l.records) - 1), nil
}

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
	price := rating.MustPrice("0.000001")
	cost, _ := rating.MustAmount("0.000001").MulInt(ev.Quantities[schemas.UnitInput])
	out.Cost, out.Charge = cost, cost
	out.Lines = append(out.Lines, sinks.Line{Unit: schemas.UnitInput, Quantity: ev.Quantities[schemas.UnitInput], UnitPrice: price, Cost: cost, Charge: cost})
	return nil
}

// memSink keeps rows; it fails the first failN writes.
type memSink struct {
	events []sinks.RatedEvent
	aggs   [][]sinks.Aggregate // per batch
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
	s.aggs = append(s.aggs, append([]sinks.Aggregate(nil), b.Aggregates...))
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
	log   *memLog
	store *Store
	stats *Stats
	p     *Processor
}

func newHarness(t *testing.T, dir string, batches ...[]kafka.Message) *harness {
	t.Helper()
	store, err := OpenStore(StoreConfig{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := &harness{src: &fakeSource{batches: batches}, sink: &memSink{}, dlq: &memDLQ{}, log: &memLog{}, store: store, stats: &Stats{}}
	offsets, err := store.NextOffsets(0, []string{"usage"})
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{
		Formats:  map[string]string{"usage": "csv", "partner": "csv"},
		Decoders: map[string]schemas.Decoder{"csv": csvDecoder{}},
		Sink:     h.sink, DLQ: h.dlq, Log: h.log, Store: store, Stats: h.stats, Logger: zerolog.Nop(),
		Now: func() time.Time { return time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) },
	}
	h.p = NewProcessor(Config{RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond}, 0, 1, offsets, fakeRater{}, deps,
		func(next map[string]int64) error {
			h.src.committed = append(h.src.committed, next["usage"])
			return nil
		})
	return h
}

func (h *harness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.src.cancel = cancel
	if err := h.p.Run(ctx, h.src); err != nil {
		t.Fatal(err)
	}
}

func msgs(first int64, values ...string) []kafka.Message { return topicMsgs("usage", first, values...) }

func topicMsgs(topic string, first int64, values ...string) []kafka.Message {
	out := make([]kafka.Message, len(values))
	for i, v := range values {
		out[i] = kafka.Message{Topic: topic, Offset: first + int64(i), Value: []byte(v)}
	}
	return out
}

func (h *harness) total() (n int, input int64) {
	for _, e := range h.sink.events {
		input += e.Event.Quantities[schemas.UnitInput]
	}
	return len(h.sink.events), input
}

func TestDuplicatesAreIgnoredWithinAndAcrossBatchesAndTopics(t *testing.T) {
	h := newHarness(t, t.TempDir(),
		msgs(0, "e1,acme,m,100", "e2,acme,m,200;e1,acme,m,100"), // e1 twice in one batch
		msgs(2, "e2,acme,m,200", "e3,acme,m,300"),               // e2 again, later
		append(topicMsgs("partner", 0, "e3,acme,m,300"), // e3 again through another topic
			topicMsgs("partner", 1, "e1,globex,m,50")...), // same id, other customer: not a duplicate
	)
	h.run(t)
	n, input := h.total()
	if n != 4 || input != 650 {
		t.Fatalf("rated %d events, %d tokens; want 4 events (e1,e2,e3 of acme and e1 of globex), 650 tokens", n, input)
	}
	if got := h.stats.Duplicates.Load(); got != 3 {
		t.Fatalf("duplicates = %d, want 3", got)
	}
	if len(h.src.committed) != 3 || h.log.len() != 3 {
		t.Fatalf("committed %d batches with %d changelog records, want 3 and 3", len(h.src.committed), h.log.len())
	}
}

// TestRedeliveredBatchIsSkipped simulates a crash after the state commit and
// before the Kafka commit: the restarted processor gets the same messages
// again and must not write them again.
func TestRedeliveredBatchIsSkipped(t *testing.T) {
	dir := t.TempDir()
	first := msgs(0, "e1,acme,m,100", "e2,acme,m,200")
	h := newHarness(t, dir, first)
	h.run(t)
	h.store.Close()

	h2 := newHarness(t, dir, first, msgs(2, "e3,acme,m,300"))
	h2.run(t)
	n, input := h2.total()
	if n != 1 || input != 300 {
		t.Fatalf("after restart rated %d events, %d tokens; want only e3 (1, 300)", n, input)
	}
	if got := h2.stats.Redelivered.Load(); got != 2 {
		t.Fatalf("redelivered = %d, want 2", got)
	}
	if got := h2.stats.Duplicates.Load(); got != 0 {
		t.Fatalf("duplicates = %d, want 0 (skipped by offset, not by key)", got)
	}
	// The redelivered batch's offsets are committed too, so the group
	// catches up instead of fetching it again at every restart.
	if fmt.Sprint(h2.src.committed) != "[2 3]" {
		t.Fatalf("committed %v, want [2 3]", h2.src.committed)
	}
}

// TestCrashBeforeStateCommitRewritesSameRows: the sink has the batch but the
// state store does not (crash between them). Redelivery rates and writes the
// same rows again, which the ClickHouse table collapses.
func TestCrashBeforeStateCommitRewritesSameRows(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100"))
	h.run(t)
	// A fresh store: the state commit "never happened".
	h2 := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100"))
	h2.run(t)
	if n, _ := h2.total(); n != 1 {
		t.Fatalf("rated %d, want the same event again (1)", n)
	}
	a, b := h.sink.events[0], h2.sink.events[0]
	if a.Event.ID != b.Event.ID || a.Cost != b.Cost || a.Offset != b.Offset {
		t.Fatalf("redelivered row differs: %+v vs %+v", a, b)
	}
}

// TestChangelogRebuildsState replays the changelog of one instance into a
// fresh store, as a new owner of the partition does, and checks the new
// owner skips what was applied and deduplicates against it.
func TestChangelogRebuildsState(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100", "e2,acme,m,200"))
	h.run(t)

	fresh, err := OpenStore(StoreConfig{Dir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	pos := ChangelogPos{}
	for off, rec := range h.log.records {
		pos, err = replayRecord(pos, int64(off), rec, nil, func(gen int32, muts []Mutation) error {
			return fresh.Apply(0, muts, ChangelogPos{Next: int64(off) + 1, Generation: gen})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fresh.Close()
	h2 := newHarness(t, fresh.dir, msgs(0, "e1,acme,m,100", "e2,acme,m,200"), msgs(2, "e2,acme,m,200", "e3,acme,m,300"))
	h2.run(t)
	if n, input := h2.total(); n != 1 || input != 300 {
		t.Fatalf("new owner rated %d events (%d tokens), want only e3", n, input)
	}
	if h2.stats.Redelivered.Load() != 2 || h2.stats.Duplicates.Load() != 1 {
		t.Fatalf("redelivered %d, duplicates %d; want 2 and 1", h2.stats.Redelivered.Load(), h2.stats.Duplicates.Load())
	}
}

// TestChangelogFencesOlderGenerations: a record written by an owner of an
// older generation after a newer owner wrote is ignored on replay.
func TestChangelogFencesOlderGenerations(t *testing.T) {
	var applied []int32
	apply := func(gen int32, _ []Mutation) error { applied = append(applied, gen); return nil }
	pos := ChangelogPos{}
	var err error
	for i, gen := range []int32{3, 3, 5, 4, 5, 6} {
		rec := encodeRecord(nil, gen, []Mutation{{Key: []byte("k"), Value: []byte{byte(i)}}})
		if pos, err = replayRecord(pos, int64(i), rec, nil, apply); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(applied) != "[3 3 5 5 6]" || pos.Next != 6 || pos.Generation != 6 {
		t.Fatalf("applied generations %v, pos %+v; want [3 3 5 5 6] and next 6, generation 6", applied, pos)
	}
	if _, err := replayRecord(pos, 6, []byte("garbage"), nil, apply); err == nil {
		t.Fatal("a malformed record was accepted")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	muts := []Mutation{{Key: []byte("a"), Value: []byte("1"), ExpiresAt: 42}, {Key: []byte("bb"), Value: nil}}
	gen, got, err := decodeRecord(encodeRecord(nil, 7, muts), nil)
	if err != nil || gen != 7 || len(got) != 2 || string(got[1].Key) != "bb" || got[0].ExpiresAt != 42 || string(got[0].Value) != "1" {
		t.Fatalf("round trip: gen %d muts %+v err %v", gen, got, err)
	}
	for n := 0; n < len(encodeRecord(nil, 7, muts)); n++ {
		if _, _, err := decodeRecord(encodeRecord(nil, 7, muts)[:n], nil); err == nil {
			t.Fatalf("truncated record of %d bytes accepted", n)
		}
	}
}

func TestSinkFailureRetriesWithoutCommitting(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100"))
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
	h := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100"))
	h.sink.failN = 1 << 30
	ctx, cancel := context.WithCancel(context.Background())
	h.src.cancel = func() {}
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if err := h.p.Run(ctx, h.src); err != nil {
		t.Fatalf("a stop during an outage is a clean stop, got %v", err)
	}
	if len(h.src.committed) != 0 || h.log.len() != 0 {
		t.Fatalf("committed %v, %d changelog records during an outage", h.src.committed, h.log.len())
	}
	if next, _ := h.store.NextOffsets(0, []string{"usage"}); len(next) != 0 {
		t.Fatalf("stored offsets %v during an outage, want none", next)
	}
}

func TestRefusedMessagesGoWholeToDeadLetters(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0,
		"garbage",                          // undecodable
		"e1,acme,m,100;e2,acme,m,-5",       // second event impossible: whole message refused
		"e3,acme,m,100;e4,acme,unknown,10", // second event unpriced: whole message refused
		"e5,,m,1",                          // no customer
		"e6,acme,m,7;e3,acme,m,100",        // fine: e3 was not applied with its refused message
	))
	h.run(t)
	if n, input := h.total(); n != 2 || input != 107 {
		t.Fatalf("rated %d events, %d tokens; want e6 and e3 (2, 107)", n, input)
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
	if got := h.stats.Unpriced.Load(); got != 1 {
		t.Fatalf("unpriced = %d, want 1", got)
	}
	// e1 was refused with its message, so it is not marked seen: the fixed
	// message can be replayed.
	txn := h.store.DB().NewTransaction(false)
	defer txn.Discard()
	if seen, _, _ := h.store.Seen(txn, nil, 0, "acme", "e1"); seen {
		t.Error("e1 marked seen although its message was refused")
	}
	if next, _ := h.store.NextOffsets(0, []string{"usage"}); next["usage"] != 5 {
		t.Fatalf("stored next offset %v, want 5: refused messages are committed too", next)
	}
}

func TestEventOlderThanDedupWindowIsRefused(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0, "old,acme,m,100"))
	h.p.deps.Now = func() time.Time { return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) }
	h.run(t)
	if n, _ := h.total(); n != 0 || len(h.dlq.recs) != 1 || !strings.Contains(h.dlq.recs[0].Reason, "deduplication window") {
		t.Fatalf("rated %d, dead letters %+v; want the old event refused naming the window", n, h.dlq.recs)
	}
}

// TestAggregatesAreAbsoluteRunningTotals: every batch writes the window's
// total so far with a growing version; a batch redelivered after a crash
// before the state commit writes the same totals again, not more.
func TestAggregatesAreAbsoluteRunningTotals(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, msgs(0, "e1,acme,m,100", "e2,acme,m,200"), msgs(2, "e3,acme,m,300;e4,globex,m,5"))
	h.run(t)
	hourly := func(batch []sinks.Aggregate, customer string) *sinks.Aggregate {
		for i := range batch {
			if batch[i].CustomerID == customer && batch[i].Granularity == sinks.GranularityHour {
				return &batch[i]
			}
		}
		return nil
	}
	if len(h.sink.aggs) != 2 {
		t.Fatalf("%d aggregate batches, want 2", len(h.sink.aggs))
	}
	a1, a2 := hourly(h.sink.aggs[0], "acme"), hourly(h.sink.aggs[1], "acme")
	if a1.Quantity != 300 || a1.Events != 2 || a1.Version != 1 || a1.Cost.String() != "0.0003" {
		t.Fatalf("after batch 1: %+v; want 300 tokens, 2 events, version 1, cost 0.0003", a1)
	}
	if a2.Quantity != 600 || a2.Events != 3 || a2.Version != 2 || a2.Cost.String() != "0.0006" {
		t.Fatalf("after batch 2: %+v; want the running total 600 tokens, 3 events, version 2", a2)
	}
	if g := hourly(h.sink.aggs[1], "globex"); g == nil || g.Quantity != 5 || g.Version != 2 {
		t.Fatalf("globex total %+v, want 5 at version 2", g)
	}
	h.store.Close()

	// The state of batch 2 is lost (a copy of the store as it was after
	// batch 1 is what a crash before batch 2's state commit leaves); batch 2
	// comes again and must write the same totals with the same version.
	h1 := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100", "e2,acme,m,200"))
	h1.run(t)
	h1.src.batches = [][]kafka.Message{msgs(2, "e3,acme,m,300;e4,globex,m,5")}
	h1.run(t)
	again := hourly(h1.sink.aggs[1], "acme")
	if *again != *a2 {
		t.Fatalf("redelivered batch wrote %+v, first time %+v", again, a2)
	}
}

func TestBloomNeverForgets(t *testing.T) {
	b := newBloom(1000)
	for i := 0; i < 50_000; i++ {
		b.add([]byte(fmt.Sprintf("key-%d", i)))
	}
	for i := 0; i < 50_000; i++ {
		if !b.mayContain([]byte(fmt.Sprintf("key-%d", i))) {
			t.Fatalf("key-%d added but reported absent", i)
		}
	}
	fp := 0
	for i := 0; i < 100_000; i++ {
		if b.mayContain([]byte(fmt.Sprintf("other-%d", i))) {
			fp++
		}
	}
	// Sized for 65,536 keys at 1%; 50,000 keys stay well under 2%.
	if fp > 2000 {
		t.Fatalf("%d false positives in 100,000, want under 2%%", fp)
	}
	if b.full() {
		t.Fatal("filter reports full below its capacity")
	}
}

// TestReportedCostIsComparedNeverBilled: a partner's own cost figure is
// counted when it differs from ours beyond the tolerance, and the event is
// still billed at our price.
func TestReportedCostIsComparedNeverBilled(t *testing.T) {
	h := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100", "e2,acme,m,200"))
	h.p.deps.Decoders["csv"] = reportingDecoder{map[string]string{"e1": "0.0001", "e2": "0.5"}}
	h.run(t)
	if h.stats.Reconciled.Load() != 2 || h.stats.CostMismatch.Load() != 1 {
		t.Fatalf("reconciled %d, mismatched %d; want 2 and 1 (e2 reported 0.5 for 0.0002)", h.stats.Reconciled.Load(), h.stats.CostMismatch.Load())
	}
	if got := h.sink.events[1].Cost.String(); got != "0.0002" {
		t.Fatalf("e2 billed %s, want our 0.0002, not the partner's 0.5", got)
	}
}

type reportingDecoder struct{ costs map[string]string }

func (reportingDecoder) Name() string { return "csv" }
func (d reportingDecoder) Decode(dst []schemas.UsageEvent, msg []byte) ([]schemas.UsageEvent, error) {
	n := len(dst)
	dst, err := csvDecoder{}.Decode(dst, msg)
	for i := n; i < len(dst); i++ {
		dst[i].ReportedCost = decimal.NewNullDecimal(decimal.RequireFromString(d.costs[dst[i].ID]))
	}
	return dst, err
}

type memAlerts struct{ alerts []balance.Alert }

func (m *memAlerts) WriteAlerts(_ context.Context, a []balance.Alert) error {
	m.alerts = append(m.alerts, a...)
	return nil
}

func (m *memAlerts) kinds() string {
	var out []string
	for _, a := range m.alerts {
		out = append(out, a.CustomerID+":"+a.Kind.String())
	}
	return strings.Join(out, " ")
}

// TestBalancesDrawDownAndAlertOncePerCrossing: a prepaid grant arrives as
// a command ordered with the customer's usage; usage draws it down, the
// crossing to zero alerts exactly once, further usage does not alert
// again, and a top-up alerts recovery. A batch redelivered after a restart
// changes nothing and alerts nothing.
func TestBalancesDrawDownAndAlertOncePerCrossing(t *testing.T) {
	grant := func(id, amount string) string {
		return fmt.Sprintf(`{"id":%q,"customer_id":"acme","kind":"grant","at":"2026-11-01T00:00:00Z","grant":{"id":%q,"amount":%q,"currency":"USD"}}`, id, id, amount)
	}
	dir := t.TempDir()
	first := append(topicMsgs("admin", 0, grant("pack-1", "0.0003")),
		msgs(0, "e1,acme,m,100", "e2,acme,m,200", "e3,acme,m,50")...) // $0.0001 + $0.0002 = the pack; e3 is overage
	h := newHarness(t, dir, first, topicMsgs("admin", 1, grant("topup-1", "0.001")))
	h.p.deps.Formats["admin"] = FormatCommand
	al := &memAlerts{}
	h.p.deps.Alerts = al
	views := &Views{}
	h.p.deps.Views = views
	h.run(t)
	if got := al.kinds(); got != "acme:zero acme:recovery" {
		t.Fatalf("alerts %q, want one zero alert, then one recovery after the top-up", got)
	}
	if v, ok := views.Get("acme"); !ok || !v.Entitlement(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)).Allowed {
		t.Fatalf("entitlement after the top-up: %v %+v, want allowed", ok, v)
	}
	h.store.Close()

	h2 := newHarness(t, dir, first)
	h2.p.deps.Formats["admin"] = FormatCommand
	al2 := &memAlerts{}
	h2.p.deps.Alerts = al2
	h2.run(t)
	if len(al2.alerts) != 0 || len(h2.sink.events) != 0 {
		t.Fatalf("redelivery emitted %d alerts and %d rated events, want none", len(al2.alerts), len(h2.sink.events))
	}
}

func TestRefusedCommandIsDeadLettered(t *testing.T) {
	h := newHarness(t, t.TempDir(), topicMsgs("admin", 0,
		`{"id":"c1","kind":"grant","at":"2026-11-01T00:00:00Z","grant":{"id":"g","amount":"1","currency":"USD"}}`, // no customer
		`not json`,
		`{"id":"c2","customer_id":"acme","kind":"grant","at":"2026-11-01T00:00:00Z","grant":{"id":"g","amount":"1","currency":"EUR"}}`))
	h.p.deps.Formats["admin"] = FormatCommand
	h.run(t)
	if len(h.dlq.recs) != 3 {
		t.Fatalf("%d dead letters, want 3", len(h.dlq.recs))
	}
	for _, r := range h.dlq.recs {
		if r.Decoder != "command" || r.Reason == "" {
			t.Errorf("dead letter %+v: want stage command with a reason", r)
		}
	}
	if !strings.Contains(h.dlq.recs[0].Reason, "customer_id") || !strings.Contains(h.dlq.recs[2].Reason, "currency") {
		t.Errorf("reasons %q / %q: want them to name customer_id and currency", h.dlq.recs[0].Reason, h.dlq.recs[2].Reason)
	}
}
