package prices

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/sinks"
)

var (
	tJoinOld = mustTime("2026-01-10T00:00:00Z") // the existing customer's first usage
	tPrice2  = mustTime("2026-02-01T00:00:00Z") // input price 1e-6 → 2e-6
	tMarkup  = mustTime("2026-03-01T00:00:00Z") // card edited: markup 30% → 50%
)

// rolloutWorld builds a store with the first prices, a default card at
// 30% with the given policy, and an existing customer who joined at
// tJoinOld; then a price change at tPrice2 that also lists a new model.
func rolloutWorld(t *testing.T, rollout rating.Rollout) (*State, *Syncer) {
	t.Helper()
	st := newState(t, openDB(t, ""))
	s := newSyncer(t, st)
	syncAt(t, s, time.Time{}, litellm(map[string]string{"m": "0.000001 0.000002"}))
	ch, err := st.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("30")}, rollout, tJoinOld)
	if err != nil || !ch.Created || ch.Version != 1 {
		t.Fatalf("create card: %+v %v", ch, err)
	}
	if st.Catalog().DefaultCard != "default" {
		t.Fatal("first card is not the default")
	}
	// The existing customer's first event assigns them.
	rate(t, st, "old", "m", tJoinOld, "0.0013", 1)
	res := syncAt(t, s, tPrice2, litellm(map[string]string{"m": "0.000002 0.000002", "n": "0.000004 0"}))
	wantCards := 0
	if rollout == rating.RolloutNewCustomersOnly {
		wantCards = 1 // a pinned card gets a version pinned to the new prices
	}
	if len(res.Cards) != wantCards {
		t.Fatalf("card versions recorded with the price change: %+v, want %d", res.Cards, wantCards)
	}
	return st, s
}

// rate rates 1000 input tokens of model for customer at `at` and checks
// the exact charge and the card version used.
func rate(t *testing.T, st *State, customer, model string, at time.Time, charge string, cardVersion int) *rating.Rated {
	t.Helper()
	var out rating.Rated
	if err := st.NewRater().RateEvent(ev("e", customer, model, at, 1000, 0), &out); err != nil {
		t.Fatalf("%s at %s: %v", customer, at, err)
	}
	if out.Charge.String() != charge || out.CardVersion != cardVersion || out.CardID != "default" {
		t.Errorf("%s %s at %s: charge %s with card version %d (price %s), want %s with card version %d",
			customer, model, at.Format(time.RFC3339), out.Charge, out.CardVersion, out.PriceVersion, charge, cardVersion)
	}
	return &out
}

