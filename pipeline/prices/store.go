// Package prices keeps tariff's price history and commercial terms in the
// state store and keeps them current while the pipeline runs: price
// versions by effective time, rate cards with their rollout policies,
// customer assignments, the sync that fetches price lists and records a new
// version only when something changed, and the announcements of each
// change (a Kafka topic and webhooks).
//
// Everything here is history: a price version, a rate-card version and an
// assignment, once written, are never rewritten, so re-rating an event
// always gives the result it had.
package prices

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tariff-dev/tariff/rating"
)

// Key layout. The pipeline's store owns 'o' (offsets) and 'd' (dedup);
// prices use 'p', rate cards and assignments 'r'. The second byte says
// what a key holds, so one prefix scan reads one kind:
//
//	p v <effective:12> <id>            price version (rating.MarshalVersion)
//	p o <target> 0x00 <version id>     outbox: announcement not yet delivered
//	r c <card> 0x00 <version:4>        rate-card version (cardVersionJSON)
//	r d                                id of the card new customers join
//	p a                                price-state topic position (replicate.go)
//	r a <customer> 0x00 <at:12>        assignment of a customer to a card,
//	                                   as older versions kept them (only read
//	                                   now: pipeline/assign.go)
//
// <effective> and <at> are timeKey: they sort in time order, zero time
// (the first price version, in force for all history) included.
var (
	prefixVersion    = []byte("pv")
	prefixOutbox     = []byte("po")
	prefixCard       = []byte("rc")
	keyDefaultCard   = []byte("rd")
	prefixAssignment = []byte("ra")
)

const timeKeyLen = 12

// timeKey encodes t so that byte order is time order: seconds since the
// Unix epoch with the sign bit flipped (so times before 1970, and the zero
// time, sort first), then nanoseconds.
func timeKey(dst []byte, t time.Time) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(dst, uint32(t.Nanosecond()))
}

func parseTimeKey(b []byte) time.Time {
	sec := int64(binary.BigEndian.Uint64(b) ^ (1 << 63))
	return time.Unix(sec, int64(binary.BigEndian.Uint32(b[8:]))).UTC()
}

func versionKey(v *rating.Version) []byte {
	k := append([]byte(nil), prefixVersion...)
	k = timeKey(k, v.EffectiveFrom)
	return append(k, v.ID...)
}

// Sentinel errors.
var (
	// ErrExists: the exact record (same id, same time) is already stored.
	// Callers that write idempotently treat it as success.
	ErrExists = errors.New("already recorded")
	// ErrConflict: a different record already holds the slot (another price
	// version at the same effective time, another card version with the
	// same number). History is never rewritten.
	ErrConflict = errors.New("conflicts with recorded history")
	// ErrNoCard: the rate card does not exist.
	ErrNoCard = errors.New("no such rate card")
)

// Store keeps price versions, rate cards and assignments in Badger. It
// shares the pipeline's database (pipeline.Store.DB) so its writes are as
// durable as the offsets: the database's SyncWrites setting applies (on by
// default: a recorded version must survive a power cut, because the change
// events announcing it may already have left).
//
// Store is safe for concurrent use; Badger transactions serialize writers,
// and each write checks, inside its transaction, that it does not replace
// anything.
type Store struct {
	db *badger.DB
	// shared, when set (NewFollower), is the price-state topic every write
	// of shared history goes through first, so that every instance of the
	// group records the same history (replicate.go). Nil: writes are local
	// (no Kafka configured, offline commands). Set before the store is
	// used by more than one goroutine.
	shared *Follower
}

// NewStore returns a store over db. It does not own db: closing is the
// caller's.
func NewStore(db *badger.DB) *Store { return &Store{db: db} }

// VersionID returns the id of a price version: the source format, the
// effective time and a hash of the effective time and the exact stored
// prices. The same prices in force from the same time always get the same
// id, whatever the bytes they were parsed from (key order, spacing), so a
// sync run twice, or by two instances, records one version.
func VersionID(effective time.Time, prices *rating.Snapshot) (string, error) {
	data, err := rating.MarshalVersion(&rating.Version{EffectiveFrom: effective, Prices: prices})
	if err != nil {
		return "", fmt.Errorf("price version id: %w", err)
	}
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%s-%s-%s", prices.Source, effective.UTC().Format("20060102T150405Z"), hex.EncodeToString(sum[:6])), nil
}

