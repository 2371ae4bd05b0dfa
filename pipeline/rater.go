package pipeline

import (
	"errors"
	"fmt"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// PriceRater rates events with the rating engine against the book held by
// a BookRef (so a price sync can swap books while the pipeline runs) and
// fills the sink's row shape. It is safe for concurrent use.
type PriceRater struct {
	rater *rating.Rater
	terms rating.Terms
}

// NewPriceRater rates against ref with terms (the markup layers; per
// customer rate cards come with the balance stage).
func NewPriceRater(ref *rating.BookRef, terms rating.Terms) *PriceRater {
	return &PriceRater{rater: rating.NewRater(ref), terms: terms}
}

// Rate implements Rater.
func (r *PriceRater) Rate(ev *schemas.UsageEvent, out *sinks.RatedEvent) error {
	var rated rating.Rated
	return Finish(out, ev, &rated, r.rater.Rate(ev, &r.terms, &rated))
}

// Finish turns the rating engine's result for ev into the sink's row shape
// in out, or into the pipeline's error. Every Rater ends with it, so that
// they all refuse alike: a missing price (unknown model, a unit the model
// has no price for, no price version at the event time) is wrapped in
// ErrUnpriced, so the event is dead-lettered for re-rating and never billed
// as zero; an amount too large to store is refused with its reason.
func Finish(out *sinks.RatedEvent, ev *schemas.UsageEvent, rated *rating.Rated, err error) error {
	if err != nil {
		if errors.Is(err, rating.ErrUnknownModel) || errors.Is(err, rating.ErrUnpriced) || errors.Is(err, rating.ErrNoPriceVersion) {
			return fmt.Errorf("%w: %w", ErrUnpriced, err)
		}
		return err
	}
	if rated.Charge.Cmp(maxStoredCharge) >= 0 || rated.Cost.Cmp(maxStoredCharge) >= 0 {
		return fmt.Errorf("event %q: cost %s or charge %s is not below %s USD, the largest amount stored per event", ev.ID, rated.Cost, rated.Charge, maxStoredCharge)
	}
	FillRated(out, ev, rated)
	return nil
}

// maxStoredCharge bounds one event's cost and charge: ClickHouse keeps
// charges as Decimal(38, 28), which holds less than 10^10. No real request
// comes near it; an event that does is refused with its reason rather than
// stored wrong.
var maxStoredCharge = rating.MustAmount("10000000000")

// FillRated copies a rating result into the sink's row shape, reusing
// out.Lines.
func FillRated(out *sinks.RatedEvent, ev *schemas.UsageEvent, r *rating.Rated) {
	out.Event = *ev
	out.PriceKey = r.PriceKey
	out.Provider = r.Provider
	out.PriceVersion = r.PriceVersion
	out.RateCardID = r.CardID
	out.RateCardVersion = uint32(r.CardVersion)
	out.Cost = r.Cost
	out.Charge = r.Charge
	out.Lines = out.Lines[:0]
	for _, l := range r.Lines() {
		out.Lines = append(out.Lines, sinks.Line{
			Unit: l.Unit, Quantity: l.Quantity,
			UnitPrice: l.UnitPrice, Cost: l.Cost, Charge: l.Charge,
		})
	}
}