func TestRolloutNewCustomersOnly(t *testing.T) {
	st, _ := rolloutWorld(t, rating.RolloutNewCustomersOnly)
	after := tPrice2.Add(48 * time.Hour)
	// Before the change everyone pays the old price: 1000 × 1e-6 × 1.3.
	rate(t, st, "old", "m", tPrice2.Add(-time.Second), "0.0013", 1)
	// The existing customer keeps the old prices after it.
	old := rate(t, st, "old", "m", after, "0.0013", 1)
	// A customer who joins after it gets the new ones: 1000 × 2e-6 × 1.3.
	nw := rate(t, st, "new", "m", tPrice2.Add(24*time.Hour), "0.0026", 2)
	rate(t, st, "new", "m", after, "0.0026", 2)
	if old.PriceVersion == nw.PriceVersion {
		t.Errorf("both customers rated with price version %s", old.PriceVersion)
	}
	// A model the existing customer's prices do not list is rated with
	// the prices in force (1000 × 4e-6 × 1.3), not refused.
	if r := rate(t, st, "old", "n", after, "0.0052", 1); r.PriceVersion != nw.PriceVersion {
		t.Errorf("new model for a grandfathered customer rated with %s", r.PriceVersion)
	}

	// A markup edit under the same policy: only customers joining from
	// tMarkup on get 50%.
	ch, err := st.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("50")}, rating.RolloutNewCustomersOnly, tMarkup)
	if err != nil || !ch.Added || ch.Version != 3 || ch.PriceVersion != nw.PriceVersion {
		t.Fatalf("edit card: %+v %v", ch, err)
	}
	late := tMarkup.Add(time.Hour)
	rate(t, st, "old", "m", late, "0.0013", 1)
	rate(t, st, "new", "m", late, "0.0026", 2)
	rate(t, st, "newest", "m", late, "0.003", 3) // 1000 × 2e-6 × 1.5

	// Setting the same terms again is a no-op.
	if ch, err := st.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("50")}, rating.RolloutNewCustomersOnly, late); err != nil || ch.Added || ch.Created {
		t.Errorf("same terms again: %+v %v", ch, err)
	}

	// The catalog survives a restart: a fresh State, given each customer's
	// assignments (the pipeline keeps them in partition state), rates the
	// same.
	st2 := newState(t, st.Store().db)
	joined := func(at time.Time, v int) []rating.Assignment {
		return []rating.Assignment{{CardID: "default", Version: v, AssignedAt: at}}
	}
	rateWith(t, st2, joined(tJoinOld, 1), "old", late, "0.0013", 1)
	rateWith(t, st2, joined(tPrice2.Add(24*time.Hour), 2), "new", late, "0.0026", 2)
	rateWith(t, st2, joined(late, 3), "newest", late, "0.003", 3)
	// Rate keeps its assignments in memory only: nothing is stored.
	if h, err := st.Store().History("old"); err != nil || len(h) != 0 {
		t.Errorf("assignments stored by Rate: %+v %v", h, err)
	}
}

// rateWith rates 1000 input tokens of model m with the given assignments
// and checks the exact charge and the card version used.
func rateWith(t *testing.T, st *State, hist []rating.Assignment, customer string, at time.Time, charge string, cardVersion int) {
	t.Helper()
	var out rating.Rated
	if err := st.NewRater().RateEventWith(ev("e", customer, "m", at, 1000, 0), hist, &out); err != nil {
		t.Fatalf("%s at %s: %v", customer, at, err)
	}
	if out.Charge.String() != charge || out.CardVersion != cardVersion || out.CardID != "default" {
		t.Errorf("%s at %s: charge %s with card version %d, want %s with card version %d",
			customer, at.Format(time.RFC3339), out.Charge, out.CardVersion, charge, cardVersion)
	}
}

func TestRolloutAllCustomers(t *testing.T) {
	st, _ := rolloutWorld(t, rating.RolloutAllCustomers)
	after := tPrice2.Add(48 * time.Hour)
	rate(t, st, "old", "m", tPrice2.Add(-time.Second), "0.0013", 1)
	// Everyone switches at the effective time.
	rate(t, st, "old", "m", tPrice2, "0.0026", 1)
	rate(t, st, "old", "m", after, "0.0026", 1)
	rate(t, st, "new", "m", after, "0.0026", 1)
	// A late event from before the change keeps the old price.
	rate(t, st, "new", "m", tPrice2.Add(-time.Hour), "0.0013", 1)

	ch, err := st.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("50")}, rating.RolloutAllCustomers, tMarkup)
	if err != nil || !ch.Added || ch.Version != 2 || ch.PriceVersion != "" {
		t.Fatalf("edit card: %+v %v", ch, err)
	}
	rate(t, st, "old", "m", tMarkup.Add(-time.Second), "0.0026", 1)
	rate(t, st, "old", "m", tMarkup, "0.003", 2)
	rate(t, st, "new", "m", tMarkup.Add(time.Hour), "0.003", 2)
}

