package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

// memOpAlerts is an Alerts that also takes operator alerts.
type memOpAlerts struct {
	memAlerts
	ops []OperatorAlert
}

func (m *memOpAlerts) WriteOperatorAlerts(_ context.Context, a []OperatorAlert) error {
	for _, x := range a {
		x.Body = append([]byte(nil), x.Body...) // the slice is reused after return
		m.ops = append(m.ops, x)
	}
	return nil
}

// openaiDecoder is csvDecoder with provider "openai" on every event.
type openaiDecoder struct{}

func (openaiDecoder) Name() string { return "csv" }
func (openaiDecoder) Decode(dst []schemas.UsageEvent, msg []byte) ([]schemas.UsageEvent, error) {
	n := len(dst)
	dst, err := csvDecoder{}.Decode(dst, msg)
	for i := n; i < len(dst); i++ {
		dst[i].Provider = "openai"
	}
	return dst, err
}

// unpricedRater is fakeRater that also refuses every model starting with
// "unknown" (no entry), and model "no-output" as an entry without an
// output price, the way PriceRater wraps the rating engine's errors.
type unpricedRater struct{}

func (unpricedRater) Rate(ev *schemas.UsageEvent, out *sinks.RatedEvent) error {
	switch {
	case strings.HasPrefix(ev.Model, "unknown"):
		return fmt.Errorf("%w: %w", ErrUnpriced, &rating.RateError{Kind: rating.ErrUnknownModel, Provider: ev.Provider, Model: ev.Model, PriceVersion: "v1"})
	case ev.Model == "no-output":
		return fmt.Errorf("%w: %w", ErrUnpriced, &rating.RateError{Kind: rating.ErrUnpriced, Provider: ev.Provider, Model: ev.Model,
			PriceKey: "openai/no-output", PriceVersion: "v1", Unit: schemas.UnitOutput, HasUnit: true})
	}
	return fakeRater{}.Rate(ev, out)
}

// rebuild makes h's processor again with change applied to its deps (the
// processor looks at Alerts and Metrics once, when it is made).
func (h *harness) rebuild(change func(*Deps)) {
	deps := h.p.deps
	change(&deps)
	h.p = NewProcessor(h.p.cfg, h.p.partition, h.p.gen, h.p.offsets, h.p.rater, deps, h.p.commit)
}

