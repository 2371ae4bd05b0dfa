package pipeline_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// These tests run the partition processor with the real rate-card rater
// of pipeline/prices, on instances that each have their own Badger (the
// partition state and the prices store) and the same catalog, as
// instances of one consumer group do.

// memSink keeps the rated rows; with discard set it keeps nothing (the
// benchmark measures the pipeline, not the copy).
type memSink struct {
	events  []sinks.RatedEvent
	discard bool
}

func (s *memSink) WriteBatch(_ context.Context, b *sinks.Batch) error {
	if s.discard {
		return nil
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

// memLog is one changelog partition in memory; with discard set it only
// counts.
type memLog struct {
	records [][]byte
	discard bool
	n       int64
}

func (l *memLog) Append(_ context.Context, _ int, rec []byte) (int64, error) {
	if l.discard {
		l.n++
		return l.n, nil
	}
	l.records = append(l.records, append([]byte(nil), rec...))
	return int64(len(l.records) - 1), nil
}

const (
	topicUsage    = "usage"
	topicCommands = "commands"
)

// testPrices is the price list: 1e-6 per input token, 2e-6 per output
// token, so 1000 input tokens cost 0.001.
var testPrices = []byte(`{"gpt-t": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}}`)

// instance is one tariff instance owning partition 0 in one generation.
type instance struct {
	t      testing.TB
	store  *pipeline.Store
	prices *prices.State
	sink   *memSink
	dlq    *memDLQ
	log    *memLog
	stats  *pipeline.Stats
	p      *pipeline.Processor
	next   map[string]int64
}

// option changes how an instance starts.
type option func(*instanceConfig)

type instanceConfig struct {
	noCard bool
	stored map[string]rating.Assignment
}

// noCard: the instance has no rate card (customers get the global markup).
func noCard(c *instanceConfig) { c.noCard = true }

// storedAssignment records an assignment in the prices store, where
// versions of tariff before assignments moved into partition state kept
// them.
func storedAssignment(customer string, a rating.Assignment) option {
	return func(c *instanceConfig) { c.stored[customer] = a }
}

// newInstance opens a fresh store, restores partition 0 from the records
// of restore (nil: none), loads the price state with the given price
// list and a default card "default" at 30%, new customers only, and
// starts the processor of generation gen.
func newInstance(t testing.TB, gen int32, restore *memLog, priceList []byte, opts ...option) *instance {
	t.Helper()
	off := false
	store, err := pipeline.OpenStore(pipeline.StoreConfig{Dir: t.TempDir(), SyncWrites: &off}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if restore != nil {
		for i, rec := range restore.records {
			g, muts, err := pipeline.DecodeRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Apply(0, muts, pipeline.ChangelogPos{Next: int64(i) + 1, Generation: g}); err != nil {
				t.Fatal(err)
			}
		}
	}
	snap, err := rating.ParseLiteLLM(priceList)
	if err != nil {
		t.Fatal(err)
	}
	v, err := prices.NewVersion(time.Time{}, snap)
	if err != nil {
		t.Fatal(err)
	}
	ps := prices.NewStore(store.DB())
	if err := ps.SaveVersion(v); err != nil {
		t.Fatal(err)
	}
	cfg := instanceConfig{stored: map[string]rating.Assignment{}}
	for _, o := range opts {
		o(&cfg)
	}
	for customer, a := range cfg.stored {
		if err := ps.Assign(customer, a); err != nil {
			t.Fatal(err)
		}
	}
	st, err := prices.Load(ps, rating.MarkupRules{Default: rating.MustMarkup("10")}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, store: store, prices: st, sink: &memSink{}, dlq: &memDLQ{}, log: &memLog{}, stats: &pipeline.Stats{}}
	if !cfg.noCard {
		in.setCard("default", "30", rating.RolloutNewCustomersOnly, time.Time{})
	}
	in.start(gen)
	return in
}

// start makes the processor of generation gen from the stored offsets.
func (in *instance) start(gen int32) {
	in.t.Helper()
	offsets, err := in.store.NextOffsets(0, []string{topicUsage, topicCommands})
	if err != nil {
		in.t.Fatal(err)
	}
	in.next = map[string]int64{topicUsage: offsets[topicUsage], topicCommands: offsets[topicCommands]}
	dec, err := schemas.DecoderFor("gateway", schemas.DecodeOptions{})
	if err != nil {
		in.t.Fatal(err)
	}
	deps := pipeline.Deps{
		Formats:  map[string]string{topicUsage: "gateway", topicCommands: pipeline.FormatCommand},
		Decoders: map[string]schemas.Decoder{"gateway": dec},
		Sink:     in.sink, DLQ: in.dlq, Log: in.log, Store: in.store, Stats: in.stats, Logger: zerolog.Nop(),
	}
	in.p = pipeline.NewProcessor(pipeline.Config{RetryMin: time.Millisecond, RetryMax: time.Millisecond}, 0, gen, offsets,
		in.prices.NewRater(), deps, func(map[string]int64) error { return nil })
}

// setCard sets card id's terms from eff (the first card is the default).
func (in *instance) setCard(id, markup string, rollout rating.Rollout, eff time.Time) prices.CardChange {
	in.t.Helper()
	ch, err := in.prices.SetCard(id, rating.MarkupRules{Default: rating.MustMarkup(markup)}, rollout, eff)
	if err != nil {
		in.t.Fatalf("set rate card %s: %v", id, err)
	}
	return ch
}

// newCardVersion adds version 2 of the default card, 50%, new customers
// only, from eff.
func (in *instance) newCardVersion(eff time.Time) {
	in.t.Helper()
	if ch := in.setCard("default", "50", rating.RolloutNewCustomersOnly, eff); ch.Version != 2 {
		in.t.Fatalf("new card version: %+v", ch)
	}
}

func usageMsg(id, customer string, at time.Time, input int) []byte {
	return fmt.Appendf(nil, `{"id":%q,"time":%q,"customer_id":%q,"provider":"openai","model":"gpt-t","usage":{"input":%d}}`,
		id, at.UTC().Format(time.RFC3339Nano), customer, input)
}

// process applies one batch of messages, each {topic, value}, keyed by
// customer.
func (in *instance) process(msgs ...kafka.Message) {
	in.t.Helper()
	for i := range msgs {
		msgs[i].Offset = in.next[msgs[i].Topic]
		in.next[msgs[i].Topic]++
	}
	if err := in.p.ProcessMessages(msgs); err != nil {
		in.t.Fatal(err)
	}
}

func usage(id, customer string, at time.Time) kafka.Message {
	return kafka.Message{Topic: topicUsage, Key: []byte(customer), Value: usageMsg(id, customer, at, 1000)}
}

func assignMsg(id, customer, card string, version int, eff time.Time) kafka.Message {
	v := fmt.Appendf(nil, `{"kind":"assign_rate_card","id":%q,"customer_id":%q,"at":%q,"rate_card_id":%q,"version":%d,"effective_at":%q}`,
		id, customer, time.Now().UTC().Format(time.RFC3339Nano), card, version, eff.UTC().Format(time.RFC3339Nano))
	return kafka.Message{Topic: topicCommands, Key: []byte(customer), Value: v}
}

// assignments returns the customer's assignments committed in partition
// state.
func (in *instance) assignments(customer string) []rating.Assignment {
	in.t.Helper()
	h, err := in.store.Assignments(0, customer)
	if err != nil {
		in.t.Fatal(err)
	}
	return h
}

// loggedAssignments returns the customer's assignments written by the
// last changelog record, or nil when it wrote none.
func (in *instance) loggedAssignments(customer string) []rating.Assignment {
	in.t.Helper()
	_, muts, err := pipeline.DecodeRecord(in.log.records[len(in.log.records)-1])
	if err != nil {
		in.t.Fatal(err)
	}
	key := string(pipeline.AssignmentKey(0, customer))
	var hist []rating.Assignment
	for _, m := range muts {
		if string(m.Key) == key {
			if hist, err = pipeline.DecodeAssignments(m.Value); err != nil {
				in.t.Fatal(err)
			}
		}
	}
	return hist
}

func wantHistory(t testing.TB, what string, got []rating.Assignment, want ...rating.Assignment) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i].CardID == want[i].CardID && got[i].Version == want[i].Version && got[i].AssignedAt.Equal(want[i].AssignedAt)
	}
	if !ok {
		t.Errorf("%s: %+v, want %+v", what, got, want)
	}
}