// NewVersion builds a version of prices in force from effective, with its
// deterministic id.
func NewVersion(effective time.Time, prices *rating.Snapshot) (*rating.Version, error) {
	id, err := VersionID(effective, prices)
	if err != nil {
		return nil, err
	}
	return &rating.Version{ID: id, EffectiveFrom: effective.UTC(), Prices: prices}, nil
}

// Versions loads every stored price version in effective-time order.
// Consecutive versions share their unchanged entries (rating.Share), so a
// long history costs memory only for what changed.
func (s *Store) Versions() ([]*rating.Version, error) {
	var out []*rating.Version
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixVersion, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var v *rating.Version
			err := item.Value(func(val []byte) error {
				var err error
				v, err = rating.UnmarshalVersion(val)
				return err
			})
			if err != nil {
				return fmt.Errorf("load price version %s: %w", item.Key()[len(prefixVersion)+timeKeyLen:], err)
			}
			if len(out) > 0 {
				shared, _, err := rating.Share(out[len(out)-1].Prices, v.Prices)
				if err != nil {
					return fmt.Errorf("load price version %s: %w", v.ID, err)
				}
				v.Prices = shared
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Book loads every version into a book with the given alias table.
func (s *Store) Book(aliases rating.Aliases) (*rating.Book, error) {
	vs, err := s.Versions()
	if err != nil {
		return nil, err
	}
	b, err := rating.NewBook(aliases, vs...)
	if err != nil {
		return nil, fmt.Errorf("stored price versions: %w", err)
	}
	return b, nil
}

// Record is everything one price change writes, in one transaction: the
// new version, the rate-card versions it starts, and the announcements to
// deliver. Either all of it is stored or none, so a crash never leaves a
// version without its announcements or a card pinned to a missing version.
type Record struct {
	Version *rating.Version
	// Cards are new rate-card versions (appended, never replacing).
	Cards []CardVersion
	// Outbox maps a delivery target ("kafka", "webhook:<url>") to the
	// payload it must receive; Delivered removes an entry.
	Outbox map[string][]byte
}

// CardVersion is a rate-card version as stored: the card id and the
// version.
type CardVersion struct {
	CardID string
	rating.CardVersion
}

// Save writes rec. It fails with ErrExists when the version is already
// stored (same id and time; nothing is written) and ErrConflict when
// another version is in force from the same time or a card version number
// is taken.
func (s *Store) Save(rec Record) error {
	if f := s.shared; f != nil {
		return s.saveShared(f, rec)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		if v := rec.Version; v != nil {
			if err := checkVersionSlot(txn, v); err != nil {
				return err
			}
			data, err := rating.MarshalVersion(v)
			if err != nil {
				return fmt.Errorf("encode price version %s: %w", v.ID, err)
			}
			if err := txn.Set(versionKey(v), data); err != nil {
				return fmt.Errorf("store price version %s: %w", v.ID, err)
			}
		}
		for _, cv := range rec.Cards {
			if err := putCardVersion(txn, cv); err != nil {
				return err
			}
		}
		for target, payload := range rec.Outbox {
			if rec.Version == nil {
				panic("BUG: announcement without a price version")
			}
			if err := txn.Set(outboxKey(target, rec.Version.ID), payload); err != nil {
				return fmt.Errorf("store announcement for %s: %w", target, err)
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrConflict) {
		return fmt.Errorf("record price version: a concurrent write got there first, retry: %w", ErrConflict)
	}
	return err
}

// SaveVersion stores one price version on its own; see Save.
func (s *Store) SaveVersion(v *rating.Version) error { return s.Save(Record{Version: v}) }

func checkVersionSlot(txn *badger.Txn, v *rating.Version) error {
	if v.ID == "" || strings.ContainsRune(v.ID, 0) {
		return fmt.Errorf("price version id %q: expected a non-empty id without NUL bytes", v.ID)
	}
	prefix := timeKey(append([]byte(nil), prefixVersion...), v.EffectiveFrom)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		id := string(it.Item().Key()[len(prefix):])
		if id == v.ID {
			return fmt.Errorf("price version %s: %w", v.ID, ErrExists)
		}
		return fmt.Errorf("price version %s: version %s is already in force from %s and is never rewritten; record the new prices with another effective time: %w",
			v.ID, id, v.EffectiveFrom.UTC().Format(time.RFC3339Nano), ErrConflict)
	}
	return nil
}

// --- rate cards ---

// cardVersionJSON is the stored form of a rate-card version: markups as
// percentage strings, so a stored card reads as what a person set.
type cardVersionJSON struct {
	Card          string            `json:"card"`
	Version       int               `json:"version"`
	Rollout       string            `json:"rollout"`
	EffectiveFrom time.Time         `json:"effective_from"`
	Markup        string            `json:"markup,omitempty"`
	ByProvider    map[string]string `json:"markup_by_provider,omitempty"`
	ByModel       map[string]string `json:"markup_by_model,omitempty"`
	PriceVersion  string            `json:"price_version,omitempty"`
}

func markupText(m rating.Markup) string {
	if !m.IsSet() {
		return ""
	}
	return m.Percent().String()
}

func markupMap(m map[string]rating.Markup) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = markupText(v)
	}
	return out
}

func parseMarkupMap(field string, m map[string]string) (map[string]rating.Markup, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]rating.Markup, len(m))
	for k, v := range m {
		mk, err := rating.ParseMarkup(v)
		if err != nil {
			return nil, fmt.Errorf("%s[%s]: %w", field, k, err)
		}
		out[k] = mk
	}
	return out, nil
}

