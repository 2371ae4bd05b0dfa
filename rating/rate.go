package rating

import (
	"errors"
	"fmt"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

// Sentinel errors for errors.Is. Every rating failure is a *RateError
// wrapping one of them, so the pipeline can route by kind (dead-letter
// unpriced events for re-rating, alert on overflow) and report the detail.
var (
	// ErrUnknownModel: no price entry matches the event's model.
	ErrUnknownModel = errors.New("unknown model")
	// ErrUnpriced: the entry exists but has no price for a unit the event
	// uses. Such an event is never rated as zero.
	ErrUnpriced = errors.New("unpriced unit")
	// ErrNoPriceVersion: no price version is in force at the event time
	// (or a pinned version id is not in the book).
	ErrNoPriceVersion = errors.New("no price version")
	// ErrInvalidQuantity: a negative quantity (Validate should have caught it).
	ErrInvalidQuantity = errors.New("invalid quantity")
)

// RateError says why one event could not be rated.
type RateError struct {
	Kind         error
	Provider     string
	Model        string
	PriceKey     string
	PriceVersion string
	Unit         schemas.Unit
	HasUnit      bool
	Reason       string
}

func (e *RateError) Error() string {
	s := fmt.Sprintf("rate model %q", e.Model)
	if e.Provider != "" {
		s += fmt.Sprintf(" (provider %q)", e.Provider)
	}
	if e.PriceKey != "" {
		s += fmt.Sprintf(" as %q", e.PriceKey)
	}
	if e.PriceVersion != "" {
		s += fmt.Sprintf(" in price version %q", e.PriceVersion)
	}
	if e.HasUnit {
		s += fmt.Sprintf(", unit %s", e.Unit)
	}
	s += ": " + e.Kind.Error()
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func (e *RateError) Unwrap() error { return e.Kind }

// Line is one charged unit of a rated event.
type Line struct {
	Unit      schemas.Unit
	Quantity  int64
	UnitPrice Price
	// Cost is what the provider charges: Quantity × UnitPrice, exact.
	Cost Amount
	// Charge is what the customer pays: Cost × the markup multiplier, exact.
	Charge Amount
}

// Rated is the result of rating one event. The caller owns it and reuses
// it across events (Rate overwrites every field), which is what keeps
// rating allocation-free: lines live in a fixed array, not a slice.
type Rated struct {
	EventID    string
	CustomerID string
	// PriceKey is the price-list entry used; Provider is that entry's.
	PriceKey string
	Provider string
	// PriceVersion is the id of the price version used.
	PriceVersion string
	// CardID and CardVersion identify the rate-card version that set the
	// markup (empty / 0 without a card).
	CardID      string
	CardVersion int
	Tier        schemas.Tier
	Markup      Markup
	// Cost and Charge are the sums of the lines.
	Cost   Amount
	Charge Amount

	lines [schemas.NumUnits]Line
	n     int
}

// Lines returns the charged lines in unit order. The slice aliases r and is
// valid until r is reused.
func (r *Rated) Lines() []Line { return r.lines[:r.n] }

// Terms are a customer's commercial terms for one event: the rate-card
// version that applies (see RateCard.Resolve) and the markup layers.
type Terms struct {
	CardID      string
	CardVersion int
	// PriceVersion pins a price version id; "" uses the version in force
	// at the event's time.
	PriceVersion string
	Markups      MarkupLayers
}

// Rater rates events against the book currently held by a BookRef.
type Rater struct {
	books *BookRef
}

// NewRater returns a Rater reading books from ref.
func NewRater(ref *BookRef) *Rater { return &Rater{books: ref} }

// Rate rates ev into out. It loads the current book exactly once, so a book
// swapped in concurrently applies to the next event, never to half of
// this one. terms may be nil (no card, no markup). Rate does not allocate
// unless it returns an error.
func (r *Rater) Rate(ev *schemas.UsageEvent, terms *Terms, out *Rated) error {
	return r.books.Load().Rate(ev, terms, out)
}

// Rate rates ev against this book; see Rater.Rate.
func (b *Book) Rate(ev *schemas.UsageEvent, terms *Terms, out *Rated) error {
	*out = Rated{EventID: ev.ID, CustomerID: ev.CustomerID, Tier: ev.Tier, Markup: NoMarkup}
	var v *Version
	if terms != nil {
		out.CardID, out.CardVersion = terms.CardID, terms.CardVersion
		if terms.PriceVersion != "" {
			v = b.byID[terms.PriceVersion]
		} else {
			v = b.VersionAt(ev.Time)
		}
	} else {
		v = b.VersionAt(ev.Time)
	}
	if v == nil {
		reason := "the event predates the first price version"
		if terms != nil && terms.PriceVersion != "" {
			reason = "pinned version " + terms.PriceVersion + " is not in the book"
		}
		return &RateError{Kind: ErrNoPriceVersion, Provider: ev.Provider, Model: ev.Model, Reason: reason}
	}
	out.PriceVersion = v.ID
	mp := v.Prices.Lookup(ev.Provider, ev.Model, b.aliases)
	if mp == nil && (terms == nil || terms.PriceVersion == "") {
		// No price in force at the event's time: the first later version
		// that lists the model prices it (see laterPrice).
		if lv, lmp := b.laterPrice(v, ev.Provider, ev.Model); lmp != nil {
			v, mp = lv, lmp
			out.PriceVersion = v.ID
		}
	}
	if mp == nil {
		return &RateError{Kind: ErrUnknownModel, Provider: ev.Provider, Model: ev.Model, PriceVersion: v.ID}
	}
	out.PriceKey, out.Provider = mp.Key, mp.Provider
	if terms != nil {
		out.Markup = terms.Markups.Resolve(mp.Provider, mp.Key)
	}
	return rateWith(mp, ev, out)
}

// rateWith is the hot path: choose the rule combination and tier table,
// then one exact multiply-and-add per unit.
func rateWith(mp *ModelPrice, ev *schemas.UsageEvent, out *Rated) error {
	q := &ev.Quantities
	var any bool
	for u := range q {
		if q[u] < 0 {
			return &RateError{Kind: ErrInvalidQuantity, Provider: ev.Provider, Model: ev.Model, PriceKey: mp.Key,
				PriceVersion: out.PriceVersion, Unit: schemas.Unit(u), HasUnit: true, Reason: fmt.Sprintf("quantity %d", q[u])}
		}
		any = any || q[u] != 0
	}
	if !any {
		return nil // an empty event (failed request) costs nothing
	}
	if mp.Unpriced != "" {
		return &RateError{Kind: ErrUnpriced, Provider: ev.Provider, Model: ev.Model, PriceKey: mp.Key,
			PriceVersion: out.PriceVersion, Reason: mp.Unpriced}
	}
	t := ev.Time.UTC()
	minute := int16(t.Hour()*60 + t.Minute())
	vr := mp.variantFor(promptTokens(q), minute)
	if vr == nil || ev.Tier >= schemas.NumTiers {
		panic("BUG: no compiled price table for " + mp.Key)
	}
	tb := vr.tables[ev.Tier]
	for u := schemas.Unit(0); u < schemas.NumUnits; u++ {
		qty := q[u]
		if qty == 0 {
			continue
		}
		bit := uint16(1) << u
		if tb.priced&bit == 0 {
			if tb.free&bit != 0 {
				continue
			}
			return &RateError{Kind: ErrUnpriced, Provider: ev.Provider, Model: ev.Model, PriceKey: mp.Key,
				PriceVersion: out.PriceVersion, Unit: u, HasUnit: true, Reason: "the price list states no price for it and no fallback applies"}
		}
		cost, charge, ok := lineAmounts(tb.price[u], qty, out.Markup)
		var ok1, ok2 bool
		out.Cost, ok1 = out.Cost.Add(cost)
		out.Charge, ok2 = out.Charge.Add(charge)
		if !ok || !ok1 || !ok2 {
			return &RateError{Kind: ErrOverflow, Provider: ev.Provider, Model: ev.Model, PriceKey: mp.Key,
				PriceVersion: out.PriceVersion, Unit: u, HasUnit: true}
		}
		out.lines[out.n] = Line{Unit: u, Quantity: qty, UnitPrice: tb.price[u], Cost: cost, Charge: charge}
		out.n++
	}
	return nil
}

// Reconciliation compares a partner's reported cost with ours.
type Reconciliation struct {
	// Reported is false when the event carried no partner cost.
	Reported bool
	// Diff is reported − ours (positive: the partner says it cost more).
	Diff decimal.Decimal
	// Within reports |Diff| <= tolerance.
	Within bool
}

// Reconcile compares ev.ReportedCost with our cost. The partner's figure
// is only ever compared, never billed: a difference beyond tolerance is a
// metric and a log line for a person to look at (a stale price, a model
// resolved to the wrong entry, a partner's rounding), not a correction.
func Reconcile(reported decimal.NullDecimal, ours Amount, tolerance decimal.Decimal) Reconciliation {
	if !reported.Valid {
		return Reconciliation{}
	}
	d := reported.Decimal.Sub(ours.Decimal())
	return Reconciliation{Reported: true, Diff: d, Within: d.Abs().LessThanOrEqual(tolerance.Abs())}
}

// laterPrice finds a model that the version v in force at an event's time
// does not list in the versions after v, and returns the first that lists
// it. This is how an event held as unpriced (dead-lettered: its model had
// no price) is re-rated once a price exists: the sync that adds the model
// records it from its own time, after the event, and the event, sent
// again, is rated with that first price rather than refused again. A model
// that is listed at the event's time is never priced from a later version,
// and a model removed from the list stays unpriced after its removal. Not
// on the hot path: only events whose model is unknown at their time.
func (b *Book) laterPrice(v *Version, provider, model string) (*Version, *ModelPrice) {
	later := false
	for _, w := range b.versions {
		if w == v {
			later = true
			continue
		}
		if !later {
			continue
		}
		if mp := w.Prices.Lookup(provider, model, b.aliases); mp != nil {
			return w, mp
		}
	}
	return nil, nil
}