// deadLetter checks that the last dead letter names want.
func (in *instance) deadLetter(stage, want string) {
	in.t.Helper()
	if len(in.dlq.recs) == 0 {
		in.t.Fatalf("nothing dead-lettered, want %q", want)
	}
	d := in.dlq.recs[len(in.dlq.recs)-1]
	if d.Decoder != stage || !strings.Contains(d.Reason, want) {
		in.t.Errorf("dead letter %s: %q, want %s naming %q", d.Decoder, d.Reason, stage, want)
	}
}

// rated returns the rated row of event id (the last one written).
func (in *instance) rated(id string) *sinks.RatedEvent {
	in.t.Helper()
	for i := len(in.sink.events) - 1; i >= 0; i-- {
		if in.sink.events[i].Event.ID == id {
			return &in.sink.events[i]
		}
	}
	in.t.Fatalf("event %s not rated (dead letters: %+v)", id, in.dlq.recs)
	return nil
}

// wantCard checks the card version and charge event id was rated with.
func (in *instance) wantCard(id string, version uint32, charge string) {
	in.t.Helper()
	r := in.rated(id)
	if r.RateCardID != "default" || r.RateCardVersion != version || r.Charge.String() != charge {
		in.t.Errorf("event %s: rated with card %q version %d, charge %s; want default version %d, charge %s",
			id, r.RateCardID, r.RateCardVersion, r.Charge, version, charge)
	}
}