// ParseRollout reads a rollout policy: "new-customers-only" or
// "all-customers" (underscores accepted too).
func ParseRollout(s string) (rating.Rollout, error) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-") {
	case "new-customers-only", "new-customers", "new":
		return rating.RolloutNewCustomersOnly, nil
	case "all-customers", "all":
		return rating.RolloutAllCustomers, nil
	}
	return 0, fmt.Errorf("rollout %q: expected new-customers-only or all-customers", s)
}

// RolloutName spells a policy the way ParseRollout reads it.
func RolloutName(r rating.Rollout) string {
	return strings.ReplaceAll(r.String(), "_", "-")
}

func cardKey(card string, version int) []byte {
	k := append(append([]byte(nil), prefixCard...), card...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(version))
}

func checkID(what, id string) error {
	if id == "" || strings.ContainsRune(id, 0) || len(id) > 512 {
		return fmt.Errorf("%s %q: expected a non-empty id of at most 512 bytes without NUL", what, id)
	}
	return nil
}

func putCardVersion(txn *badger.Txn, cv CardVersion) error {
	e, err := cardEntry(txn, cv)
	if err != nil {
		return err
	}
	if err := txn.Set(e.Key, e.Value); err != nil {
		return fmt.Errorf("store rate card %s version %d: %w", cv.CardID, cv.Version, err)
	}
	return nil
}

// encodeCardVersion checks cv and returns its key and stored bytes.
func encodeCardVersion(cv CardVersion) ([]byte, []byte, error) {
	if err := checkID("rate card id", cv.CardID); err != nil {
		return nil, nil, err
	}
	if cv.Version < 1 {
		return nil, nil, fmt.Errorf("rate card %s: version %d: expected 1 or more", cv.CardID, cv.Version)
	}
	j := cardVersionJSON{
		Card: cv.CardID, Version: cv.Version, Rollout: RolloutName(cv.Rollout), EffectiveFrom: cv.EffectiveFrom.UTC(),
		Markup: markupText(cv.Markups.Default), ByProvider: markupMap(cv.Markups.ByProvider), ByModel: markupMap(cv.Markups.ByModel),
		PriceVersion: cv.PriceVersion,
	}
	data, err := json.Marshal(j)
	if err != nil {
		return nil, nil, fmt.Errorf("encode rate card %s: %w", cv.CardID, err)
	}
	return cardKey(cv.CardID, cv.Version), data, nil
}

