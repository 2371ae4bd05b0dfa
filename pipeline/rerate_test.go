package pipeline

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// tableRater prices input tokens per model from a table it can change
// (a price correction), with a 50% markup, under price key = model and
// provider "prov". A model missing from the table is unpriced.
type tableRater struct{ perToken map[string]string }

func (r *tableRater) Rate(ev *schemas.UsageEvent, out *sinks.RatedEvent) error {
	p, ok := r.perToken[ev.Model]
	if !ok {
		return fmt.Errorf("model %q: %w", ev.Model, ErrUnpriced)
	}
	q := ev.Quantities[schemas.UnitInput]
	cost, _ := rating.MustAmount(p).MulInt(q)
	charge := mulHalf(cost)
	out.Event, out.PriceKey, out.Provider, out.Cost, out.Charge = *ev, ev.Model, "prov", cost, charge
	out.Lines = append(out.Lines[:0], sinks.Line{Unit: schemas.UnitInput, Quantity: q, UnitPrice: rating.MustPrice(p), Cost: cost, Charge: charge})
	return nil
}

// mulHalf returns 1.5 x a, exactly.
func mulHalf(a rating.Amount) rating.Amount {
	d := a.Decimal().Mul(rating.MustAmount("1.5").Decimal())
	out, err := rating.AmountFromDecimal(d)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return out
}

