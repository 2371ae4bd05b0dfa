package prices

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// Catalog is everything besides the event that decides its price: the
// price book and the rate cards. A Catalog is immutable; a change builds a
// new one and State publishes it with one atomic pointer write, so an
// event is rated entirely against one catalog, never half old and half
// new (the book and the cards change together: a new price version and the
// card versions pinned to it appear at once).
type Catalog struct {
	Book  *rating.Book
	Cards map[string]*rating.RateCard
	// DefaultCard is the card a customer seen for the first time joins; ""
	// rates customers without a card with the global markup alone.
	DefaultCard string
}

// State is the live price state of one tariff process: the catalog the
// pipeline rates with, the customers' card assignments, and the global
// markup. It is safe for concurrent use.
type State struct {
	store   *Store
	books   *rating.BookRef
	catalog atomic.Pointer[Catalog]
	global  rating.MarkupRules
	aliases rating.Aliases
	log     zerolog.Logger

	// customers caches assignment histories (customer id →
	// []rating.Assignment, never modified once stored). Rating reads it
	// without locks; assignMu serializes the rare first assignment.
	customers sync.Map
	assignMu  sync.Mutex
	// writeMu serializes the writers of the catalog (Syncer, SetCard):
	// each reads the catalog, records, and publishes a successor.
	writeMu sync.Mutex
}

// Load reads every price version, rate card and assignment from store.
// global is the markup for customers without a card and the layer a card
// falls back to. A store without price versions loads an empty book: seed
// it first (Syncer.Seed) or every event is refused as having no price.
func Load(store *Store, global rating.MarkupRules, aliases rating.Aliases, log zerolog.Logger) (*State, error) {
	book, err := store.Book(aliases)
	if err != nil {
		return nil, err
	}
	s := &State{store: store, books: rating.NewBookRef(book), global: global, aliases: aliases,
		log: log.With().Str("component", "prices").Logger()}
	if err := s.reloadCards(book); err != nil {
		return nil, err
	}
	hist, err := store.Assignments()
	if err != nil {
		return nil, err
	}
	for c, h := range hist {
		s.customers.Store(c, h)
	}
	return s, nil
}

// Store returns the underlying store.
func (s *State) Store() *Store { return s.store }

// Books returns the ref holding the current book, for raters that use the
// book alone (pipeline.PriceRater). It is updated with the catalog.
func (s *State) Books() *rating.BookRef { return s.books }

// Catalog returns the catalog in force.
func (s *State) Catalog() *Catalog { return s.catalog.Load() }

// Global returns the global markup rules.
func (s *State) Global() *rating.MarkupRules { return &s.global }

// publish makes c current. The catalog goes first: the card rater reads
// only the catalog, so it switches in one step; the BookRef follows for
// raters that read the book alone.
func (s *State) publish(c *Catalog) {
	s.catalog.Store(c)
	s.books.Store(c.Book)
}

// reloadCards re-reads the cards and the default card from the store and
// publishes them with book.
func (s *State) reloadCards(book *rating.Book) error {
	cards, err := s.store.Cards()
	if err != nil {
		return err
	}
	def, err := s.store.DefaultCard()
	if err != nil {
		return err
	}
	s.publish(&Catalog{Book: book, Cards: cards, DefaultCard: def})
	return nil
}

// Reload re-reads the price versions and the cards, for a change made to
// the store by something other than this State's Syncer.
func (s *State) Reload() error {
	book, err := s.store.Book(s.aliases)
	if err != nil {
		return err
	}
	return s.reloadCards(book)
}