func decodeCardVersion(data []byte) (CardVersion, error) {
	var j cardVersionJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return CardVersion{}, fmt.Errorf("decode rate card version: %w", err)
	}
	ro, err := ParseRollout(j.Rollout)
	if err != nil {
		return CardVersion{}, fmt.Errorf("rate card %s version %d: %w", j.Card, j.Version, err)
	}
	cv := CardVersion{CardID: j.Card, CardVersion: rating.CardVersion{
		Version: j.Version, Rollout: ro, EffectiveFrom: j.EffectiveFrom, PriceVersion: j.PriceVersion,
	}}
	if j.Markup != "" {
		if cv.Markups.Default, err = rating.ParseMarkup(j.Markup); err != nil {
			return CardVersion{}, fmt.Errorf("rate card %s version %d: %w", j.Card, j.Version, err)
		}
	}
	if cv.Markups.ByProvider, err = parseMarkupMap("markup_by_provider", j.ByProvider); err != nil {
		return CardVersion{}, fmt.Errorf("rate card %s version %d: %w", j.Card, j.Version, err)
	}
	if cv.Markups.ByModel, err = parseMarkupMap("markup_by_model", j.ByModel); err != nil {
		return CardVersion{}, fmt.Errorf("rate card %s version %d: %w", j.Card, j.Version, err)
	}
	return cv, nil
}

// AddCardVersion appends a version to a card (creating the card with
// version 1). It fails with ErrConflict when the number is taken.
func (s *Store) AddCardVersion(cv CardVersion) error {
	if f := s.shared; f != nil {
		return s.addCardVersionShared(f, cv)
	}
	return s.db.Update(func(txn *badger.Txn) error { return putCardVersion(txn, cv) })
}

// Cards loads every rate card with all its versions.
func (s *Store) Cards() (map[string]*rating.RateCard, error) {
	byCard := map[string][]rating.CardVersion{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixCard})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var cv CardVersion
			err := it.Item().Value(func(val []byte) error {
				var err error
				cv, err = decodeCardVersion(val)
				return err
			})
			if err != nil {
				return err
			}
			byCard[cv.CardID] = append(byCard[cv.CardID], cv.CardVersion)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load rate cards: %w", err)
	}
	out := make(map[string]*rating.RateCard, len(byCard))
	for id, vs := range byCard {
		c, err := rating.NewRateCard(id, vs...)
		if err != nil {
			return nil, fmt.Errorf("load rate cards: %w", err)
		}
		out[id] = c
	}
	return out, nil
}

// SetDefaultCard names the card customers seen for the first time join.
// The card must exist.
func (s *Store) SetDefaultCard(id string) error {
	if f := s.shared; f != nil {
		return s.setDefaultCardShared(f, id)
	}
	return s.db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: append(append(append([]byte(nil), prefixCard...), id...), 0)})
		defer it.Close()
		it.Rewind()
		if !it.Valid() {
			return fmt.Errorf("default rate card %q: %w", id, ErrNoCard)
		}
		return txn.Set(keyDefaultCard, []byte(id))
	})
}

// DefaultCard returns the id of the card new customers join, or "".
func (s *Store) DefaultCard() (string, error) {
	var id string
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(keyDefaultCard)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		id = string(v)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read default rate card: %w", err)
	}
	return id, nil
}

// --- assignments ---

type assignmentJSON struct {
	Card    string `json:"card"`
	Version int    `json:"version"`
}

func assignmentPrefix(customer string) []byte {
	k := append(append([]byte(nil), prefixAssignment...), customer...)
	return append(k, 0)
}

// Assign records that customer was put on a card version at a.AssignedAt,
// in the form older versions of tariff kept assignments in. Nothing in
// tariff calls it any more: the pipeline keeps assignments in partition
// state, and reads these only to move them there (State's
// Rater.StoredHistory). It stays to write such data in tests and tools.
// Assignments form the customer's history (the first is when they
// joined); a new one never replaces an old one. Recording the same
// assignment twice is a no-op.
func (s *Store) Assign(customer string, a rating.Assignment) error {
	if err := checkID("customer id", customer); err != nil {
		return err
	}
	if err := checkID("rate card id", a.CardID); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return putAssignment(txn, customer, a) })
}