// testTimes are recent enough for the dedup window: the customer's first
// usage, the new card version, the usage after it.
func testTimes() (join, v2, later time.Time) {
	base := time.Now().UTC().Truncate(time.Second).Add(-6 * time.Hour)
	return base, base.Add(time.Hour), base.Add(2 * time.Hour)
}

// TestAssignmentFollowsPartition: a customer who joined the default card
// on one instance keeps that card version when the partition moves to
// another instance, even after the card got a new-customers-only version
// in between; a customer new on the second instance gets the new version.
func TestAssignmentFollowsPartition(t *testing.T) {
	join, v2, later := testTimes()
	a := newInstance(t, 1, nil, testPrices)
	a.process(usage("e1", "acme", join))
	a.wantCard("e1", 1, "0.0013") // 1000 × 1e-6 × 1.3

	a.newCardVersion(v2)
	// The partition moves: b restores it from a's changelog and has the
	// same catalog, but nothing else of a's.
	b := newInstance(t, 2, a.log, testPrices)
	b.newCardVersion(v2)
	b.process(usage("e2", "acme", later), usage("e3", "newco", later))
	b.wantCard("e2", 1, "0.0013")
	b.wantCard("e3", 2, "0.0015") // 1000 × 1e-6 × 1.5
}

// TestFirstUsageAssignsInPartitionState: a customer's first event joins
// the default card at the version in force at the event's time, written
// in the batch's changelog record and partition state, not in the prices
// store; a redelivery or a later event does not assign again.
func TestFirstUsageAssignsInPartitionState(t *testing.T) {
	join, v2, later := testTimes()
	in := newInstance(t, 1, nil, testPrices)
	in.process(usage("e1", "acme", join))
	joined := rating.Assignment{CardID: "default", Version: 1, AssignedAt: join}
	wantHistory(t, "changelog record", in.loggedAssignments("acme"), joined)
	wantHistory(t, "partition state", in.assignments("acme"), joined)
	if h, err := in.prices.Store().History("acme"); err != nil || len(h) != 0 {
		t.Errorf("prices store holds %+v (%v): assignments must live in partition state only", h, err)
	}
	if any, err := in.prices.Store().HasAssignments(); err != nil || any {
		t.Errorf("prices store has assignments: %v %v", any, err)
	}

	// Later usage (and a duplicate) writes no assignment, whatever the card
	// does meanwhile.
	in.newCardVersion(v2)
	in.process(usage("e2", "acme", later), usage("e1", "acme", join))
	in.wantCard("e2", 1, "0.0013")
	if h := in.loggedAssignments("acme"); h != nil {
		t.Errorf("second batch wrote assignments again: %+v", h)
	}
	wantHistory(t, "partition state", in.assignments("acme"), joined)

	// A new processor (next generation, same store) finds it in state.
	in.start(2)
	in.process(usage("e3", "acme", later.Add(time.Minute)))
	in.wantCard("e3", 1, "0.0013")

	// A message refused as a whole (its second event has no price) joins
	// nobody: a customer's join is part of the message that rated it.
	bad := kafka.Message{Topic: topicUsage, Key: []byte("beta"), Value: []byte(`[` +
		string(usageMsg("b1", "beta", join, 1000)) + `,` +
		strings.Replace(string(usageMsg("b2", "beta", join, 1000)), "gpt-t", "no-such-model", 1) + `]`)}
	in.process(bad)
	in.deadLetter("rate", "no-such-model")
	if h := in.assignments("beta"); h != nil {
		t.Errorf("refused message assigned beta: %+v", h)
	}
	// beta's first rated event joins, at its own time: after v2, so v2.
	in.process(usage("b3", "beta", later))
	in.wantCard("b3", 2, "0.0015")
	wantHistory(t, "beta", in.assignments("beta"), rating.Assignment{CardID: "default", Version: 2, AssignedAt: later})
}

