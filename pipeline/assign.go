package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// Rate-card assignments. Which rate card, at which version, a customer is
// on is part of the state of the partition that owns the customer, like
// the customer's balance: it changes in partition order (a first event,
// an assign_rate_card command), travels in the batch's changelog record
// and Badger transaction, and so moves with the partition to whichever
// instance owns it next. Were it kept per instance, the instance taking a
// partition over would not know when a customer joined, would assign the
// customer again at a later event, and with a new-customers-only card the
// customer would silently move to a newer card version.
//
// State key (kinds listed in store.go):
//
//	'k' p(4) customer -> the customer's assignments (encodeAssignments)
//
// The value is the whole history, rewritten when it grows: a history has
// one entry per join or operator move, so it stays small. Assignments
// live as long as the customer, far longer than the changelog keeps
// records, so the balance refresh re-logs each customer's assignments
// with its account (refresh.go); a customer with assignments always has
// an account (usage and the assign command both make one).
//
// A customer without assignments whose event the processor rates joins
// the catalog's default card at the version in force at the event's time
// (CardRater.Join), and that assignment is written with the batch. With no
// default card the customer is rated with the global markup and joins at
// a later event, once there is one.
//
// Upgrading: versions of tariff before this kept assignments in the
// prices store of each instance's own database. A customer with no
// assignments in partition state whose history is found there
// (CardRater.StoredHistory) is rated with it, and it is copied into the
// partition state with the batch, so an upgrade changes no rating; from
// then on the partition state is the only one read and written.
const kindAssignment byte = 'k'

// CardRater is a Rater that rates with rate cards. The processor keeps
// each customer's assignments in partition state and hands them to
// RateWith; nothing on the rating path records an assignment anywhere
// else. Methods are safe for concurrent use.
type CardRater interface {
	Rater
	// RateWith rates ev into out as Rate does, with hist as the customer's
	// assignments in time order (nil: none, rated with the global
	// markup). The caller owns hist; RateWith does not keep it.
	RateWith(ev *schemas.UsageEvent, hist []rating.Assignment, out *sinks.RatedEvent) error
	// Join returns the assignment of a customer with none whose event at
	// t is rated: the default card at the version in force at t. ok is
	// false when there is no default card.
	Join(t time.Time) (a rating.Assignment, ok bool)
	// StoredHistory returns the customer's assignments recorded outside
	// partition state by an older version of tariff (nil: none). It only
	// reads.
	StoredHistory(customer string) ([]rating.Assignment, error)
	// CheckAssignment says why a cannot be applied now (a card or card
	// version missing from the catalog in force), naming the field; nil
	// when it can.
	CheckAssignment(a rating.Assignment) error
}

// AssignRateCardKind is the kind of an assign_rate_card command.
const AssignRateCardKind = "assign_rate_card"

// AssignRateCard moves a customer to a rate card version, as JSON on the
// command topic (FormatCommand), keyed by customer id:
//
//	{"kind":"assign_rate_card","id":"cmd_9f2c","customer_id":"acme",
//	 "at":"2026-11-27T08:00:00Z","rate_card_id":"enterprise","version":2,
//	 "effective_at":"2026-12-01T00:00:00Z"}
//
// id is the idempotency key: a command id applied before is a no-op. at
// is when the command was issued; effective_at is when the assignment
// takes effect for rating (usage timed from then on; usage already rated
// is not re-rated). The partition that owns the customer applies it in
// order with the customer's usage. Refused to the dead-letter topic
// (stage assign_rate_card, nothing changed): an unknown field, a missing
// or bad field, a card or version missing from the catalog when applied,
// another assignment of the customer at the same effective time (history
// is never rewritten; the same assignment again is no change), an at
// older than the deduplication window or more than
// schemas.MaxFutureSkew ahead. The id is remembered for the window, like
// an event's (prefixed, so it cannot collide with one).
type AssignRateCard struct {
	Kind        string    `json:"kind"`
	ID          string    `json:"id"`
	CustomerID  string    `json:"customer_id"`
	At          time.Time `json:"at"`
	RateCardID  string    `json:"rate_card_id"`
	Version     int       `json:"version"`
	EffectiveAt time.Time `json:"effective_at"`
}