func putAssignment(txn *badger.Txn, customer string, a rating.Assignment) error {
	k := timeKey(assignmentPrefix(customer), a.AssignedAt)
	data, err := json.Marshal(assignmentJSON{Card: a.CardID, Version: a.Version})
	if err != nil {
		return err
	}
	switch it, err := txn.Get(k); {
	case err == nil:
		old, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		if bytes.Equal(old, data) {
			return nil
		}
		return fmt.Errorf("customer %s: another assignment is recorded at %s: %w", customer, a.AssignedAt.UTC().Format(time.RFC3339Nano), ErrConflict)
	case !errors.Is(err, badger.ErrKeyNotFound):
		return err
	}
	if err := txn.Set(k, data); err != nil {
		return fmt.Errorf("store assignment of %s: %w", customer, err)
	}
	return nil
}

// HasAssignments reports whether any assignment is stored.
func (s *Store) HasAssignments() (bool, error) {
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixAssignment})
		defer it.Close()
		it.Rewind()
		found = it.Valid()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("look for stored assignments: %w", err)
	}
	return found, nil
}

// History returns a customer's assignments in time order.
func (s *Store) History(customer string) ([]rating.Assignment, error) {
	var hist []rating.Assignment
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		hist, err = history(txn, customer)
		return err
	})
	return hist, err
}

func history(txn *badger.Txn, customer string) ([]rating.Assignment, error) {
	prefix := assignmentPrefix(customer)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var out []rating.Assignment
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != len(prefix)+timeKeyLen {
			continue // a longer customer id that starts with this one and a NUL
		}
		a, err := decodeAssignment(it.Item(), k[len(prefix):])
		if err != nil {
			return nil, fmt.Errorf("customer %s: %w", customer, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func decodeAssignment(item *badger.Item, at []byte) (rating.Assignment, error) {
	var j assignmentJSON
	err := item.Value(func(v []byte) error { return json.Unmarshal(v, &j) })
	if err != nil {
		return rating.Assignment{}, fmt.Errorf("decode assignment: %w", err)
	}
	return rating.Assignment{CardID: j.Card, Version: j.Version, AssignedAt: parseTimeKey(at)}, nil
}

// Assignments loads every customer's history, each in time order.
func (s *Store) Assignments() (map[string][]rating.Assignment, error) {
	out := map[string][]rating.Assignment{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixAssignment})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < len(prefixAssignment)+1+timeKeyLen {
				return fmt.Errorf("BUG: assignment key of %d bytes", len(k))
			}
			// Parse from the end: the customer id is everything between the
			// prefix and the NUL before the time.
			customer := string(k[len(prefixAssignment) : len(k)-timeKeyLen-1])
			a, err := decodeAssignment(it.Item(), k[len(k)-timeKeyLen:])
			if err != nil {
				return fmt.Errorf("customer %s: %w", customer, err)
			}
			out[customer] = append(out[customer], a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load assignments: %w", err)
	}
	return out, nil
}

// --- outbox ---

func outboxKey(target, versionID string) []byte {
	k := append(append([]byte(nil), prefixOutbox...), target...)
	k = append(k, 0)
	return append(k, versionID...)
}

// Pending is one announcement not yet delivered.
type Pending struct {
	Target    string
	VersionID string
	Payload   []byte
}

// Pending lists undelivered announcements by target, then version id.
func (s *Store) Pending() ([]Pending, error) {
	var out []Pending
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixOutbox})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()[len(prefixOutbox):]
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("BUG: outbox key %q without separator", k)
			}
			p, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, Pending{Target: string(k[:i]), VersionID: string(k[i+1:]), Payload: p})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pending announcements: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// Delivered removes an announcement once its target has it.
func (s *Store) Delivered(target, versionID string) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete(outboxKey(target, versionID)) })
}
