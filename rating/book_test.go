package rating

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// priced builds a one-entry snapshot with an input price.
func priced(t testing.TB, key, price string) *Snapshot {
	t.Helper()
	mp := &ModelPrice{Key: key, Provider: "openai"}
	mp.Base[0].Set(in, MustPrice(price))
	s, err := NewSnapshot(FormatLiteLLM, []*ModelPrice{mp})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBookVersionAt(t *testing.T) {
	jan := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feb := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	b, err := NewBook(nil,
		&Version{ID: "feb", EffectiveFrom: feb, Prices: priced(t, "m", "0.000002")},
		&Version{ID: "jan", EffectiveFrom: jan, Prices: priced(t, "m", "0.000001")},
	)
	if err != nil {
		t.Fatal(err)
	}
	var r Rated
	f := func(at time.Time, wantVersion, wantCost string) {
		t.Helper()
		ev := event("", "m", qty{in: 1_000_000})
		ev.Time = at
		err := b.Rate(ev, nil, &r)
		if wantVersion == "" {
			if !errors.Is(err, ErrNoPriceVersion) {
				t.Errorf("at %s: err = %v, want ErrNoPriceVersion", at, err)
			}
			return
		}
		if err != nil || r.PriceVersion != wantVersion || r.Cost.String() != wantCost {
			t.Errorf("at %s: %v version %s cost %s, want %s %s", at, err, r.PriceVersion, r.Cost, wantVersion, wantCost)
		}
	}
	f(jan.Add(-time.Second), "", "")
	f(jan, "jan", "1")
	f(feb.Add(-time.Nanosecond), "jan", "1") // a late January event keeps January's price
	f(feb, "feb", "2")
	f(feb.AddDate(1, 0, 0), "feb", "2")

	// Pinning a price version overrides the event time.
	ev := event("", "m", qty{in: 1_000_000})
	ev.Time = feb
	if err := b.Rate(ev, &Terms{PriceVersion: "jan"}, &r); err != nil || r.Cost.String() != "1" {
		t.Errorf("pinned: %v %s", err, r.Cost)
	}
	if err := b.Rate(ev, &Terms{PriceVersion: "nope"}, &r); !errors.Is(err, ErrNoPriceVersion) {
		t.Errorf("pinned missing: %v", err)
	}
	if mp, v, err := b.PriceAt("m", "", jan.Add(time.Hour)); err != nil || v.ID != "jan" || mp.Key != "m" {
		t.Errorf("PriceAt: %v %v", v, err)
	}
	if _, _, err := b.PriceAt("zzz", "", feb); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("PriceAt unknown: %v", err)
	}

	// With builds a new book; the old one is unchanged.
	mar := feb.AddDate(0, 1, 0)
	b2, err := b.With(&Version{ID: "mar", EffectiveFrom: mar, Prices: priced(t, "m", "0.000003")})
	if err != nil {
		t.Fatal(err)
	}
	if b.VersionAt(mar).ID != "feb" || b2.VersionAt(mar).ID != "mar" || b2.Latest().ID != "mar" {
		t.Error("With mutated the old book")
	}
	if _, err := b.With(&Version{ID: "jan", EffectiveFrom: mar, Prices: priced(t, "m", "1")}); err == nil {
		t.Error("duplicate id accepted")
	}
	if _, err := b.With(&Version{ID: "x", EffectiveFrom: feb, Prices: priced(t, "m", "1")}); err == nil {
		t.Error("duplicate effective time accepted")
	}
}

