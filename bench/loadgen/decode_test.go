package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
	"github.com/tariff-dev/tariff/schemas"
)

var testStart = time.Date(2026, 2, 22, 12, 0, 0, 0, time.UTC)

func testConfig(events int) Config {
	cfg := DefaultConfig()
	cfg.Seed, cfg.Events, cfg.Start = 42, events, testStart
	cfg.Customers = 500
	cfg.Markup = "30"
	cfg.Formats = MixedWeights // every format, OpenRouter included
	// Enough duplicates and malformed messages that every path shows up in
	// a few thousand messages.
	cfg.DupShare, cfg.MalformedShare = 0.05, 0.02
	cfg.LongContextShare = 0.05
	return cfg
}

// diffEvent describes how got differs from want, or "" when they agree.
func diffEvent(got, want *schemas.UsageEvent) string {
	var d []string
	if got.ID != want.ID {
		d = append(d, fmt.Sprintf("id %q, want %q", got.ID, want.ID))
	}
	if !got.Time.Equal(want.Time) {
		d = append(d, fmt.Sprintf("time %s, want %s", got.Time, want.Time))
	}
	if got.CustomerID != want.CustomerID {
		d = append(d, fmt.Sprintf("customer %q, want %q", got.CustomerID, want.CustomerID))
	}
	if !slices.Equal(got.Dimensions, want.Dimensions) {
		d = append(d, fmt.Sprintf("dimensions %v, want %v", got.Dimensions, want.Dimensions))
	}
	if got.Provider != want.Provider || got.Model != want.Model {
		d = append(d, fmt.Sprintf("model %s/%s, want %s/%s", got.Provider, got.Model, want.Provider, want.Model))
	}
	if got.Tier != want.Tier {
		d = append(d, fmt.Sprintf("tier %s, want %s", got.Tier, want.Tier))
	}
	if got.Quantities != want.Quantities {
		d = append(d, fmt.Sprintf("quantities %v, want %v", got.Quantities, want.Quantities))
	}
	if got.ReportedCost.Valid != want.ReportedCost.Valid || !got.ReportedCost.Decimal.Equal(want.ReportedCost.Decimal) {
		d = append(d, fmt.Sprintf("reported cost %v, want %v", got.ReportedCost, want.ReportedCost))
	}
	if got.Source != want.Source {
		d = append(d, fmt.Sprintf("source %s, want %s", got.Source, want.Source))
	}
	return strings.Join(d, "; ")
}

// stubbed reports whether a decoder error says the decoder is not written
// yet, so that its sub-case is skipped rather than failed.
func stubbed(err error) bool {
	return err != nil && (errors.Is(err, errors.ErrUnsupported) || strings.Contains(err.Error(), "not implemented"))
}