// Validate reports every bad field at once.
func (c *AssignRateCard) Validate() error {
	var errs []error
	if c.Kind != AssignRateCardKind {
		errs = append(errs, fmt.Errorf("assign_rate_card.kind: %q: expected %q", c.Kind, AssignRateCardKind))
	}
	if c.ID == "" || len(c.ID) > schemas.MaxIDLen {
		errs = append(errs, fmt.Errorf("assign_rate_card.id: %q: expected 1 to %d bytes", c.ID, schemas.MaxIDLen))
	}
	if c.CustomerID == "" || len(c.CustomerID) > schemas.MaxIDLen {
		errs = append(errs, fmt.Errorf("assign_rate_card.customer_id: %q: expected 1 to %d bytes", c.CustomerID, schemas.MaxIDLen))
	}
	if c.RateCardID == "" || len(c.RateCardID) > 512 || strings.ContainsRune(c.RateCardID, 0) {
		errs = append(errs, fmt.Errorf("assign_rate_card.rate_card_id: %q: expected 1 to 512 bytes without NUL", c.RateCardID))
	}
	if c.Version < 1 {
		errs = append(errs, fmt.Errorf("assign_rate_card.version: %d: expected 1 or more", c.Version))
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"at", c.At}, {"effective_at", c.EffectiveAt}} {
		switch {
		case f.t.IsZero():
			errs = append(errs, fmt.Errorf("assign_rate_card.%s: missing time", f.name))
		case f.t.Year() < 1971 || f.t.Year() >= 2200:
			errs = append(errs, fmt.Errorf("assign_rate_card.%s: %s: expected a time from 1971 to 2199", f.name, f.t.UTC().Format(time.RFC3339Nano)))
		}
	}
	return errors.Join(errs...)
}

// Assignment is the assignment the command records.
func (c *AssignRateCard) Assignment() rating.Assignment {
	return rating.Assignment{CardID: c.RateCardID, Version: c.Version, AssignedAt: c.EffectiveAt.UTC()}
}

// SubmitAssignment publishes an assign_rate_card command, keyed by its
// customer, and returns once every in-sync replica has it.
func (c *CommandWriter) SubmitAssignment(ctx context.Context, cmd *AssignRateCard) error {
	return c.publish(ctx, cmd.CustomerID, cmd.ID, cmd)
}

// isAssign reports whether a command-format message is an
// assign_rate_card command.
func isAssign(msg []byte) bool { return isKind(msg, AssignRateCardKind) }