// rerateMsg is the command tariff replay publishes for a rated event.
func rerateMsg(t *testing.T, run, oldRun string, r sinks.RatedEvent) string {
	t.Helper()
	c := Rerate{Kind: RerateKind, ID: RerateID(run, r.Event.ID), CustomerID: r.Event.CustomerID, Run: run,
		Event: RerateEvent{ID: r.Event.ID, Time: r.Event.Time, Provider: r.Event.Provider, Model: r.Event.Model,
			ServiceTier: r.Event.Tier.String(), Source: string(r.Event.Source), Quantities: map[string]int64{}},
		Old: RerateOld{Run: oldRun, PriceKey: r.PriceKey, Provider: r.Provider, RatedAt: r.RatedAt}}
	for u, q := range r.Event.Quantities {
		if q != 0 {
			c.Event.Quantities[schemas.Unit(u).String()] = q
		}
	}
	for _, l := range r.Lines {
		c.Old.Lines = append(c.Old.Lines, RerateLine{Unit: l.Unit.String(), Quantity: l.Quantity, Cost: l.Cost, Charge: l.Charge})
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// latestAggs returns, per granularity, customer and unit, the aggregate
// row with the highest version the sink got: what ClickHouse's FINAL
// returns.
func latestAggs(s *memSink) map[string]sinks.Aggregate {
	out := map[string]sinks.Aggregate{}
	for _, batch := range s.aggs {
		for _, a := range batch {
			k := fmt.Sprintf("%d/%s/%s/%s/%s/%s", a.Granularity, a.WindowStart.Format(time.RFC3339), a.CustomerID, a.PriceKey, a.Provider, a.Unit)
			if prev, ok := out[k]; !ok || a.Version >= prev.Version {
				out[k] = a
			}
		}
	}
	return out
}

// totals sums the latest aggregates of one granularity and customer.
func totals(s *memSink, g sinks.Granularity, customer string) string {
	var q, n int64
	var cost, charge rating.Amount
	for _, a := range latestAggs(s) {
		if a.Granularity != g || a.CustomerID != customer {
			continue
		}
		q += a.Quantity
		n += a.Events
		cost, _ = cost.Add(a.Cost)
		charge, _ = charge.Add(a.Charge)
	}
	return fmt.Sprintf("%d tokens, %d events, cost %s, charge %s", q, n, cost, charge)
}

// lastRated returns the latest rated row per event id: what
// rated_lines FINAL keeps.
func lastRated(s *memSink) map[string]sinks.RatedEvent {
	out := map[string]sinks.RatedEvent{}
	for _, e := range s.events {
		out[e.Event.CustomerID+"/"+e.Event.ID] = e
	}
	return out
}

func TestRerateReplacesTotalsExactlyOnce(t *testing.T) {
	rater := &tableRater{perToken: map[string]string{"m": "0.000001", "n": "0.0000007"}}
	h := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100", "e2,acme,m,200;e3,acme,n,1000", "e4,globex,m,5"))
	h.p.rater = rater
	h.p.deps.Formats["admin"] = FormatCommand
	h.run(t)
	want := "1300 tokens, 3 events, cost 0.001, charge 0.0015"
	if got := totals(h.sink, sinks.GranularityDay, "acme"); got != want {
		t.Fatalf("before: %s, want %s", got, want)
	}
	before := lastRated(h.sink)

	// The price of m is corrected from 1 to 2.5 per million tokens, and
	// acme's m usage re-rated: e1 and e2, not e3 (model n) nor globex.
	rater.perToken["m"] = "0.0000025"
	cmds := []string{rerateMsg(t, "fix-1", "", before["acme/e1"]), rerateMsg(t, "fix-1", "", before["acme/e2"])}
	h.src.batches = [][]kafka.Message{topicMsgs("admin", 0, cmds...)}
	h.run(t)
	if len(h.dlq.recs) != 0 {
		t.Fatalf("dead letters %+v, want none", h.dlq.recs)
	}
	// New totals are those of the new prices: 300 x 2.5e-6 + 1000 x 7e-7.
	want = "1300 tokens, 3 events, cost 0.00145, charge 0.002175"
	for _, g := range []sinks.Granularity{sinks.GranularityHour, sinks.GranularityDay} {
		if got := totals(h.sink, g, "acme"); got != want {
			t.Fatalf("granularity %d after the rerate: %s, want %s", g, got, want)
		}
	}
	if got := totals(h.sink, sinks.GranularityDay, "globex"); got != "5 tokens, 1 events, cost 0.000005, charge 0.0000075" {
		t.Fatalf("globex changed: %s", got)
	}
	after := lastRated(h.sink)
	if e := after["acme/e1"]; e.Run != "fix-1" || e.Cost.String() != "0.00025" || e.Charge.String() != "0.000375" || !e.RatedAt.After(before["acme/e1"].RatedAt.Add(-time.Nanosecond)) {
		t.Fatalf("e1 after the rerate: run %q cost %s charge %s rated at %s; want fix-1, 0.00025, 0.000375, not before the first rating", e.Run, e.Cost, e.Charge, e.RatedAt)
	}
	if e := after["acme/e2"]; e.Run != "fix-1" || e.Cost.String() != "0.0005" || e.Topic != "admin" || e.Offset != 1 {
		t.Fatalf("e2 after the rerate: %+v", e)
	}
	if e := after["acme/e3"]; e.Run != "" || e.Cost.String() != "0.0007" {
		t.Fatalf("e3 is not re-rated, but now has run %q cost %s", e.Run, e.Cost)
	}
	// Same second as the first rating (the harness clock is fixed): the
	// new rows must still be later, or FINAL would keep the old ones.
	if !after["acme/e1"].RatedAt.After(before["acme/e1"].RatedAt) {
		t.Fatalf("re-rated at %s, first rated at %s: want later", after["acme/e1"].RatedAt, before["acme/e1"].RatedAt)
	}

	// The same commands again (a republished run, a redelivery): nothing.
	rows := len(h.sink.events)
	h.src.batches = [][]kafka.Message{topicMsgs("admin", 2, cmds...)}
	h.run(t)
	if len(h.sink.events) != rows || len(h.dlq.recs) != 0 || h.stats.Duplicates.Load() != 2 {
		t.Fatalf("the same rerates again wrote %d rows, %d dead letters, %d duplicates; want 0, 0, 2",
			len(h.sink.events)-rows, len(h.dlq.recs), h.stats.Duplicates.Load())
	}
	if got := totals(h.sink, sinks.GranularityDay, "acme"); got != want {
		t.Fatalf("after the same rerates again: %s, want %s", got, want)
	}

	// Live usage after a rerate is live: its row carries no run, though it
	// may reuse the batch storage a rerate used.
	h.src.batches = [][]kafka.Message{msgs(3, "e5,acme,n,10;e6,acme,n,10")}
	h.run(t)
	for _, id := range []string{"acme/e5", "acme/e6"} {
		if e := lastRated(h.sink)[id]; e.Run != "" || e.Event.ID == "" {
			t.Fatalf("live event %s written with run %q", id, e.Run)
		}
	}
	want = "1320 tokens, 5 events, cost 0.001464, charge 0.002196"

	// A second run that read the rating before fix-1 (old.run "") is stale:
	// its old amounts are no longer in the totals.
	h.src.batches = [][]kafka.Message{topicMsgs("admin", 4, rerateMsg(t, "fix-2", "", before["acme/e1"]))}
	h.run(t)
	if len(h.dlq.recs) != 1 || h.dlq.recs[0].Decoder != "rerate" || !strings.Contains(h.dlq.recs[0].Reason, `rating in force is run "fix-1"`) {
		t.Fatalf("stale rerate: dead letters %+v, want one naming the run in force", h.dlq.recs)
	}
	if got := totals(h.sink, sinks.GranularityDay, "acme"); got != want {
		t.Fatalf("after the stale rerate: %s, want %s", got, want)
	}
	// Re-read, it applies: the price of m is corrected again, to 2.
	rater.perToken["m"] = "0.000002"
	h.src.batches = [][]kafka.Message{topicMsgs("admin", 5, rerateMsg(t, "fix-2", "fix-1", after["acme/e1"]))}
	h.run(t)
	if got, want := totals(h.sink, sinks.GranularityDay, "acme"), "1320 tokens, 5 events, cost 0.001414, charge 0.002121"; got != want {
		t.Fatalf("after fix-2 of e1: %s, want %s", got, want)
	}
}

func TestUnpricedRerateIsDeadLetteredAndChangesNothing(t *testing.T) {
	rater := &tableRater{perToken: map[string]string{"m": "0.000001"}}
	h := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100"))
	h.p.rater = rater
	h.p.deps.Formats["admin"] = FormatCommand
	h.run(t)
	first := lastRated(h.sink)["acme/e1"]
	want := totals(h.sink, sinks.GranularityHour, "acme")
	aggBatches := len(h.sink.aggs)

	delete(rater.perToken, "m") // the model lost its price
	h.src.batches = [][]kafka.Message{topicMsgs("admin", 0, rerateMsg(t, "fix-1", "", first))}
	h.run(t)
	if len(h.dlq.recs) != 1 || h.dlq.recs[0].Decoder != "rerate" || !strings.Contains(h.dlq.recs[0].Reason, "unpriced") ||
		!strings.Contains(h.dlq.recs[0].Reason, "the old rating stands") {
		t.Fatalf("dead letters %+v, want one unpriced rerate", h.dlq.recs)
	}
	if h.stats.Unpriced.Load() != 1 {
		t.Fatalf("unpriced = %d, want 1", h.stats.Unpriced.Load())
	}
	if len(h.sink.events) != 1 {
		t.Fatalf("%d rated rows written, want only the first rating", len(h.sink.events))
	}
	for _, a := range h.sink.aggs[aggBatches:] {
		if len(a) != 0 {
			t.Fatalf("the refused rerate wrote aggregates %+v", a)
		}
	}
	if got := totals(h.sink, sinks.GranularityHour, "acme"); got != want {
		t.Fatalf("totals %s, want unchanged %s", got, want)
	}
	// Not marked applied: once the price is back, the same command applies.
	rater.perToken["m"] = "0.000003"
	h.src.batches = [][]kafka.Message{topicMsgs("admin", 1, rerateMsg(t, "fix-1", "", first))}
	h.run(t)
	if got, want := totals(h.sink, sinks.GranularityHour, "acme"), "100 tokens, 1 events, cost 0.0003, charge 0.00045"; got != want || len(h.dlq.recs) != 1 {
		t.Fatalf("after the price is back: %s (%d dead letters), want %s", got, len(h.dlq.recs), want)
	}
}

func TestRerateRefusals(t *testing.T) {
	rater := &tableRater{perToken: map[string]string{"m": "0.000001"}}
	h := newHarness(t, t.TempDir(), msgs(0, "e1,acme,m,100"))
	h.p.rater = rater
	h.p.deps.Formats["admin"] = FormatCommand
	h.run(t)
	e1 := lastRated(h.sink)["acme/e1"]
	want := totals(h.sink, sinks.GranularityDay, "acme")

	never := e1
	never.Event.ID = "never-applied"
	otherKey := e1
	otherKey.PriceKey = "n"
	more := e1
	more.Lines = []sinks.Line{{Unit: schemas.UnitInput, Quantity: 100, Cost: rating.MustAmount("0.0002"), Charge: rating.MustAmount("0.00015")}}
	cases := []struct{ msg, reason string }{
		{rerateMsg(t, "fix 1", "", e1), "rerate.run"},
		{strings.Replace(rerateMsg(t, "fix-1", "", e1), `"id":"rerate:fix-1:e1"`, `"id":"e1"`, 1), `rerate.id: "e1": expected "rerate:fix-1:e1"`},
		{strings.Replace(rerateMsg(t, "fix-1", "", e1), `"kind":"rerate"`, `"kind":"rerate","extra":1`, 1), `unknown field "extra"`},
		{rerateMsg(t, "fix-1", "", never), `event "never-applied" of customer "acme" was not applied by partition 0`},
		{rerateMsg(t, "fix-1", "", otherKey), `holds nothing for price key "n"`},
		{rerateMsg(t, "fix-1", "", more), "is more than the hourly total"},
	}
	var values []string
	for _, c := range cases {
		values = append(values, c.msg)
	}
	h.src.batches = [][]kafka.Message{topicMsgs("admin", 0, values...)}
	h.run(t)
	if len(h.dlq.recs) != len(cases) {
		t.Fatalf("%d dead letters, want %d: %+v", len(h.dlq.recs), len(cases), h.dlq.recs)
	}
	for i, c := range cases {
		if r := h.dlq.recs[i]; r.Decoder != "rerate" || !strings.Contains(r.Reason, c.reason) {
			t.Errorf("case %d: dead letter %s %q, want stage rerate and %q", i, r.Decoder, r.Reason, c.reason)
		}
	}
	if got := totals(h.sink, sinks.GranularityDay, "acme"); got != want || len(h.sink.events) != 1 {
		t.Fatalf("refusals changed the totals to %s (%d rows), want %s", got, len(h.sink.events), want)
	}
}

// TestRerateInTheBatchOfItsEvent: a rerate applied in the same batch as
// the event it re-rates finds the event (applied but not yet committed)
// and the totals the batch holds.
func TestRerateInTheBatchOfItsEvent(t *testing.T) {
	rater := &tableRater{perToken: map[string]string{"m": "0.000001"}}
	var first sinks.RatedEvent
	ev := schemas.UsageEvent{ID: "e9", CustomerID: "acme", Model: "m", Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	ev.Quantities[schemas.UnitInput] = 100
	if err := rater.Rate(&ev, &first); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, t.TempDir(), append(msgs(0, "e9,acme,m,100"), topicMsgs("admin", 0, rerateMsg(t, "fix-1", "", first))...))
	h.p.rater = rater
	h.p.deps.Formats["admin"] = FormatCommand
	rater.perToken["m"] = "0.000001" // the same price: only the run changes
	h.run(t)
	if len(h.dlq.recs) != 0 {
		t.Fatalf("dead letters %+v, want none", h.dlq.recs)
	}
	if e := lastRated(h.sink)["acme/e9"]; e.Run != "fix-1" || len(h.sink.events) != 2 {
		t.Fatalf("rows %d, last run %q; want the live row then the fix-1 row", len(h.sink.events), e.Run)
	}
	if got, want := totals(h.sink, sinks.GranularityDay, "acme"), "100 tokens, 1 events, cost 0.0001, charge 0.00015"; got != want {
		t.Fatalf("totals %s, want %s: the event counted once", got, want)
	}
}