// TestNoDefaultCardThenJoin: with no rate card a customer is rated with
// the global markup and assigned nothing; once there is a default card,
// the customer's next event joins it.
func TestNoDefaultCardThenJoin(t *testing.T) {
	join, _, later := testTimes()
	in := newInstance(t, 1, nil, testPrices, noCard)
	in.process(usage("e1", "acme", join))
	if r := in.rated("e1"); r.RateCardID != "" || r.Charge.String() != "0.0011" { // 10% global markup
		t.Errorf("without a card: card %q, charge %s; want none, 0.0011", r.RateCardID, r.Charge)
	}
	if h := in.assignments("acme"); h != nil {
		t.Errorf("assigned without a card: %+v", h)
	}
	in.setCard("default", "30", rating.RolloutNewCustomersOnly, time.Time{})
	in.process(usage("e2", "acme", later))
	in.wantCard("e2", 1, "0.0013")
	wantHistory(t, "after the card", in.assignments("acme"), rating.Assignment{CardID: "default", Version: 1, AssignedAt: later})
}

// TestAssignRateCardCommand: an operator's assignment travels on the
// command topic, moves the customer from its effective time in order with
// the customer's usage, is applied once per command id, follows the
// partition, and a card or version the catalog lacks is dead-lettered.
func TestAssignRateCardCommand(t *testing.T) {
	join, _, later := testTimes()
	eff := join.Add(30 * time.Minute)
	setup := func(in *instance) {
		in.setCard("enterprise", "20", rating.RolloutAllCustomers, time.Time{})
	}
	in := newInstance(t, 1, nil, testPrices)
	setup(in)
	// Usage, then the move, then usage before and after its effective
	// time, all in one batch: applied in order.
	in.process(usage("e1", "acme", join), assignMsg("move-1", "acme", "enterprise", 1, eff),
		usage("e2", "acme", eff.Add(-time.Second)), usage("e3", "acme", eff))
	in.wantCard("e1", 1, "0.0013")
	in.wantCard("e2", 1, "0.0013")
	if r := in.rated("e3"); r.RateCardID != "enterprise" || r.RateCardVersion != 1 || r.Charge.String() != "0.0012" {
		t.Errorf("after the move: card %s version %d, charge %s; want enterprise 1, 0.0012", r.RateCardID, r.RateCardVersion, r.Charge)
	}
	hist := []rating.Assignment{{CardID: "default", Version: 1, AssignedAt: join}, {CardID: "enterprise", Version: 1, AssignedAt: eff}}
	wantHistory(t, "after the move", in.assignments("acme"), hist...)
	if len(in.dlq.recs) != 0 {
		t.Fatalf("dead letters: %+v", in.dlq.recs)
	}

	// The same command id again, even with other terms, is a no-op.
	dups := in.stats.Duplicates.Load()
	in.process(assignMsg("move-1", "acme", "default", 1, later))
	if in.stats.Duplicates.Load() != dups+1 || len(in.dlq.recs) != 0 {
		t.Errorf("repeated command: duplicates %d → %d, dead letters %+v", dups, in.stats.Duplicates.Load(), in.dlq.recs)
	}
	wantHistory(t, "after the repeated command", in.assignments("acme"), hist...)
	// A command id equal to an event id of the customer is not taken for it.
	in.process(assignMsg("e1", "acme", "default", 1, later))
	wantHistory(t, "after command e1", in.assignments("acme"), append(hist, rating.Assignment{CardID: "default", Version: 1, AssignedAt: later})...)
	hist = in.assignments("acme")

	// Refused, changing nothing: a card or version the catalog does not
	// have, another assignment at a recorded time, a bad field.
	for _, tc := range []struct {
		msg  kafka.Message
		want string
	}{
		{assignMsg("bad-1", "acme", "gold", 1, later.Add(time.Hour)), `rate_card_id: "gold": no such rate card`},
		{assignMsg("bad-2", "acme", "enterprise", 3, later.Add(time.Hour)), "version: 3: rate card enterprise has versions 1 to 1"},
		{assignMsg("bad-4", "acme", "default", 1, eff), "already assigned to rate card enterprise version 1"},
		{assignMsg("bad-5", "acme", "enterprise", 0, later), "assign_rate_card.version: 0: expected 1 or more"},
		{kafka.Message{Topic: topicCommands, Key: []byte("acme"), Value: []byte(`{"kind":"assign_rate_card","id":"bad-6","customer_id":"acme","at":"2026-11-27T08:00:00Z","rate_card_id":"enterprise","version":1,"effective_at":"2026-11-27T08:00:00Z","note":"x"}`)}, `unknown field "note"`},
		{kafka.Message{Topic: topicCommands, Key: []byte("acme"), Value: []byte(`{"kind":"assign_rate_card","id":"bad-7","customer_id":"acme","at":"2020-01-01T00:00:00Z","rate_card_id":"enterprise","version":1,"effective_at":"2026-11-27T08:00:00Z"}`)}, "older than the"},
	} {
		n := len(in.dlq.recs)
		in.process(tc.msg)
		if len(in.dlq.recs) != n+1 {
			t.Errorf("%s: not dead-lettered", tc.msg.Value)
			continue
		}
		in.deadLetter("assign_rate_card", tc.want)
		wantHistory(t, "after a refused command", in.assignments("acme"), hist...)
	}
	// The same assignment under another id is no change, and no refusal.
	n := len(in.dlq.recs)
	in.process(assignMsg("again", "acme", "enterprise", 1, eff))
	if len(in.dlq.recs) != n {
		t.Errorf("the same assignment again was dead-lettered: %s", in.dlq.recs[n].Reason)
	}
	wantHistory(t, "after the same assignment again", in.assignments("acme"), hist...)
	// A refused command can be fixed and sent again with the same id: the
	// refusal did not use it up.
	in.setCard("gold", "5", rating.RolloutAllCustomers, time.Time{})
	in.process(assignMsg("bad-1", "acme", "gold", 1, later.Add(time.Hour)))
	hist = append(hist, rating.Assignment{CardID: "gold", Version: 1, AssignedAt: later.Add(time.Hour)})
	wantHistory(t, "after the fixed command", in.assignments("acme"), hist...)

	// The assignments follow the partition.
	b := newInstance(t, 2, in.log, testPrices)
	setup(b)
	b.setCard("gold", "5", rating.RolloutAllCustomers, time.Time{})
	wantHistory(t, "restored", b.assignments("acme"), hist...)
	b.process(usage("e4", "acme", eff.Add(time.Minute)), usage("e5", "acme", later.Add(2*time.Hour)))
	if r := b.rated("e4"); r.RateCardID != "enterprise" || r.Charge.String() != "0.0012" {
		t.Errorf("restored, before the last move: card %s, charge %s; want enterprise, 0.0012", r.RateCardID, r.Charge)
	}
	if r := b.rated("e5"); r.RateCardID != "gold" || r.Charge.String() != "0.00105" {
		t.Errorf("restored, after the last move: card %s, charge %s; want gold, 0.00105", r.RateCardID, r.Charge)
	}
	// And so does the command's idempotency key.
	b.process(assignMsg("move-1", "acme", "default", 1, later.Add(3*time.Hour)))
	wantHistory(t, "restored, repeated command", b.assignments("acme"), hist...)
}