// TestMessagesDecodeToIntendedEvents decodes every generated message with
// the decoder of its format (and LiteLLM also with auto, which the partner
// topic uses) and checks it yields exactly the intended events; that every
// malformed message is refused; and that a duplicate carries its
// original's ids.
func TestMessagesDecodeToIntendedEvents(t *testing.T) {
	g, err := New(testConfig(20_000))
	if err != nil {
		t.Fatal(err)
	}
	var decs [numFormats]schemas.Decoder
	for f := range decs {
		if decs[f], err = schemas.DecoderFor(Format(f).String(), schemas.DecodeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	auto, err := schemas.DecoderFor(schemas.FormatAuto, schemas.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := testStart.Add(time.Hour)
	firstIDs := map[uint64][]string{}
	var stubs [numFormats]error
	var seen [numFormats][3]int
	var malSeen [numMalformations]int
	var m Message
	var evs []schemas.UsageEvent
	ids := func(evs []schemas.UsageEvent) []string {
		out := make([]string, len(evs))
		for i := range evs {
			out[i] = evs[i].ID
		}
		return out
	}
	for i := 0; g.Next(&m); i++ {
		f := m.Format
		if stubs[f] != nil {
			continue
		}
		seen[f][m.Kind]++
		evs, err = decs[f].Decode(evs[:0], m.Value)
		if stubbed(err) {
			stubs[f] = err
			continue
		}
		if m.Kind == KindMalformed {
			malSeen[m.Malformation]++
			refused := err != nil
			for j := range evs {
				refused = refused || evs[j].Validate(now) != nil
			}
			if !refused {
				t.Errorf("message %d (%s, %s): accepted: %s", i, f, m.Malformation, m.Value)
			}
			if f == FormatLiteLLM || f == FormatOpenRouter {
				if aevs, aerr := auto.Decode(nil, m.Value); aerr == nil && m.Malformation != MalformedFutureTime {
					t.Errorf("message %d (%s, %s): auto decoder accepted %d events", i, f, m.Malformation, len(aevs))
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("message %d (%s %s): %v\n%s", i, m.Kind, f, err, m.Value)
		}
		want := g.Intended(&m)
		if len(evs) != len(want) {
			t.Fatalf("message %d (%s %s): %d events, want %d\n%s", i, m.Kind, f, len(evs), len(want), m.Value)
		}
		for j := range evs {
			if d := diffEvent(&evs[j], &want[j]); d != "" {
				t.Fatalf("message %d (%s %s) event %d: %s\n%s", i, m.Kind, f, j, d, m.Value)
			}
			if err := evs[j].Validate(now); err != nil {
				t.Fatalf("message %d event %d: refused by Validate: %v", i, j, err)
			}
		}
		if f == FormatLiteLLM || f == FormatOpenRouter {
			aevs, err := auto.Decode(nil, m.Value)
			if err != nil || len(aevs) != 1 || diffEvent(&aevs[0], &want[0]) != "" {
				t.Fatalf("message %d: the auto decoder (partner topic) does not read it as %s: %v %v", i, f, err, aevs)
			}
		}
		switch m.Kind {
		case KindFresh:
			firstIDs[m.Request.Seq] = ids(evs)
		case KindDuplicate:
			orig, ok := firstIDs[m.Request.Seq]
			if !ok {
				t.Fatalf("message %d: duplicate of request %d before its original", i, m.Request.Seq)
			}
			if got := ids(evs); !slices.Equal(got, orig) {
				t.Fatalf("message %d (duplicate, cross-format %v): ids %v, original %v", i, m.CrossFormat, got, orig)
			}
		}
	}
	for f, err := range stubs {
		if err != nil {
			t.Run(Format(f).String(), func(t *testing.T) {
				t.Skipf("SKIPPED: the schemas %s decoder is still a stub (%v); re-run when it is done", Format(f), err)
			})
		}
	}
	for f := range seen {
		for k, n := range seen[f] {
			if n == 0 && stubs[f] == nil {
				t.Errorf("no %s %s message in the stream: the test covers nothing there", Kind(k), Format(f))
			}
		}
	}
	for k := MalformedBrokenJSON; k < numMalformations; k++ {
		if malSeen[k] == 0 {
			t.Errorf("no %s message in the stream", k)
		}
	}
}

// observeByRating plays a minimal pipeline over g's stream; see observe.
func observeByRating(t *testing.T, g *Generator, markup string) (Totals, int, int, int) {
	t.Helper()
	var msg Message
	return observe(t, g.cfg.Topics, markup, func() (string, []byte, bool) {
		if !g.Next(&msg) {
			return "", nil, false
		}
		return msg.Topic, msg.Value, true
	})
}

// observe plays a minimal pipeline over messages: decode with each topic's
// decoder (tariff's defaults: gateway, auto for the partner topic, meter),
// validate, deduplicate by id, rate with the rating engine (as the
// pipeline's rater does), and sum the lines. It returns the totals and the
// count of dead-lettered messages and of accepted and duplicate events.
func observe(t *testing.T, topics Topics, markup string, next func() (topic string, value []byte, ok bool)) (Totals, int, int, int) {
	t.Helper()
	m, err := rating.ParseMarkup(markup)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := rating.ParsePriceList(bundled.LiteLLM)
	if err != nil {
		t.Fatal(err)
	}
	book, err := rating.NewBook(nil, &rating.Version{ID: "v", Prices: snap})
	if err != nil {
		t.Fatal(err)
	}
	terms := rating.Terms{Markups: rating.MarkupLayers{Global: &rating.MarkupRules{Default: m}}}
	byTopic := map[string]schemas.Decoder{}
	for topic, format := range map[string]string{
		topics.Gateway: schemas.FormatGateway, topics.Partner: schemas.FormatAuto, topics.Meter: schemas.FormatMeter,
	} {
		if byTopic[topic], err = schemas.DecoderFor(format, schemas.DecodeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	now := testStart.Add(24 * time.Hour)
	seen := map[string]bool{}
	obs := Totals{}
	dead, accepted, dups := 0, 0, 0
	var evs []schemas.UsageEvent
	var out rating.Rated
	for {
		topic, value, ok := next()
		if !ok {
			break
		}
		dec := byTopic[topic]
		if dec == nil {
			t.Fatalf("message on unknown topic %s", topic)
		}
		evs, err = dec.Decode(evs[:0], value)
		if stubbed(err) {
			t.Skipf("SKIPPED: the schemas decoder for topic %s is still a stub (%v)", topic, err)
		}
		refused := err != nil
		for i := 0; !refused && i < len(evs); i++ {
			refused = evs[i].Validate(now) != nil
		}
		if refused {
			dead++
			continue
		}
		for i := range evs {
			ev := &evs[i]
			if seen[ev.ID] {
				dups++
				continue
			}
			seen[ev.ID] = true
			accepted++
			if err := book.Rate(ev, &terms, &out); err != nil {
				t.Fatalf("event %s (%s %s): not rateable: %v", ev.ID, ev.Provider, ev.Model, err)
			}
			for _, l := range out.Lines() {
				obs.Add(Key{ev.CustomerID, out.PriceKey, l.Unit}, l.Quantity, l.Cost.Decimal(), l.Charge.Decimal())
			}
		}
	}
	return obs, dead, accepted, dups
}

// TestExpectedMatchesRating checks the independent expectation against
// tariff's own decoders and rating engine over a whole stream.
func TestExpectedMatchesRating(t *testing.T) {
	cfg := testConfig(30_000)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	obs, dead, accepted, dups := observeByRating(t, g, cfg.Markup)
	exp := g.Expected()
	if !exp.Complete {
		t.Fatal("expectation not complete after the stream ended")
	}
	diffs, err := exp.Compare(obs)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Fatalf("%d totals differ from rating:\n%s", len(diffs), Summarize(diffs, 20))
	}
	c := exp.Counts
	if int64(dead) != c.Malformed || int64(accepted) != c.Events || int64(dups) != c.DuplicateEvents {
		t.Fatalf("dead-lettered %d, accepted %d, duplicate events %d; expected %d, %d, %d", dead, accepted, dups, c.Malformed, c.Events, c.DuplicateEvents)
	}
	if c.Messages != int64(cfg.Events) || c.Requests+c.Duplicates+c.Malformed != c.Messages {
		t.Fatalf("counts do not add up: %+v", c)
	}
	if c.CrossFormatDuplicates == 0 || c.LateDuplicates == 0 {
		t.Fatalf("no cross-format or late duplicates: %+v", c)
	}
	sum := decimal.Zero
	for _, l := range exp.Lines {
		sum = sum.Add(l.Charge)
	}
	if !sum.Equal(exp.Charge) || exp.Charge.LessThanOrEqual(exp.Cost) {
		t.Fatalf("grand charge %s, lines sum to %s, cost %s", exp.Charge, sum, exp.Cost)
	}
	t.Logf("%d messages: %d requests, %d events, %d duplicates (%d cross-format, %d late), %d malformed; %d totals, cost %s, charge %s",
		c.Messages, c.Requests, c.Events, c.Duplicates, c.CrossFormatDuplicates, c.LateDuplicates, c.Malformed, len(exp.Lines), exp.Cost, exp.Charge)
}

// TestAllModelsRateable runs a stream over every chat model of the bundled
// list through the rating engine: no event may be unpriced.
func TestAllModelsRateable(t *testing.T) {
	cfg := testConfig(20_000)
	cfg.Models = ModelsAll
	cfg.ModelSkew = 1.01 // reach deep into the list
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d models", len(g.models))
	obs, _, _, _ := observeByRating(t, g, cfg.Markup)
	diffs, err := g.Expected().Compare(obs)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Fatalf("%d totals differ from rating:\n%s", len(diffs), Summarize(diffs, 20))
	}
}

func TestSharedPayloadShapes(t *testing.T) {
	// The LiteLLM payload carries the shared example's top-level fields.
	g, err := New(func() Config { c := testConfig(10); c.Formats = Weights{FormatLiteLLM: 1}; return c }())
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	for g.Next(&m) && m.Kind != KindFresh {
	}
	for _, field := range []string{`"id":`, `"call_type":`, `"response_cost":`, `"custom_llm_provider":`, `"startTime":`,
		`"model_map_information":`, `"model_group":`, `"metadata":`, `"usage_object":`, `"end_user":`, `"response":`, `"hidden_params":`} {
		if !bytes.Contains(m.Value, []byte(field)) {
			t.Errorf("LiteLLM payload has no %s field", field)
		}
	}
}

// TestEveryModelVariantRateable rates, for every model of the "all"
// catalog, a request with every unit the generator may give it, in every
// tier it may pick, below and above its long-context band: the rating
// engine must price all of them.
func TestEveryModelVariantRateable(t *testing.T) {
	cfg := testConfig(10)
	cfg.Models = ModelsAll
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	book, err := rating.NewBook(nil, &rating.Version{ID: "v", Prices: g.snap})
	if err != nil {
		t.Fatal(err)
	}
	var out rating.Rated
	n := 0
	for i := range g.models {
		m := &g.models[i]
		for _, tier := range append([]schemas.Tier{schemas.TierStandard}, m.tiers...) {
			for _, long := range []bool{false, true} {
				if long && m.band == 0 {
					continue
				}
				ev := schemas.UsageEvent{ID: "x", Time: testStart, CustomerID: "c", Provider: m.provider, Model: m.name, Tier: tier}
				q := &ev.Quantities
				q[schemas.UnitInput], q[schemas.UnitOutput], q[schemas.UnitRequests] = 1000, 100, 1
				if long {
					q[schemas.UnitInput] = m.band + 1
				}
				if m.cacheRead {
					q[schemas.UnitCachedInput] = 512
				}
				if m.cacheWrite {
					q[schemas.UnitCacheWrite5m] = 256
				}
				if m.has1h && g.priced1h(m, promptTokens(q)+128, 128, 0, tier) {
					q[schemas.UnitCacheWrite1h] = 128
				}
				if m.reasoning {
					q[schemas.UnitReasoning] = 64
				}
				if err := book.Rate(&ev, nil, &out); err != nil {
					t.Errorf("%s/%s tier %s long %v: %v", m.provider, m.name, tier, long, err)
				} else if out.PriceKey != m.key {
					t.Errorf("%s/%s resolves to %s, the catalog says %s", m.provider, m.name, out.PriceKey, m.key)
				}
				n++
			}
		}
	}
	t.Logf("%d models, %d variants rated", len(g.models), n)
	// The check that keeps 1-hour writes rateable must not turn them off
	// where they are priced: every Claude model with a stated or derived
	// standard 1h price keeps them.
	for i := range g.models {
		m := &g.models[i]
		if m.has1h && !g.priced1h(m, 5000, 2000, 0, schemas.TierStandard) {
			t.Errorf("%s: 1-hour writes priced in the standard table but refused", m.key)
		}
	}
}
