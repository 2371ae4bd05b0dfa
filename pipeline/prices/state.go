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
// pipeline rates with and the global markup. It is safe for concurrent
// use.
//
// Customers' card assignments are not kept here: the pipeline keeps them
// in the state of the partition that owns the customer (pipeline/assign.go)
// and passes them to Rater.RateWith. The store's assignments are those
// older versions of tariff wrote; they are only read, so the pipeline can
// move them into partition state (Rater.StoredHistory).
type State struct {
	store   *Store
	books   *rating.BookRef
	catalog atomic.Pointer[Catalog]
	global  rating.MarkupRules
	aliases rating.Aliases
	log     zerolog.Logger

	// customers holds the assignment histories of Rater.Rate, which has
	// no partition state (customer id → []rating.Assignment, never
	// modified once stored): in memory only, never written to the store.
	// assignMu serializes the rare first assignment.
	customers sync.Map
	assignMu  sync.Mutex
	// stored is whether the store holds assignments of an older version
	// (read at Load; nothing writes them since), so customers of a new
	// install cost no store read.
	stored bool
	// writeMu serializes the writers of the catalog (Syncer, SetCard):
	// each reads the catalog, records, and publishes a successor.
	writeMu sync.Mutex
	// reloadMu makes Reload read the store and publish in one step: the
	// price follower and the writers of a shared store reload
	// concurrently, and a catalog read earlier must never be published
	// after one read later.
	reloadMu sync.Mutex
}

// Load reads every price version and rate card from store.
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
	if s.stored, err = store.HasAssignments(); err != nil {
		return nil, err
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
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	book, err := s.store.Book(s.aliases)
	if err != nil {
		return err
	}
	return s.reloadCards(book)
}

// join returns the assignment of a customer with none whose event at t
// is rated against cat: the default card at the version in force at t.
// The join time is the event time, not the clock, so a redelivered first
// event joins exactly the same. ok is false when the catalog has no
// default card: the customer is rated with the global markup and joins
// at a later event, once there is one.
func (cat *Catalog) join(t time.Time) (a rating.Assignment, ok bool) {
	card := cat.Cards[cat.DefaultCard]
	if card == nil {
		return rating.Assignment{}, false
	}
	return rating.Assignment{CardID: card.ID, Version: versionAt(card, t), AssignedAt: t.UTC()}, true
}

// storedHistory returns the customer's assignments in the store (written
// by older versions of tariff), or nil.
func (s *State) storedHistory(customer string) ([]rating.Assignment, error) {
	if !s.stored {
		return nil, nil
	}
	return s.store.History(customer)
}

// memHistory returns the customer's assignments for Rater.Rate: the
// stored ones, else the default card joined at the customer's first
// event here, kept in memory only. Only a process without partition
// state (a tool, a test) rates this way: two processes would each have
// their own, which is why the pipeline keeps assignments in partition
// state instead.
func (s *State) memHistory(customer string, t time.Time, cat *Catalog) ([]rating.Assignment, error) {
	if h, ok := s.customers.Load(customer); ok {
		return h.([]rating.Assignment), nil
	}
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	if h, ok := s.customers.Load(customer); ok {
		return h.([]rating.Assignment), nil
	}
	h, err := s.storedHistory(customer)
	if err != nil {
		return nil, fmt.Errorf("read assignments of customer %q: %w", customer, err)
	}
	if len(h) == 0 {
		a, ok := cat.join(t)
		if !ok {
			return nil, nil
		}
		h = []rating.Assignment{a}
	}
	s.customers.Store(customer, h)
	return h, nil
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
// pipeline.CardRater (the pipeline passes each customer's assignments from
// partition state) and is safe for concurrent use.
type Rater struct {
	state *State
}

// NewRater returns a rater over the state's live catalog.
func (s *State) NewRater() *Rater { return &Rater{state: s} }

// Rate implements pipeline.Rater, for a process without partition state:
// assignments as memHistory keeps them. A missing price or card version
// wraps pipeline.ErrUnpriced, so the event is dead-lettered for re-rating
// and never billed as zero.
func (r *Rater) Rate(ev *schemas.UsageEvent, out *sinks.RatedEvent) error {
	var rated rating.Rated
	return pipeline.Finish(out, ev, &rated, r.RateEvent(ev, &rated))
}

// RateWith implements pipeline.CardRater: Rate with hist as the customer's
// assignments.
func (r *Rater) RateWith(ev *schemas.UsageEvent, hist []rating.Assignment, out *sinks.RatedEvent) error {
	var rated rating.Rated
	return pipeline.Finish(out, ev, &rated, r.rateEvent(ev, hist, r.state.catalog.Load(), &rated))
}

// Join implements pipeline.CardRater, against the catalog in force.
func (r *Rater) Join(t time.Time) (rating.Assignment, bool) {
	return r.state.catalog.Load().join(t)
}

// StoredHistory implements pipeline.CardRater: the assignments older
// versions of tariff recorded in the store.
func (r *Rater) StoredHistory(customer string) ([]rating.Assignment, error) {
	return r.state.storedHistory(customer)
}

// CheckAssignment implements pipeline.CardRater: the card and its version
// must exist in the catalog in force.
func (r *Rater) CheckAssignment(a rating.Assignment) error {
	card := r.state.catalog.Load().Cards[a.CardID]
	if card == nil {
		return fmt.Errorf("rate_card_id: %q: no such rate card", a.CardID)
	}
	for _, v := range card.Versions {
		if v.Version == a.Version {
			return nil
		}
	}
	return fmt.Errorf("version: %d: rate card %s has versions 1 to %d", a.Version, card.ID, card.Versions[len(card.Versions)-1].Version)
}

// RateEvent rates ev into out with the customer's assignments as Rate
// keeps them, against the catalog in force, which it loads exactly once.
func (r *Rater) RateEvent(ev *schemas.UsageEvent, out *rating.Rated) error {
	cat := r.state.catalog.Load()
	var hist []rating.Assignment
	if len(cat.Cards) > 0 {
		var err error
		if hist, err = r.state.memHistory(ev.CustomerID, ev.Time, cat); err != nil {
			return err
		}
	}
	return r.rateEvent(ev, hist, cat, out)
}

// RateEventWith rates ev into out with hist as the customer's assignments
// (nil: none), against the catalog in force.
func (r *Rater) RateEventWith(ev *schemas.UsageEvent, hist []rating.Assignment, out *rating.Rated) error {
	return r.rateEvent(ev, hist, r.state.catalog.Load(), out)
}

// rateEvent rates ev into out against cat. Without any rate card in the
// catalog every customer is rated with the global markup, assignments or
// not.
//
// A customer on a card version pinned to an old price version (new
// customers only: they keep the prices they signed up with) who uses a
// model that version does not list is rated with the version in force at
// the event's time: the model has no grandfathered price, and refusing
// every new model to every existing customer would be worse. out records
// which price version was used.
func (r *Rater) rateEvent(ev *schemas.UsageEvent, hist []rating.Assignment, cat *Catalog, out *rating.Rated) error {
	terms := rating.Terms{Markups: rating.MarkupLayers{Global: &r.state.global}}
	if len(cat.Cards) > 0 && len(hist) > 0 {
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
	// A shared store first applies what other instances wrote, so the
	// version number below is the next one of the shared history.
	if err := s.store.catchUp(); err != nil {
		return CardChange{}, err
	}
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
	if s.store.shared != nil {
		// The follower may have applied other instances' writes since cat
		// was read: publish the store's catalog, not cat's book.
		return ch, s.Reload()
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