// TestStoredAssignmentsMigrate: a customer assigned by an older version
// (in the prices store) keeps that assignment: it is used, and copied into
// partition state with the batch, so the partition carries it from then
// on.
func TestStoredAssignmentsMigrate(t *testing.T) {
	join, v2, later := testTimes()
	old := rating.Assignment{CardID: "default", Version: 1, AssignedAt: join}
	in := newInstance(t, 1, nil, testPrices, storedAssignment("acme", old))
	in.newCardVersion(v2)
	in.process(usage("e1", "acme", later))
	in.wantCard("e1", 1, "0.0013") // not a new customer at `later`
	wantHistory(t, "changelog record", in.loggedAssignments("acme"), old)
	wantHistory(t, "partition state", in.assignments("acme"), old)

	// Another instance without the old store, restored from the changelog,
	// rates the same.
	b := newInstance(t, 2, in.log, testPrices)
	b.newCardVersion(v2)
	b.process(usage("e2", "acme", later.Add(time.Minute)))
	b.wantCard("e2", 1, "0.0013")
}

// BenchmarkProcessBatchCards is BenchmarkProcessBatch with the rate-card
// rater: every customer is on the default card, so each event also finds
// its customer's assignments. One op is one event.
func BenchmarkProcessBatchCards(b *testing.B) {
	in := newInstance(b, 1, nil, bundled.LiteLLM)
	in.sink.discard, in.log.discard = true, true
	const batchSize = 2000
	models := []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "o3-mini"}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	mk := func(i int) kafka.Message {
		v := fmt.Sprintf(`{"id":"ev-%d","time":%q,"customer_id":"cust-%d","provider":"openai","model":%q,"usage":{"input":1200,"cached_input":800,"output":300,"reasoning":50}}`,
			i, now, i%1000, models[i%len(models)])
		return kafka.Message{Topic: topicUsage, Offset: int64(i), Value: []byte(v), Key: fmt.Appendf(nil, "cust-%d", i%1000)}
	}
	b.ReportAllocs()
	var bytes int
	n := 0
	msgs := make([]kafka.Message, 0, batchSize)
	b.ResetTimer()
	for n < b.N {
		b.StopTimer()
		msgs = msgs[:0]
		for i := 0; i < batchSize && n < b.N; i++ {
			m := mk(n)
			bytes += len(m.Value)
			msgs = append(msgs, m)
			n++
		}
		b.StartTimer()
		if err := in.p.ProcessMessages(msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(bytes / max(b.N, 1)))
	if len(in.dlq.recs) > 0 {
		b.Fatalf("dead-lettered: %s", in.dlq.recs[0].Reason)
	}
}