// TestBookRefSwap swaps books while readers rate: every event must be
// rated entirely with one book (both lines at the same price), never half
// old, half new. Run with -race.
func TestBookRefSwap(t *testing.T) {
	mk := func(id, price string) *Book {
		mp := &ModelPrice{Key: "m", Provider: "openai"}
		mp.Base[0].Set(in, MustPrice(price))
		mp.Base[0].Set(out, MustPrice(price))
		s, err := NewSnapshot(FormatLiteLLM, []*ModelPrice{mp})
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewBook(nil, &Version{ID: id, Prices: s})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	books := []*Book{mk("a", "0.000001"), mk("b", "0.000002")}
	ref := NewBookRef(books[0])
	rater := NewRater(ref)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var rated atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r Rated
			ev := event("", "m", qty{in: 1, out: 1})
			for !stop.Load() {
				if err := rater.Rate(ev, nil, &r); err != nil {
					t.Error(err)
					return
				}
				l := r.Lines()
				if l[0].UnitPrice != l[1].UnitPrice || (r.PriceVersion == "a") != (l[0].UnitPrice.String() == "0.000001") {
					t.Errorf("mixed books: version %s lines %+v", r.PriceVersion, l)
					return
				}
				rated.Add(1)
			}
		}()
	}
	// Keep swapping until the readers have rated plenty of events across
	// swaps (they may start after a fixed number of stores would be done).
	for i := 0; i < 2000 || rated.Load() < 20_000; i++ {
		ref.Store(books[i%2])
	}
	stop.Store(true)
	wg.Wait()
	if rated.Load() == 0 {
		t.Error("no event rated")
	}
}

func TestMarkupPrecedence(t *testing.T) {
	global := &MarkupRules{Default: MustMarkup("30"), ByProvider: map[string]Markup{"anthropic": MustMarkup("25")}}
	card := &MarkupRules{ByModel: map[string]Markup{"claude-opus-4-6": MustMarkup("40")}}
	customer := &MarkupRules{ByProvider: map[string]Markup{"openai": MustMarkup("12.5")}}
	f := func(l MarkupLayers, provider, model, want string) {
		t.Helper()
		if got := l.Resolve(provider, model).String(); got != want {
			t.Errorf("%s/%s: %s, want %s", provider, model, got, want)
		}
	}
	all := MarkupLayers{Customer: customer, Card: card, Global: global}
	f(all, "openai", "gpt-4o", "12.5%")             // customer provider rule
	f(all, "anthropic", "claude-opus-4-6", "40%")   // card model rule beats global provider rule
	f(all, "anthropic", "claude-sonnet-4-5", "25%") // global provider rule
	f(all, "gemini", "gemini-2.5-pro", "30%")       // global default
	f(MarkupLayers{}, "gemini", "gemini-2.5-pro", "0%")
	// A customer's flat deal beats the card's per-model rule.
	f(MarkupLayers{Customer: &MarkupRules{Default: MustMarkup("5")}, Card: card}, "anthropic", "claude-opus-4-6", "5%")
}