// TestUnpricedModelAlertsOncePerModelPerHour: events of a model without a
// price are dead-lettered as before, and the seller hears of it once per
// provider and model per hour: three events of one model in one hour make
// one unpriced_model alert, another model makes a second, and the next
// hour alerts again. Balance alerts are untouched.
func TestUnpricedModelAlertsOncePerModelPerHour(t *testing.T) {
	hour0 := time.Date(2026, 11, 2, 13, 0, 0, 0, time.UTC)
	clock := []time.Time{
		hour0.Add(5 * time.Minute),  // batch 1
		hour0.Add(40 * time.Minute), // batch 2
		hour0.Add(70 * time.Minute), // batch 3, the next hour
	}
	h := newHarness(t, t.TempDir(),
		msgs(0, "u1,acme,unknown-a,10", "ok1,acme,m,5", "u2,acme,unknown-a,10"),
		msgs(3, "u3,globex,unknown-a,10", "u4,acme,unknown-b,10", "u5,acme,no-output,7"),
		msgs(6, "u6,acme,unknown-a,10", "ok2,acme,m,5"),
	)
	al := &memOpAlerts{}
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	batch := 0
	h.rebuild(func(d *Deps) {
		d.Alerts, d.Metrics = al, m
		d.Decoders = map[string]schemas.Decoder{"csv": openaiDecoder{}}
		d.Now = func() time.Time { return clock[min(batch, len(clock)-1)] }
	})
	h.p.rater = unpricedRater{}
	ctx, cancel := context.WithCancel(context.Background())
	h.src.cancel = cancel
	// Advance the clock between batches: the processor reads it once at
	// the start of a batch, and fetches the next batch after committing.
	src := &clockedSource{fakeSource: h.src, next: func() { batch++ }}
	if err := h.p.Run(ctx, src); err != nil {
		t.Fatal(err)
	}

	if len(h.dlq.recs) != 6 || h.stats.Unpriced.Load() != 6 || len(h.sink.events) != 2 {
		t.Fatalf("%d dead letters, %d unpriced, %d rated; want every unpriced message dead-lettered (6) and the 2 priced ones rated",
			len(h.dlq.recs), h.stats.Unpriced.Load(), len(h.sink.events))
	}
	var got []string
	for _, a := range al.ops {
		got = append(got, a.Key)
	}
	want := []string{
		"unpriced:openai/unknown-a:2026-11-02T13Z",
		"unpriced:openai/unknown-b:2026-11-02T13Z",
		"unpriced:openai/no-output:2026-11-02T13Z",
		"unpriced:openai/unknown-a:2026-11-02T14Z",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("operator alerts\n got %q\nwant %q (unknown-a thrice in hour 13 is one alert)", got, want)
	}
	if len(al.alerts) != 0 {
		t.Errorf("%d balance alerts, want none", len(al.alerts))
	}
	bodies := make([]UnpricedModel, len(al.ops))
	for i, a := range al.ops {
		if err := json.Unmarshal(a.Body, &bodies[i]); err != nil {
			t.Fatalf("alert %d body %s: %v", i, a.Body, err)
		}
		if a.Kind != "unpriced_model" || a.MessageKey != "openai/"+bodies[i].Model {
			t.Errorf("alert %d: kind %q, message key %q; want unpriced_model keyed by provider/model", i, a.Kind, a.MessageKey)
		}
		if bodies[i].Key != a.Key || bodies[i].Kind != a.Kind {
			t.Errorf("alert %d: body key/kind %q/%q, header %q/%q", i, bodies[i].Key, bodies[i].Kind, a.Key, a.Kind)
		}
	}
	// unknown-a in hour 13: first u1 at offset 0, two refused by the end
	// of batch 1 (u3 in batch 2 counts on, silently).
	a := bodies[0]
	if a.Provider != "openai" || a.Model != "unknown-a" || a.PriceKey != "" || a.FirstEventID != "u1" || a.FirstCustomerID != "acme" ||
		a.Topic != "usage" || a.Offset != 0 || a.Count != 2 || !a.Hour.Equal(hour0) || !strings.Contains(a.Reason, "unknown model") {
		t.Errorf("first alert %+v; want openai/unknown-a, no price key, first event u1 at usage/0, count 2, hour 13:00, reason unknown model", a)
	}
	if b := bodies[2]; b.PriceKey != "openai/no-output" || b.Unit != "output" || b.FirstEventID != "u5" || b.Offset != 5 || b.Count != 1 {
		t.Errorf("no-output alert %+v; want price key openai/no-output, unit output, first event u5 at offset 5, count 1", b)
	}
	if c := bodies[3]; c.FirstEventID != "u6" || c.Count != 1 || !c.Hour.Equal(hour0.Add(time.Hour)) {
		t.Errorf("next-hour alert %+v; want first event u6, count 1, hour 14:00", c)
	}
	if n := m.AlertsEmitted.With(metrics.KindUnpricedModel).Value(); n != 4 {
		t.Errorf("tariff_alerts_emitted_total{kind=unpriced_model} = %d, want 4", n)
	}
	if n := m.Source("usage").Unpriced.Value(); n != 6 {
		t.Errorf("tariff_messages_unpriced_total{source=usage} = %d, want 6", n)
	}
}

// clockedSource calls next before serving each batch after the first.
type clockedSource struct {
	*fakeSource
	next   func()
	served bool
}

func (s *clockedSource) Fetch(ctx context.Context, b *sources.Batch) error {
	if s.served {
		s.next()
	}
	s.served = true
	return s.fakeSource.Fetch(ctx, b)
}