// history returns the customer's assignments. A customer seen for the
// first time joins the default card at the version in force at the
// event's time, and that assignment is stored (synchronously, before the
// event's batch can commit) so that every later event, redeliveries
// included, sees the same join time. The join time is the event time, not
// the clock, so a redelivered first event assigns exactly the same.
func (s *State) history(customer string, t time.Time, cat *Catalog) ([]rating.Assignment, error) {
	if h, ok := s.customers.Load(customer); ok {
		return h.([]rating.Assignment), nil
	}
	card := cat.Cards[cat.DefaultCard]
	if card == nil {
		return nil, nil
	}
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	if h, ok := s.customers.Load(customer); ok {
		return h.([]rating.Assignment), nil
	}
	a := rating.Assignment{CardID: card.ID, Version: versionAt(card, t), AssignedAt: t.UTC()}
	h, err := s.store.AssignIfNew(customer, a)
	if err != nil {
		return nil, fmt.Errorf("assign customer %q to rate card %s: %w", customer, card.ID, err)
	}
	s.customers.Store(customer, h)
	s.log.Debug().Str("customer", customer).Str("card", card.ID).Int("version", h[0].Version).Msg("customer joined rate card")
	return h, nil
}

// Assign records an assignment (an operator moving a customer to a card)
// and makes it effective for rating at once.
func (s *State) Assign(customer string, a rating.Assignment) error {
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	if err := s.store.Assign(customer, a); err != nil {
		return err
	}
	h, err := s.store.History(customer)
	if err != nil {
		return err
	}
	s.customers.Store(customer, h)
	return nil
}

// versionAt is the card version a customer joining at t is put on: the
// highest whose EffectiveFrom is not after t (the first if t predates
// them all).
func versionAt(c *rating.RateCard, t time.Time) int {
	v := c.Versions[0].Version
	for _, cv := range c.Versions {
		if !cv.EffectiveFrom.After(t) {
			v = cv.Version
		}
	}
	return v
}

// ErrNoCardVersion marks an event whose customer's rate card has no
// version that applies (an assignment to a card that was never created).
// It wraps pipeline.ErrUnpriced: the event is dead-lettered for re-rating.
var ErrNoCardVersion = fmt.Errorf("%w: %w", pipeline.ErrUnpriced, rating.ErrNoCardVersion)

// Rater rates events with each customer's rate card: the card version that
// applies at the event's time (rating.RateCard.Resolve, which implements
// the rollout policies), its markup over the global one, and its pinned
// price version or the version in force at the event's time. It implements
// pipeline.Rater and is safe for concurrent use.
type Rater struct {
	state *State
}

// NewRater returns a rater over the state's live catalog.
func (s *State) NewRater() *Rater { return &Rater{state: s} }

// Rate implements pipeline.Rater. A missing price or card version wraps
// pipeline.ErrUnpriced, so the event is dead-lettered for re-rating and
// never billed as zero.
func (r *Rater) Rate(ev *schemas.UsageEvent, out *sinks.RatedEvent) error {
	var rated rating.Rated
	return pipeline.Finish(out, ev, &rated, r.RateEvent(ev, &rated))
}

// RateEvent rates ev into out against the catalog in force, which it loads
// exactly once.
//
// A customer on a card version pinned to an old price version (new
// customers only: they keep the prices they signed up with) who uses a
// model that version does not list is rated with the version in force at
// the event's time: the model has no grandfathered price, and refusing
// every new model to every existing customer would be worse. out records
// which price version was used.
func (r *Rater) RateEvent(ev *schemas.UsageEvent, out *rating.Rated) error {
	cat := r.state.catalog.Load()
	terms := rating.Terms{Markups: rating.MarkupLayers{Global: &r.state.global}}
	if len(cat.Cards) > 0 {
		hist, err := r.state.history(ev.CustomerID, ev.Time, cat)
		if err != nil {
			return err
		}
		if len(hist) > 0 {
			card := cardFor(cat, hist, ev.Time)
			if card == nil {
				return fmt.Errorf("customer %q: assigned to rate card %q, which does not exist: %w", ev.CustomerID, baseAssignment(hist, ev.Time).CardID, ErrNoCardVersion)
			}
			v, err := card.Resolve(hist, ev.Time)
			if err != nil {
				return fmt.Errorf("customer %q: %w: %w", ev.CustomerID, pipeline.ErrUnpriced, err)
			}
			terms = card.Terms(v, nil, &r.state.global)
		}
	}
	err := cat.Book.Rate(ev, &terms, out)
	if err != nil && terms.PriceVersion != "" && errors.Is(err, rating.ErrUnknownModel) {
		terms.PriceVersion = ""
		err = cat.Book.Rate(ev, &terms, out)
	}
	return err
}