// TestRaterPipelineShape: Rate fills the sink row and routes a missing
// price to pipeline.ErrUnpriced (dead letter, never billed as zero).
func TestRaterPipelineShape(t *testing.T) {
	st, _ := rolloutWorld(t, rating.RolloutAllCustomers)
	var out sinks.RatedEvent
	r := st.NewRater()
	if err := r.Rate(ev("e1", "old", "m", tPrice2, 1000, 10), &out); err != nil {
		t.Fatal(err)
	}
	if out.Charge.String() != "0.002626" || out.RateCardID != "default" || out.RateCardVersion != 1 || len(out.Lines) != 2 || out.PriceKey != "m" {
		t.Errorf("rated row: %+v", out)
	}
	err := r.Rate(ev("e2", "old", "no-such-model", tPrice2, 1000, 0), &out)
	if !errors.Is(err, pipeline.ErrUnpriced) || !errors.Is(err, rating.ErrUnknownModel) {
		t.Errorf("unknown model: %v", err)
	}
	// A customer assigned to a card that does not exist.
	lost := []rating.Assignment{{CardID: "gone", Version: 1, AssignedAt: tJoinOld}}
	if err := r.RateWith(ev("e3", "lost", "m", tPrice2, 1000, 0), lost, &out); !errors.Is(err, pipeline.ErrUnpriced) || !errors.Is(err, rating.ErrNoCardVersion) {
		t.Errorf("missing card: %v", err)
	}
	// The pipeline's side of assignments: a customer joins the default card
	// at the version in force at the event's time, and an assignment must
	// name a card version of the catalog.
	if a, ok := r.Join(tPrice2); !ok || a != (rating.Assignment{CardID: "default", Version: 1, AssignedAt: tPrice2}) {
		t.Errorf("join: %+v %v", a, ok)
	}
	if err := r.CheckAssignment(rating.Assignment{CardID: "default", Version: 1, AssignedAt: tPrice2}); err != nil {
		t.Errorf("check an existing card version: %v", err)
	}
	if err := r.CheckAssignment(rating.Assignment{CardID: "gone", Version: 1}); err == nil || !strings.Contains(err.Error(), `rate_card_id: "gone": no such rate card`) {
		t.Errorf("check a missing card: %v", err)
	}
	if err := r.CheckAssignment(rating.Assignment{CardID: "default", Version: 2}); err == nil || !strings.Contains(err.Error(), "version: 2: rate card default has versions 1 to 1") {
		t.Errorf("check a missing version: %v", err)
	}
}

// TestNoDefaultCardJoinsNothing: without a default card a customer joins
// nothing and is rated with the global markup.
func TestNoDefaultCardJoinsNothing(t *testing.T) {
	st := newState(t, openDB(t, ""))
	syncAt(t, newSyncer(t, st), time.Time{}, litellm(map[string]string{"m": "0.000001 0.000002"}))
	r := st.NewRater()
	if a, ok := r.Join(tPrice2); ok {
		t.Errorf("joined %+v without a default card", a)
	}
	var out rating.Rated
	if err := r.RateEventWith(ev("e", "c", "m", tPrice2, 1000, 0), nil, &out); err != nil || out.CardID != "" || out.Charge.String() != "0.001" {
		t.Errorf("rated with card %q, charge %s (%v); want no card, 0.001", out.CardID, out.Charge, err)
	}
}

// A new-customers-only card created after prices changed pins the prices
// in force when it is created, not the oldest ones.
func TestNewCardPinsPricesInForce(t *testing.T) {
	st := newState(t, openDB(t, ""))
	s := newSyncer(t, st)
	syncAt(t, s, time.Time{}, litellm(map[string]string{"m": "0.000001 0.000002"}))
	p2 := syncAt(t, s, tPrice2, litellm(map[string]string{"m": "0.000002 0.000002"})).Version
	ch, err := st.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("20")}, rating.RolloutNewCustomersOnly, tMarkup)
	if err != nil || ch.PriceVersion != p2.ID {
		t.Fatalf("card pins %q, want %s (%v)", ch.PriceVersion, p2.ID, err)
	}
	rate(t, st, "c", "m", tMarkup.Add(time.Hour), "0.0024", 1) // 1000 × 2e-6 × 1.2
}