// TestRateWithAllocs: rating an event with the customer's assignments in
// hand allocates nothing once the row's storage is grown.
func TestRateWithAllocs(t *testing.T) {
	join, _, later := testTimes()
	in := newInstance(t, 1, nil, testPrices)
	r := in.prices.NewRater()
	hist := []rating.Assignment{{CardID: "default", Version: 1, AssignedAt: join}}
	ev := schemas.UsageEvent{ID: "e", CustomerID: "acme", Provider: "openai", Model: "gpt-t", Time: later}
	ev.Quantities[schemas.UnitInput] = 1000
	var out sinks.RatedEvent
	allocs := testing.AllocsPerRun(1000, func() {
		if err := r.RateWith(&ev, hist, &out); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || out.Charge.String() != "0.0013" || out.RateCardVersion != 1 {
		t.Errorf("%.1f allocations per event, charge %s, card version %d; want 0, 0.0013, 1", allocs, out.Charge, out.RateCardVersion)
	}
}

// TestAssignCommandOnRealBroker: the command the admin API publishes
// (CommandWriter.SubmitAssignment), read back from the real broker, is
// keyed by its customer and applied by the partition's processor; a
// retried publish of the same command id is applied once.
func TestAssignCommandOnRealBroker(t *testing.T) {
	broker := testenv.Kafka(t)
	topic := testenv.Name(t, "cmd")
	testenv.CreateTopics(t, broker, 1, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := pipeline.NewCommandWriter([]string{broker}, topic, &kafka.Transport{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	join, _, later := testTimes()
	eff := join.Add(time.Hour)
	cmd := &pipeline.AssignRateCard{Kind: pipeline.AssignRateCardKind, ID: "move-1", CustomerID: "acme", At: time.Now().UTC(),
		RateCardID: "enterprise", Version: 1, EffectiveAt: eff}
	for range 2 { // a retried call with the same Idempotency-Key
		if err := w.SubmitAssignment(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var msgs []kafka.Message
	for len(msgs) < 2 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != "acme" {
			t.Fatalf("command keyed %q, want the customer id", m.Key)
		}
		m.Topic = topicCommands // the processor's name for the command topic
		msgs = append(msgs, m)
	}

	in := newInstance(t, 1, nil, testPrices)
	in.setCard("enterprise", "20", rating.RolloutAllCustomers, time.Time{})
	in.process(usage("e1", "acme", join))
	in.process(msgs...)
	in.process(usage("e2", "acme", later))
	if len(in.dlq.recs) != 0 || in.stats.Duplicates.Load() != 1 {
		t.Fatalf("dead letters %+v, duplicates %d; want none and 1", in.dlq.recs, in.stats.Duplicates.Load())
	}
	wantHistory(t, "after the command", in.assignments("acme"),
		rating.Assignment{CardID: "default", Version: 1, AssignedAt: join}, rating.Assignment{CardID: "enterprise", Version: 1, AssignedAt: eff})
	if r := in.rated("e2"); r.RateCardID != "enterprise" || r.Charge.String() != "0.0012" {
		t.Errorf("after the move: card %s, charge %s; want enterprise, 0.0012", r.RateCardID, r.Charge)
	}
}