// baseAssignment is the customer's latest assignment at or before t, or
// the first one when t predates them all (as in rating.RateCard.Resolve).
func baseAssignment(hist []rating.Assignment, t time.Time) *rating.Assignment {
	var base, first *rating.Assignment
	for i := range hist {
		a := &hist[i]
		if first == nil || a.AssignedAt.Before(first.AssignedAt) {
			first = a
		}
		if !a.AssignedAt.After(t) && (base == nil || a.AssignedAt.After(base.AssignedAt)) {
			base = a
		}
	}
	if base == nil {
		return first
	}
	return base
}

// cardFor returns the card of the customer's base assignment at t.
func cardFor(cat *Catalog, hist []rating.Assignment, t time.Time) *rating.RateCard {
	return cat.Cards[baseAssignment(hist, t).CardID]
}

// CardChange says what SetCard did.
type CardChange struct {
	CardID  string
	Version int
	// Created: the card is new. Added: a new version was recorded. Neither:
	// the card already had these terms (kept).
	Created, Added bool
	// PriceVersion is the price version the new card version pins ("":
	// it follows the price book).
	PriceVersion string
}

// SetCard makes card id carry markups and rollout from eff on:
//
//   - a card that does not exist is created, version 1, in force for all
//     history (zero effective time, like the first price version);
//   - a card whose latest version has the same markups and rollout is kept
//     as it is (so setup can run any number of times);
//   - otherwise a new version is added from eff, and the rollout policy
//     decides who gets it (rating.RateCard.Resolve).
//
// A new-customers-only version pins the price version in force at eff, so
// its customers keep those prices until they are moved; an all-customers
// version follows the price book. The first card created becomes the
// default card new customers join.
func (s *State) SetCard(id string, markups rating.MarkupRules, rollout rating.Rollout, eff time.Time) (CardChange, error) {
	if err := checkID("rate card id", id); err != nil {
		return CardChange{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cat := s.catalog.Load()
	ch := CardChange{CardID: id, Version: 1, Created: true}
	cv := rating.CardVersion{Version: 1, Rollout: rollout, Markups: markups}
	if c := cat.Cards[id]; c != nil {
		last := c.Versions[len(c.Versions)-1]
		if last.Rollout == rollout && sameMarkups(&last.Markups, &markups) {
			return CardChange{CardID: id, Version: last.Version, PriceVersion: last.PriceVersion}, nil
		}
		if eff.Before(last.EffectiveFrom) {
			return CardChange{}, fmt.Errorf("rate card %s: version %d takes effect at %s; a new version cannot take effect before it (%s)",
				id, last.Version, last.EffectiveFrom.Format(time.RFC3339), eff.Format(time.RFC3339))
		}
		cv.Version, cv.EffectiveFrom = last.Version+1, eff.UTC()
		ch = CardChange{CardID: id, Version: cv.Version, Added: true}
	}
	if rollout == rating.RolloutNewCustomersOnly {
		// The prices in force at eff (not at the version's effective time:
		// a new card's version 1 covers all history, and must not pin the
		// oldest prices).
		v := cat.Book.VersionAt(eff)
		if v == nil {
			v = cat.Book.Latest()
		}
		if v == nil {
			return CardChange{}, fmt.Errorf("rate card %s: new-customers-only pins a price version, and none is recorded yet: record prices first", id)
		}
		cv.PriceVersion, ch.PriceVersion = v.ID, v.ID
	}
	if err := s.store.AddCardVersion(CardVersion{CardID: id, CardVersion: cv}); err != nil {
		return CardChange{}, err
	}
	if cat.DefaultCard == "" {
		if err := s.store.SetDefaultCard(id); err != nil {
			return CardChange{}, err
		}
	}
	return ch, s.reloadCards(cat.Book)
}

func sameMarkups(a, b *rating.MarkupRules) bool {
	eq := func(x, y map[string]rating.Markup) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || w != v {
				return false
			}
		}
		return true
	}
	return a.Default == b.Default && eq(a.ByProvider, b.ByProvider) && eq(a.ByModel, b.ByModel)
}