func TestRateCardResolve(t *testing.T) {
	d := func(day int) time.Time { return time.Date(2026, 1, day, 0, 0, 0, 0, time.UTC) }
	card, err := NewRateCard("std",
		CardVersion{Version: 1, Rollout: RolloutAllCustomers, EffectiveFrom: d(1)},
		CardVersion{Version: 2, Rollout: RolloutNewCustomersOnly, EffectiveFrom: d(10), PriceVersion: "pinned-v2"},
		CardVersion{Version: 3, Rollout: RolloutAllCustomers, EffectiveFrom: d(20)},
	)
	if err != nil {
		t.Fatal(err)
	}
	old := []Assignment{{CardID: "std", Version: 1, AssignedAt: d(2)}}
	newer := []Assignment{{CardID: "std", Version: 2, AssignedAt: d(12)}}
	staleNew := []Assignment{{CardID: "std", Version: 1, AssignedAt: d(12)}} // joined after v2, record says v1
	moved := []Assignment{{CardID: "std", Version: 2, AssignedAt: d(15)}, {CardID: "std", Version: 1, AssignedAt: d(2)}}
	cases := []struct {
		name    string
		history []Assignment
		at      time.Time
		want    int
	}{
		{"existing customer before v2", old, d(5), 1},
		{"existing customer not moved by new-customers-only v2", old, d(15), 1},
		{"existing customer moved by all-customers v3", old, d(20), 3},
		{"late event before v3 keeps v1", old, d(19), 1},
		{"new customer on v2", newer, d(12), 2},
		{"new customer moved to v3", newer, d(25), 3},
		{"customer who joined after v2 gets it", staleNew, d(13), 2},
		{"event before the move keeps v1", moved, d(14), 1},
		{"event after the move uses v2", moved, d(16), 2},
		{"event before joining uses first assignment", old, d(1), 1},
	}
	for _, c := range cases {
		v, err := card.Resolve(c.history, c.at)
		if err != nil || v.Version != c.want {
			t.Errorf("%s: %v, %v, want version %d", c.name, v, err, c.want)
		}
	}
	if _, err := card.Resolve(nil, d(5)); !errors.Is(err, ErrNoCardVersion) {
		t.Errorf("no assignment: %v", err)
	}
	if _, err := card.Resolve([]Assignment{{CardID: "std", Version: 9, AssignedAt: d(1)}}, d(5)); !errors.Is(err, ErrNoCardVersion) {
		t.Errorf("unknown version: %v", err)
	}
	v2 := &card.Versions[1]
	terms := card.Terms(v2, nil, &MarkupRules{Default: MustMarkup("30")})
	if terms.CardID != "std" || terms.CardVersion != 2 || terms.PriceVersion != "pinned-v2" || terms.Markups.Resolve("x", "y").String() != "30%" {
		t.Errorf("terms: %+v", terms)
	}
}

// TestBookRatesUnknownModelOnceAPriceExists: a model the version in force
// at the event's time does not list is priced by the first later version
// that lists it (an unpriced event sent again once its price exists); a
// model listed at the event's time keeps that version's price; a model no
// version lists stays unknown; a pinned version does not look ahead.
func TestBookRatesUnknownModelOnceAPriceExists(t *testing.T) {
	jan := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feb := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	mar := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	two := func(a, pa, b, pb string) *Snapshot {
		ma := &ModelPrice{Key: a, Provider: "openai"}
		ma.Base[0].Set(in, MustPrice(pa))
		mb := &ModelPrice{Key: b, Provider: "openai"}
		mb.Base[0].Set(in, MustPrice(pb))
		s, err := NewSnapshot(FormatLiteLLM, []*ModelPrice{ma, mb})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	b, err := NewBook(nil,
		&Version{ID: "jan", EffectiveFrom: jan, Prices: priced(t, "old", "0.000001")},
		&Version{ID: "feb", EffectiveFrom: feb, Prices: two("old", "0.000002", "new", "0.000003")},
		&Version{ID: "mar", EffectiveFrom: mar, Prices: two("old", "0.000004", "new", "0.000005")},
	)
	if err != nil {
		t.Fatal(err)
	}
	rate := func(model string, at time.Time, terms *Terms) (Rated, error) {
		var r Rated
		ev := event("", model, qty{in: 1_000_000})
		ev.Time = at
		return r, b.Rate(ev, terms, &r)
	}
	mid := jan.AddDate(0, 0, 10)
	if r, err := rate("new", mid, nil); err != nil || r.PriceVersion != "feb" || r.Cost.String() != "3" {
		t.Errorf("new model in January: %v %s %s, want feb 3", err, r.PriceVersion, r.Cost)
	}
	if r, err := rate("old", mid, nil); err != nil || r.PriceVersion != "jan" || r.Cost.String() != "1" {
		t.Errorf("listed model in January: %v %s %s, want jan 1", err, r.PriceVersion, r.Cost)
	}
	if _, err := rate("never", mid, nil); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("unknown model: %v, want ErrUnknownModel", err)
	}
	if _, err := rate("new", mar, &Terms{PriceVersion: "jan"}); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("pinned version looked ahead: %v", err)
	}
}