// TestPerSourceCounters: every per-source series counts its own input
// topic, and their sums equal the global Stats.
func TestPerSourceCounters(t *testing.T) {
	h := newHarness(t, t.TempDir(),
		append(msgs(0, "e1,acme,m,100", "e2,acme,m,200", "e1,acme,m,100"), // e1 again: a duplicate
			topicMsgs("partner", 0, "e3,acme,m,300", "not,enough")...), // the second is malformed
		topicMsgs("partner", 2, "e4,acme,unknown,1"), // unpriced
	)
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	h.rebuild(func(d *Deps) { d.Metrics = m })
	h.run(t)
	type row struct{ messages, decoded, rated, dups, dead, unpriced uint64 }
	read := func(topic string) row {
		c := m.Source(topic)
		return row{c.Messages.Value(), c.Decoded.Value(), c.Rated.Value(), c.Deduplicated.Value(), c.DeadLettered.Value(), c.Unpriced.Value()}
	}
	if got, want := read("usage"), (row{3, 3, 2, 1, 0, 0}); got != want {
		t.Errorf("usage: %+v, want %+v", got, want)
	}
	if got, want := read("partner"), (row{3, 2, 1, 0, 2, 1}); got != want {
		t.Errorf("partner: %+v, want %+v", got, want)
	}
	st := h.stats
	if st.Messages.Load() != 6 || st.Events.Load() != 5 || st.Rated.Load() != 3 || st.Duplicates.Load() != 1 || st.DeadLettered.Load() != 2 || st.Unpriced.Load() != 1 {
		t.Errorf("global stats %d messages, %d events, %d rated, %d duplicates, %d dead, %d unpriced; want 6, 5, 3, 1, 2, 1",
			st.Messages.Load(), st.Events.Load(), st.Rated.Load(), st.Duplicates.Load(), st.DeadLettered.Load(), st.Unpriced.Load())
	}
	if n := m.BatchSeconds.Count(); n != 2 {
		t.Errorf("batch duration observed %d times, want once per batch (2)", n)
	}
}

// TestBalanceAlertsCountedByKind: each balance alert written is counted in
// tariff_alerts_emitted_total under its kind; none is counted for
// unpriced_model when nothing is unpriced.
func TestBalanceAlertsCountedByKind(t *testing.T) {
	grant := func(id, amount string) string {
		return fmt.Sprintf(`{"id":%q,"customer_id":"acme","kind":"grant","at":"2026-11-01T00:00:00Z","grant":{"id":%q,"amount":%q,"currency":"USD"}}`, id, id, amount)
	}
	h := newHarness(t, t.TempDir(),
		append(topicMsgs("admin", 0, grant("pack-1", "0.0003")), msgs(0, "e1,acme,m,100", "e2,acme,m,200", "e3,acme,m,50")...),
		topicMsgs("admin", 1, grant("topup-1", "0.001")))
	al := &memOpAlerts{}
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	h.rebuild(func(d *Deps) {
		d.Formats["admin"] = FormatCommand
		d.Alerts, d.Metrics = al, m
	})
	h.run(t)
	if got := al.kinds(); got != "acme:zero acme:recovery" {
		t.Fatalf("alerts %q, want a zero alert, then a recovery", got)
	}
	for kind, want := range map[string]uint64{"zero": 1, "recovery": 1, "threshold": 0, metrics.KindUnpricedModel: 0} {
		if got := m.AlertsEmitted.With(kind).Value(); got != want {
			t.Errorf("tariff_alerts_emitted_total{kind=%q} = %d, want %d", kind, got, want)
		}
	}
	if len(al.ops) != 0 {
		t.Errorf("%d operator alerts, want none", len(al.ops))
	}
}

// TestUnpricedModelsPerHourAreBounded: a stream of made-up model names
// alerts about the first maxUnpricedModelsPerHour of them in an hour, not
// about every one.
func TestUnpricedModelsPerHourAreBounded(t *testing.T) {
	u := &unpricedAlerts{models: make(map[unpricedModelKey]*unpricedEntry)}
	at := time.Date(2026, 11, 2, 13, 0, 0, 0, time.UTC)
	m := &kafka.Message{Topic: "usage"}
	for i := range maxUnpricedModelsPerHour + 10 {
		ev := &schemas.UsageEvent{ID: fmt.Sprint("e", i), CustomerID: "acme", Provider: "openai", Model: fmt.Sprint("made-up-", i)}
		u.note(m, ev, ErrUnpriced, "unpriced", at)
	}
	ops, err := u.flush()
	if err != nil || len(ops) != maxUnpricedModelsPerHour {
		t.Fatalf("%d alerts (%v), want %d", len(ops), err, maxUnpricedModelsPerHour)
	}
	// The next hour starts afresh.
	u.note(m, &schemas.UsageEvent{ID: "x", Provider: "openai", Model: "made-up-0"}, ErrUnpriced, "unpriced", at.Add(time.Hour))
	if ops, _ := u.flush(); len(ops) != 1 || ops[0].Key != "unpriced:openai/made-up-0:2026-11-02T14Z" {
		t.Fatalf("next hour: %+v", ops)
	}
}
