package rating

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// MarkupRules is one layer of markups: a default and optional overrides per
// provider and per model (price-list entry key). Within a layer the model
// rule beats the provider rule, which beats the default.
type MarkupRules struct {
	Default    Markup
	ByProvider map[string]Markup
	ByModel    map[string]Markup
}

func (r *MarkupRules) lookup(provider, model string) (Markup, bool) {
	if r == nil {
		return Markup{}, false
	}
	if m, ok := r.ByModel[model]; ok && m.IsSet() {
		return m, true
	}
	if m, ok := r.ByProvider[provider]; ok && m.IsSet() {
		return m, true
	}
	return r.Default, r.Default.IsSet()
}

// MarkupLayers are the markups that can apply to one customer's event.
//
// Precedence, most specific first: the customer layer, then the rate-card
// layer, then the global layer; within a layer, model, then provider, then
// the layer default. So a customer's negotiated flat rate beats a card's
// per-model rule: a deal made with one customer is more specific than a
// rule written for everyone on a card. With nothing set the charge equals
// the cost (NoMarkup).
type MarkupLayers struct {
	Customer *MarkupRules
	Card     *MarkupRules
	Global   *MarkupRules
}

// Resolve returns the markup for an entry; provider and model are the
// price entry's (ModelPrice.Provider and Key), so a rule names exactly one
// entry whatever spelling events use.
func (l *MarkupLayers) Resolve(provider, model string) Markup {
	if m, ok := l.Customer.lookup(provider, model); ok {
		return m
	}
	if m, ok := l.Card.lookup(provider, model); ok {
		return m
	}
	if m, ok := l.Global.lookup(provider, model); ok {
		return m
	}
	return NoMarkup
}

// Rollout says who moves to a new rate-card version.
type Rollout uint8

const (
	// RolloutNewCustomersOnly: customers who join on or after EffectiveFrom
	// get the version; everyone else stays on the version they had.
	RolloutNewCustomersOnly Rollout = iota
	// RolloutAllCustomers: every customer on the card moves to the version
	// for usage at or after EffectiveFrom.
	RolloutAllCustomers
)

func (r Rollout) String() string {
	switch r {
	case RolloutNewCustomersOnly:
		return "new_customers_only"
	case RolloutAllCustomers:
		return "all_customers"
	}
	return fmt.Sprintf("rollout(%d)", r)
}

// CardVersion is one immutable version of a rate card.
type CardVersion struct {
	Version       int
	Rollout       Rollout
	EffectiveFrom time.Time
	// Markups is the card layer of MarkupLayers.
	Markups MarkupRules
	// PriceVersion pins a price version id; "" follows the price book (the
	// version in force at each event's time).
	PriceVersion string
}

// RateCard is a named, versioned set of markup and price rules.
type RateCard struct {
	ID       string
	Versions []CardVersion // ascending Version
}

// NewRateCard checks and orders the versions.
func NewRateCard(id string, versions ...CardVersion) (*RateCard, error) {
	c := &RateCard{ID: id, Versions: append([]CardVersion(nil), versions...)}
	sort.Slice(c.Versions, func(i, j int) bool { return c.Versions[i].Version < c.Versions[j].Version })
	for i := range c.Versions {
		if i > 0 && c.Versions[i].Version == c.Versions[i-1].Version {
			return nil, fmt.Errorf("rate card %s: version %d listed twice", id, c.Versions[i].Version)
		}
		if i > 0 && c.Versions[i].EffectiveFrom.Before(c.Versions[i-1].EffectiveFrom) {
			return nil, fmt.Errorf("rate card %s: version %d takes effect before version %d", id, c.Versions[i].Version, c.Versions[i-1].Version)
		}
	}
	return c, nil
}

// Assignment records that a customer was put on a card version at a time.
// A customer's assignments form a history; the first one is when they
// joined.
type Assignment struct {
	CardID     string
	Version    int
	AssignedAt time.Time
}

// ErrNoCardVersion: no card version applies (no assignment, or an
// assignment to a version the card does not have).
var ErrNoCardVersion = errors.New("no rate-card version applies")

// Resolve decides which version of the card rates an event at time t for
// a customer with the given assignment history (any order):
//
//  1. The base is the latest assignment made at or before t (the first
//     one if t predates them all: a late event from before the customer
//     was moved keeps the version they had then).
//  2. A later version than the base applies if t is at or after its
//     EffectiveFrom and either its rollout is AllCustomers, or it is
//     NewCustomersOnly and the customer joined (first assignment) at or
//     after its EffectiveFrom: such a customer is new to it.
//  3. The highest version satisfying 1–2 wins.
//
// Pure: the result depends only on the arguments, so re-rating an event
// gives the same version.
func (c *RateCard) Resolve(history []Assignment, t time.Time) (*CardVersion, error) {
	var base, first *Assignment
	for i := range history {
		a := &history[i]
		if a.CardID != c.ID {
			continue
		}
		if first == nil || a.AssignedAt.Before(first.AssignedAt) {
			first = a
		}
		if !a.AssignedAt.After(t) && (base == nil || a.AssignedAt.After(base.AssignedAt)) {
			base = a
		}
	}
	if first == nil {
		return nil, fmt.Errorf("rate card %s: customer has no assignment: %w", c.ID, ErrNoCardVersion)
	}
	if base == nil {
		base = first
	}
	var chosen *CardVersion
	for i := range c.Versions {
		v := &c.Versions[i]
		switch {
		case v.Version == base.Version:
			chosen = v
		case v.Version > base.Version && !t.Before(v.EffectiveFrom):
			if v.Rollout == RolloutAllCustomers || !first.AssignedAt.Before(v.EffectiveFrom) {
				chosen = v
			}
		}
	}
	if chosen == nil || chosen.Version < base.Version {
		return nil, fmt.Errorf("rate card %s: assigned version %d not found: %w", c.ID, base.Version, ErrNoCardVersion)
	}
	return chosen, nil
}

// Terms builds the rating terms for a customer from the resolved card
// version, the customer's own markups and the global ones.
func (c *RateCard) Terms(v *CardVersion, customer, global *MarkupRules) Terms {
	return Terms{
		CardID:       c.ID,
		CardVersion:  v.Version,
		PriceVersion: v.PriceVersion,
		Markups:      MarkupLayers{Customer: customer, Card: &v.Markups, Global: global},
	}
}