// decodeAssign reads the command strictly (decodeStrict).
func decodeAssign(msg []byte) (*AssignRateCard, error) {
	var c AssignRateCard
	if err := decodeStrict(msg, AssignRateCardKind, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// assignDedupID is the idempotency key of an assign command in the
// customer's dedup keys: prefixed, so a command id cannot collide with
// one of the customer's event ids.
func assignDedupID(id string) string { return AssignRateCardKind + ":" + id }

// assignCommand applies one assign_rate_card command (see AssignRateCard).
// A refusal is dead-lettered and changes nothing; err is a failure to read
// state, which stops the batch.
func (p *Processor) assignCommand(txn *badger.Txn, m *kafka.Message, now time.Time) error {
	refuse := func(err error) error {
		p.deadLetter(m, AssignRateCardKind, err.Error())
		return nil
	}
	c, err := decodeAssign(m.Value)
	if err != nil {
		return refuse(err)
	}
	if err := c.Validate(); err != nil {
		return refuse(err)
	}
	window := p.deps.Store.Window()
	switch {
	case now.Sub(c.At) > window:
		return refuse(fmt.Errorf("assign_rate_card.at: %s is older than the %s deduplication window: a command that old can no longer be told apart from one applied before",
			c.At.UTC().Format(time.RFC3339), window))
	case c.At.After(now.Add(schemas.MaxFutureSkew)):
		return refuse(fmt.Errorf("assign_rate_card.at: %s is more than %s ahead of this processor's clock %s",
			c.At.UTC().Format(time.RFC3339), schemas.MaxFutureSkew, now.UTC().Format(time.RFC3339)))
	}
	if len(m.Key) > 0 && string(m.Key) != c.CustomerID {
		p.deps.Stats.KeyMismatch.Add(1)
	}

	// Once per command id.
	dedupID := assignDedupID(c.ID)
	cmd := [2]string{c.CustomerID, dedupID}
	if _, dup := p.inBatch[cmd]; dup {
		p.duplicate()
		return nil
	}
	if seen, err := p.applied(txn, c.CustomerID, dedupID); err != nil {
		return err
	} else if seen {
		p.duplicate()
		return nil
	}
	cmdKey := append([]byte(nil), p.key...)

	if p.asg == nil {
		return refuse(errors.New("assign_rate_card: this pipeline rates without rate cards (its rater has none), so there is nothing to assign"))
	}
	a := c.Assignment()
	if err := p.asg.rater.CheckAssignment(a); err != nil {
		return refuse(fmt.Errorf("assign_rate_card: %w", err))
	}
	hist, err := p.asg.history(txn, c.CustomerID, time.Time{}, false, &p.muts)
	if err != nil {
		return err
	}
	grown, err := insertAssignment(hist, a)
	if err != nil {
		return refuse(fmt.Errorf("assign_rate_card.effective_at: customer %q: %w", c.CustomerID, err))
	}
	if grown != nil {
		p.asg.set(c.CustomerID, grown, &p.muts)
	}
	// The customer gets an account (as with usage) if it has none: the
	// refresh re-logs assignments with their account (refresh.go), so a
	// customer moved before any usage still outlives the changelog's
	// retention.
	if _, err := p.bal.account(txn, c.CustomerID); err != nil {
		return err
	}
	p.bal.touch(c.CustomerID)
	p.seen.add(cmdKey)
	p.inBatch[cmd] = struct{}{}
	p.muts = append(p.muts, Mutation{Key: cmdKey, Value: p.stamp[:], ExpiresAt: uint64(c.At.Add(window).Unix())})
	p.log.Debug().Str("customer", c.CustomerID).Str("card", a.CardID).Int("version", a.Version).
		Time("effective_at", a.AssignedAt).Msg("customer assigned to rate card")
	return nil
}

// insertAssignment returns hist with a added in time order, as a new
// slice; nil when hist already holds a (nothing to change). Another
// assignment at the same time is refused: history is never rewritten.
func insertAssignment(hist []rating.Assignment, a rating.Assignment) ([]rating.Assignment, error) {
	i := 0
	for ; i < len(hist) && !hist[i].AssignedAt.After(a.AssignedAt); i++ {
		if hist[i].AssignedAt.Equal(a.AssignedAt) {
			if hist[i].CardID == a.CardID && hist[i].Version == a.Version {
				return nil, nil
			}
			return nil, fmt.Errorf("%s: the customer is already assigned to rate card %s version %d from that time; recorded assignments are never rewritten, so choose another effective time",
				a.AssignedAt.Format(time.RFC3339Nano), hist[i].CardID, hist[i].Version)
		}
	}
	out := make([]rating.Assignment, 0, len(hist)+1)
	out = append(out, hist[:i]...)
	out = append(out, a)
	return append(out, hist[i:]...), nil
}

// maxCachedHistories bounds the customers whose assignments a processor
// keeps decoded between batches; past it they are dropped (their state
// is in Badger), like the balance stage's accounts.
const maxCachedHistories = 50_000

// assignments is the processor's view of its partition's assignments:
// committed state plus the batch in hand. A processor lives for one
// generation, so the cache never outlives the partition's ownership.
type assignments struct {
	partition int
	rater     CardRater
	// cache holds, per customer looked up this generation, the history
	// (nil: none). Slices in it are never modified, only replaced.
	cache map[string][]rating.Assignment
	// undo restores the cache entries changed by the usage message in
	// hand when the message is refused (its mutations are dropped too).
	undo []assignUndo
	key  []byte
}

type assignUndo struct {
	customer string
	prev     []rating.Assignment
	had      bool
}

func newAssignments(partition int, r CardRater) *assignments {
	return &assignments{partition: partition, rater: r, cache: make(map[string][]rating.Assignment)}
}

func assignmentKey(dst []byte, partition int, customer string) []byte {
	return append(partKey(dst, kindAssignment, partition), customer...)
}

// history returns the customer's assignments, loading them the first
// time this processor sees the customer: from partition state, else from
// the prices store of an older version (copied into partition state, see
// the top of this file). When the customer has none and join is set, the
// customer joins the default card at t (if there is one), and that is
// recorded. Changes are appended to muts. The slice returned is the
// caller's to read, never to modify.
func (s *assignments) history(txn *badger.Txn, customer string, t time.Time, join bool, muts *[]Mutation) ([]rating.Assignment, error) {
	hist, ok := s.cache[customer]
	if !ok {
		var err error
		if hist, err = s.load(txn, customer, muts); err != nil {
			return nil, err
		}
	}
	if len(hist) > 0 || !join {
		return hist, nil
	}
	a, ok := s.rater.Join(t)
	if !ok {
		return nil, nil
	}
	hist = []rating.Assignment{a}
	s.set(customer, hist, muts)
	return hist, nil
}

// load reads the customer's assignments into the cache.
func (s *assignments) load(txn *badger.Txn, customer string, muts *[]Mutation) ([]rating.Assignment, error) {
	s.key = assignmentKey(s.key, s.partition, customer)
	var hist []rating.Assignment
	it, err := txn.Get(s.key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		stored, err := s.rater.StoredHistory(customer)
		if err != nil {
			return nil, fmt.Errorf("read stored rate-card assignments of %s: %w", customer, err)
		}
		if len(stored) > 0 {
			// One-time migration: from now on the partition state has it.
			s.set(customer, stored, muts)
			return stored, nil
		}
	case err != nil:
		return nil, fmt.Errorf("read rate-card assignments of %s: %w", customer, err)
	default:
		err := it.Value(func(v []byte) error {
			var err error
			hist, err = decodeAssignments(v)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("read rate-card assignments of %s: %w", customer, err)
		}
	}
	s.note(customer)
	s.cache[customer] = hist
	return hist, nil
}

// set records the customer's new history: in the cache and as a mutation
// of the batch.
func (s *assignments) set(customer string, hist []rating.Assignment, muts *[]Mutation) {
	s.note(customer)
	s.cache[customer] = hist
	*muts = append(*muts, Mutation{Key: assignmentKey(nil, s.partition, customer), Value: encodeAssignments(nil, hist)})
}

// note remembers the customer's cache entry before the message in hand
// changes it.
func (s *assignments) note(customer string) {
	prev, had := s.cache[customer]
	s.undo = append(s.undo, assignUndo{customer: customer, prev: prev, had: had})
}

// begin starts a message: changes from here on can be rolled back.
func (s *assignments) begin() {
	clear(s.undo)
	s.undo = s.undo[:0]
}

// rollback undoes the cache changes since begin, newest first; the
// caller drops the mutations.
func (s *assignments) rollback() {
	for i := len(s.undo) - 1; i >= 0; i-- {
		u := &s.undo[i]
		if u.had {
			s.cache[u.customer] = u.prev
		} else {
			delete(s.cache, u.customer)
		}
	}
	s.begin()
}

// committed is called once the batch is durable.
func (s *assignments) committed() {
	s.begin()
	if len(s.cache) > maxCachedHistories {
		clear(s.cache)
	}
}

// historyFor returns the assignments to rate ev with, joining the
// customer to the default card when it has none (nil when the processor
// has no rate cards).
func (p *Processor) historyFor(txn *badger.Txn, ev *schemas.UsageEvent, join bool) ([]rating.Assignment, error) {
	if p.asg == nil {
		return nil, nil
	}
	return p.asg.history(txn, ev.CustomerID, ev.Time, join, &p.muts)
}

// rate rates ev with the processor's rater: with rate cards, with hist
// (from historyFor).
func (p *Processor) rate(ev *schemas.UsageEvent, hist []rating.Assignment, out *sinks.RatedEvent) error {
	if p.asg == nil {
		return p.rater.Rate(ev, out)
	}
	return p.asg.rater.RateWith(ev, hist, out)
}

// Encoding of a history, version 1:
//
//	1 | count uvarint | count × (card id len uvarint, card id,
//	    card version uvarint, unix seconds varint, nanoseconds uvarint)
//
// Times are exact to the nanosecond and UTC.
const assignmentsVersion = 1

func encodeAssignments(dst []byte, hist []rating.Assignment) []byte {
	dst = append(dst, assignmentsVersion)
	dst = binary.AppendUvarint(dst, uint64(len(hist)))
	for _, a := range hist {
		dst = binary.AppendUvarint(dst, uint64(len(a.CardID)))
		dst = append(dst, a.CardID...)
		dst = binary.AppendUvarint(dst, uint64(a.Version))
		dst = binary.AppendVarint(dst, a.AssignedAt.Unix())
		dst = binary.AppendUvarint(dst, uint64(a.AssignedAt.Nanosecond()))
	}
	return dst
}

var errBadAssignments = errors.New("malformed rate-card assignments")

func decodeAssignments(b []byte) ([]rating.Assignment, error) {
	if len(b) < 2 || b[0] != assignmentsVersion {
		return nil, errBadAssignments
	}
	b = b[1:]
	uvarint := func() (uint64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	n, ok := uvarint()
	if !ok || n > uint64(len(b)) {
		return nil, errBadAssignments
	}
	hist := make([]rating.Assignment, 0, n)
	for range n {
		l, ok := uvarint()
		if !ok || l > uint64(len(b)) {
			return nil, errBadAssignments
		}
		card := string(b[:l])
		b = b[l:]
		v, ok := uvarint()
		if !ok || v < 1 || v > 1<<31 {
			return nil, errBadAssignments
		}
		sec, k := binary.Varint(b)
		if k <= 0 {
			return nil, errBadAssignments
		}
		b = b[k:]
		ns, ok := uvarint()
		if !ok || ns >= 1e9 {
			return nil, errBadAssignments
		}
		hist = append(hist, rating.Assignment{CardID: card, Version: int(v), AssignedAt: time.Unix(sec, int64(ns)).UTC()})
	}
	if len(b) != 0 || !slices.IsSortedFunc(hist, func(x, y rating.Assignment) int { return x.AssignedAt.Compare(y.AssignedAt) }) {
		return nil, errBadAssignments
	}
	return hist, nil
}

// Assignments returns the customer's rate-card assignments as committed
// in partition's state, in time order (nil: none).
func (s *Store) Assignments(partition int, customer string) ([]rating.Assignment, error) {
	var hist []rating.Assignment
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(assignmentKey(nil, partition, customer))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			hist, err = decodeAssignments(v)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read rate-card assignments of %s in partition %d: %w", customer, partition, err)
	}
	return hist, nil
}
