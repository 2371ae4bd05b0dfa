package pipeline

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/sinks"
)

// The balance stage keeps every customer's account (plan, grants, period
// usage, alert state) in the state of the partition that owns the
// customer, next to the idempotency keys: usage and admin commands reach
// it in partition order, and its changes travel in the same changelog
// record and Badger transaction as the rest of the batch, so an account
// is changed exactly once by each event or command, whatever fails.
//
// State keys (kinds listed in store.go):
//
//	'b' p(4) customer -> balance.Account (its binary form)
//	'n' p(4) due(8) customer -> empty: the account's NextChange, so that a
//	    tick finds the accounts due without reading every account
//	'p' p(4) customer 0x00 start(8) -> balance.PeriodUsage (binary): the
//	    closed periods, the latest MaxStoredPeriods per customer
//	'r' p(4) -> the refresh cursor (refresh.go)
//
// Times in keys are unix nanoseconds, big-endian, so keys sort by time.
//
// Accounts, due entries and periods are kept indefinitely, far longer
// than the changelog's time retention (the dedup window plus a day). So
// that a new owner restoring a partition from the changelog still finds
// every one, however long ago it was last written, the ticks also re-log
// them, unchanged, a slice at a time, so that each is in a record at most
// half the retention old (refresh.go).
const kindBalance byte = 'b'

// MaxStoredPeriods bounds the closed periods kept per customer: three
// years of monthly periods. When a period closes past it, the oldest is
// deleted: state stays bounded per customer (ClickHouse keeps the usage
// lines of older periods).
const MaxStoredPeriods = 36

// maxTickAdvances bounds how many accounts the ticks of one batch advance.
// The first tick after a month ends rolls every account of the partition;
// unbounded, that batch's changelog record could outgrow the topic's 64 MiB
// message limit (an account is a few hundred bytes, its closed period
// about a hundred more: some 8 MB at this bound). Accounts left over are
// still due, and the next tick (or the customer's next usage) advances
// them.
const maxTickAdvances = 10_000

// FormatCommand is the input format of admin commands (grants, top-ups,
// voids, plan changes, thresholds, pauses) and ticks, keyed by customer id
// on a topic co-partitioned with usage.
//
// A command is balance.Command as JSON. A tick is
//
//	{"kind":"tick","at":"2026-11-27T06:51:20.123456789Z"}
//
// with no key and no customer: `at` (RFC 3339, any precision) is the
// writer's clock. Applying a tick to partition p advances every account
// of p that has a time-driven change (grant expiry, scheduled plan change,
// period end) due at or before `at` to `at`, so expiry alerts go out and
// periods close even when a customer sends no usage; other accounts are
// not touched. `tariff run` writes one to each partition it owns every
// pipeline.tick_interval. Ticks are idempotent (an account's clock never
// moves back), so a tick written twice, or by two instances, is harmless.
// A tick more than maxTickSkew ahead of the processor's clock, or with any
// other field, is refused to the dead-letter topic.
const FormatCommand = "command"

// maxTickSkew is how far ahead of the processor's clock a tick may be. A
// tick cannot be undone and moves every due account of its partition, so
// one from a writer whose clock runs ahead would expire credit and close
// periods early for all of them: the bound is far tighter than the 24
// hours a usage event (one customer) may be ahead. A refused tick only
// delays time-driven changes until the next good one.
const maxTickSkew = 5 * time.Minute

// EncodeTick returns the tick record for at (see FormatCommand).
func EncodeTick(at time.Time) []byte {
	b := make([]byte, 0, 64)
	b = append(b, `{"kind":"tick","at":"`...)
	b = at.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// tickKind is the kind of a tick in the command format.
const tickKind = "tick"

// parseTick reports whether msg is a tick (kind "tick") and, if so, its
// time; refused says why a message of kind tick is not a valid one.
func parseTick(msg []byte, now time.Time) (at time.Time, isTick bool, refused error) {
	if !isKind(msg, tickKind) {
		return time.Time{}, false, nil // a command, or garbage the command decoder names
	}
	var t struct {
		Kind       string    `json:"kind"`
		At         time.Time `json:"at"`
		CustomerID string    `json:"customer_id"`
	}
	if err := decodeStrict(msg, tickKind, &t); err != nil {
		return time.Time{}, true, fmt.Errorf("%w (expected {\"kind\":\"tick\",\"at\":\"<RFC 3339 time>\"})", err)
	}
	switch {
	case t.CustomerID != "":
		return time.Time{}, true, fmt.Errorf("tick.customer_id: %q: a tick applies to every due account of its partition and carries no customer", t.CustomerID)
	case t.At.IsZero():
		return time.Time{}, true, errors.New("tick.at: missing time")
	case t.At.Year() < 1971 || t.At.Year() >= 2200:
		return time.Time{}, true, fmt.Errorf("tick.at: %s: expected a time from 1971 to 2199", t.At.UTC().Format(time.RFC3339Nano))
	case t.At.After(now.Add(maxTickSkew)):
		return time.Time{}, true, fmt.Errorf("tick.at: %s is more than %s ahead of this processor's clock %s",
			t.At.UTC().Format(time.RFC3339Nano), maxTickSkew, now.UTC().Format(time.RFC3339Nano))
	}
	return t.At.UTC(), true, nil
}

// Alerts stores balance alerts durably (a Kafka topic); webhooks are
// delivered from there.
type Alerts interface {
	WriteAlerts(ctx context.Context, alerts []balance.Alert) error
}

type balances struct {
	partition int
	accounts  map[string]*balance.Account // loaded this generation: committed state plus the batch in hand
	// due holds, per loaded account, its NextChange as committed: where
	// its due-index entry is, to move it when the batch changes it.
	due map[string]time.Time
	// The generation before: accounts loaded earlier and not used since,
	// with their due times. An account used again moves to the current
	// generation; the rest are dropped when the current one fills up.
	oldAccounts map[string]*balance.Account
	oldDue      map[string]time.Time
	dirty       []string
	isDirty     map[string]bool
	fx          balance.Effects
	key         []byte
	ticked      int // accounts advanced by ticks in this batch

	// Refresh (refresh.go): the longest a sweep may take (0: off), the
	// latest tick time of the batch (zero: no tick), and scratch.
	sweep   time.Duration
	tickAt  time.Time
	written map[string]struct{}

	// Per-batch scratch.
	cands     []string
	candSeen  map[string]bool
	closedBy  map[string][]int // customer -> indexes into fx.Closed
	closedOrd []string
}

// newBalances makes the balance stage of partition in a store whose dedup
// window is window (which sets the refresh's pace).
func newBalances(partition int, window time.Duration) *balances {
	return &balances{
		partition: partition, accounts: make(map[string]*balance.Account), due: make(map[string]time.Time),
		isDirty: make(map[string]bool), candSeen: make(map[string]bool), closedBy: make(map[string][]int),
		sweep: refreshSweep(window), written: make(map[string]struct{}),
	}
}

func balanceKey(dst []byte, partition int, customer string) []byte {
	return append(partKey(dst, kindBalance, partition), customer...)
}

func dueKey(dst []byte, partition int, due time.Time, customer string) []byte {
	dst = partKey(dst, kindDue, partition)
	dst = binary.BigEndian.AppendUint64(dst, uint64(due.UnixNano()))
	return append(dst, customer...)
}

// dueKeyHead is the length of a due key before the customer.
const dueKeyHead = 5 + 8

func periodPrefix(dst []byte, partition int, customer string) []byte {
	dst = partKey(dst, kindPeriod, partition)
	dst = append(dst, customer...)
	return append(dst, 0)
}

func periodKey(dst []byte, partition int, customer string, start time.Time) []byte {
	dst = periodPrefix(dst, partition, customer)
	return binary.BigEndian.AppendUint64(dst, uint64(start.UnixNano()))
}

// account returns the customer's account, loading it from state the first
// time this processor sees the customer.
func (b *balances) account(txn *badger.Txn, customer string) (*balance.Account, error) {
	if a := b.accounts[customer]; a != nil {
		return a, nil
	}
	if a := b.oldAccounts[customer]; a != nil {
		b.accounts[customer], b.due[customer] = a, b.oldDue[customer]
		delete(b.oldAccounts, customer)
		delete(b.oldDue, customer)
		return a, nil
	}
	a := balance.NewAccount(customer)
	b.key = balanceKey(b.key, b.partition, customer)
	it, err := txn.Get(b.key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("read account of %s: %w", customer, err)
	default:
		if err := it.Value(a.UnmarshalBinary); err != nil {
			return nil, fmt.Errorf("read account of %s: %w", customer, err)
		}
	}
	b.accounts[customer] = a
	b.due[customer] = a.NextChange()
	return a, nil
}

func (b *balances) touch(customer string) {
	if !b.isDirty[customer] {
		b.isDirty[customer] = true
		b.dirty = append(b.dirty, customer)
	}
}

// usage applies rated events, in order. Their preconditions (customer,
// time, non-negative charge) were validated before rating, so an error
// here is a broken invariant.
func (b *balances) usage(txn *badger.Txn, events []sinks.RatedEvent) error {
	for i := range events {
		a, err := b.account(txn, events[i].Event.CustomerID)
		if err != nil {
			return err
		}
		if err := a.ApplyUsage(&events[i], &b.fx); err != nil {
			return fmt.Errorf("BUG: balance of validated event: %w", err)
		}
		b.touch(events[i].Event.CustomerID)
	}
	return nil
}

// command decodes and applies one message of the command format: an admin
// command or a tick. refused says why the message itself is refused (for
// the dead-letter topic; nothing changed); err is a failure to read
// state, which must stop the batch rather than dead-letter a good command.
// now is the processor's clock, which bounds how far ahead a tick may be.
func (b *balances) command(txn *badger.Txn, msg []byte, now time.Time) (refused, err error) {
	if at, isTick, refused := parseTick(msg, now); isTick {
		if refused != nil {
			return refused, nil
		}
		return nil, b.tick(txn, at)
	}
	var c balance.Command
	if err := json.Unmarshal(msg, &c); err != nil {
		return fmt.Errorf("command: %w", err), nil
	}
	if err := c.Validate(); err != nil {
		return err, nil
	}
	a, err := b.account(txn, c.CustomerID)
	if err != nil {
		return nil, err
	}
	// Apply validates before it changes anything, so a refused command
	// leaves the account as it was, except that its clock may have moved
	// to the command's time (expiring credit, closing periods): that is
	// stored like any other change, or its closed periods would be lost.
	clock := a.Clock()
	if _, err := a.Apply(&c, &b.fx); err != nil {
		if !a.Clock().Equal(clock) {
			b.touch(c.CustomerID)
		}
		return err, nil
	}
	// Even a command that changes nothing visible is recorded in the
	// account's applied ids, so the account is written.
	b.touch(c.CustomerID)
	return nil, nil
}

// tick advances to at every account of the partition whose next
// time-driven change is due at or before at (at most maxTickAdvances per
// batch). Due accounts are found in the due index as committed, plus the
// accounts changed earlier in this batch, whose index entries are only
// written at flush; each is checked against its current NextChange, so a
// stale entry advances nothing. The batch's ticks also pace the refresh,
// which runs at flush.
func (b *balances) tick(txn *badger.Txn, at time.Time) error {
	b.noteTick(at)
	budget := maxTickAdvances - b.ticked
	if budget <= 0 {
		return nil
	}
	cands := b.cands[:0]
	clear(b.candSeen)
	add := func(c string) {
		if !b.candSeen[c] {
			b.candSeen[c] = true
			cands = append(cands, c)
		}
	}
	prefix := partKey(nil, kindDue, b.partition)
	limit := uint64(at.UnixNano())
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	for it.Rewind(); it.Valid() && len(cands) < budget; it.Next() {
		k := it.Item().Key()
		if len(k) <= dueKeyHead {
			it.Close()
			return fmt.Errorf("BUG: due index key of %d bytes", len(k))
		}
		if binary.BigEndian.Uint64(k[5:dueKeyHead]) > limit {
			break
		}
		add(string(k[dueKeyHead:]))
	}
	it.Close()
	for _, c := range b.dirty {
		add(c)
	}
	for _, c := range cands {
		if budget == 0 {
			break
		}
		a, err := b.account(txn, c)
		if err != nil {
			return err
		}
		if next := a.NextChange(); next.IsZero() || next.After(at) {
			continue
		}
		a.AdvanceTo(at, &b.fx)
		b.touch(c)
		b.ticked++
		budget--
	}
	clear(cands)
	b.cands = cands[:0]
	return nil
}

// flush appends the batch's state changes to muts: the changed accounts,
// their moved due-index entries and the periods closed in the batch
// (deleting the oldest past MaxStoredPeriods), then, in a batch with
// ticks, the refresh's slice of unchanged state (refresh.go). txn is the
// batch's read transaction, for the stored state.
func (b *balances) flush(txn *badger.Txn, muts []Mutation) ([]Mutation, error) {
	for _, c := range b.dirty {
		a := b.accounts[c]
		muts = append(muts, Mutation{Key: balanceKey(nil, b.partition, c), Value: a.AppendBinary(nil)})
		was, next := b.due[c], a.NextChange()
		if was.Equal(next) {
			continue
		}
		if !was.IsZero() {
			muts = append(muts, Mutation{Key: dueKey(nil, b.partition, was, c), Delete: true})
		}
		if !next.IsZero() {
			muts = append(muts, Mutation{Key: dueKey(nil, b.partition, next, c), Value: []byte{}})
		}
	}
	muts, err := b.flushPeriods(txn, muts)
	if err != nil {
		return muts, err
	}
	return b.refresh(txn, muts)
}

func (b *balances) flushPeriods(txn *badger.Txn, muts []Mutation) ([]Mutation, error) {
	if len(b.fx.Closed) == 0 {
		return muts, nil
	}
	clear(b.closedBy)
	b.closedOrd = b.closedOrd[:0]
	for i := range b.fx.Closed {
		c := b.fx.Closed[i].CustomerID
		if _, ok := b.closedBy[c]; !ok {
			b.closedOrd = append(b.closedOrd, c)
		}
		b.closedBy[c] = append(b.closedBy[c], i)
	}
	for _, c := range b.closedOrd {
		// Starts of the customer's periods, stored and new, oldest first.
		starts := storedPeriodStarts(txn, b.partition, c)
		for _, i := range b.closedBy[c] {
			p := &b.fx.Closed[i]
			v, err := p.MarshalBinary()
			if err != nil {
				return muts, fmt.Errorf("BUG: encode closed period of %s: %w", c, err)
			}
			muts = append(muts, Mutation{Key: periodKey(nil, b.partition, c, p.Start), Value: v})
			starts = append(starts, uint64(p.Start.UnixNano()))
		}
		slices.Sort(starts)
		starts = slices.Compact(starts) // a redelivered batch closes the same periods again
		for _, s := range starts[:max(0, len(starts)-MaxStoredPeriods)] {
			muts = append(muts, Mutation{Key: periodKey(nil, b.partition, c, time.Unix(0, int64(s))), Delete: true})
		}
	}
	return muts, nil
}

// storedPeriodStarts returns the starts (unix ns) of the customer's stored
// periods, oldest first.
func storedPeriodStarts(txn *badger.Txn, partition int, customer string) []uint64 {
	prefix := periodPrefix(nil, partition, customer)
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	var out []uint64
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		// The customer id may itself hold a 0 byte: a longer key belongs
		// to another customer whose id starts with this one's and a 0.
		if len(k) != len(prefix)+8 {
			continue
		}
		out = append(out, binary.BigEndian.Uint64(k[len(prefix):]))
	}
	return out
}

// maxCachedAccounts bounds the accounts of a generation a processor keeps
// loaded between batches (so at most twice as many are loaded): past it,
// the accounts not used during the generation before are dropped (their
// state is in Badger) rather than let memory, and the garbage collector's
// work on every cycle, grow with the customer count; the accounts in
// steady use stay loaded.
const maxCachedAccounts = 16_384

// committed publishes the changed accounts' views once the batch is
// durable, and forgets the batch.
func (b *balances) committed(views *Views) {
	for _, c := range b.dirty {
		a := b.accounts[c]
		b.due[c] = a.NextChange()
		if views != nil {
			views.store(b.partition, c, a.View())
		}
	}
	b.reset()
	if len(b.accounts) > maxCachedAccounts {
		b.oldAccounts, b.oldDue = b.accounts, b.due
		b.accounts, b.due = make(map[string]*balance.Account, maxCachedAccounts), make(map[string]time.Time, maxCachedAccounts)
	}
}

func (b *balances) reset() {
	clear(b.isDirty)
	b.dirty = b.dirty[:0]
	b.fx.Reset()
	b.ticked = 0
	b.tickAt = time.Time{}
}

// Account returns the customer's account as last committed in partition's
// state; false when the partition holds none for the customer. The
// account is the caller's.
func (s *Store) Account(partition int, customer string) (*balance.Account, bool, error) {
	a := balance.NewAccount(customer)
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(balanceKey(nil, partition, customer))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return it.Value(a.UnmarshalBinary)
	})
	if err != nil {
		return nil, false, fmt.Errorf("read account of %s in partition %d: %w", customer, partition, err)
	}
	if !found {
		return nil, false, nil
	}
	return a, true, nil
}

// Periods returns the customer's closed periods stored in partition's
// state (the latest MaxStoredPeriods), oldest first.
func (s *Store) Periods(partition int, customer string) ([]balance.PeriodUsage, error) {
	prefix := periodPrefix(nil, partition, customer)
	var out []balance.PeriodUsage
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if len(it.Item().Key()) != len(prefix)+8 {
				continue // another customer's (see storedPeriodStarts)
			}
			var p balance.PeriodUsage
			if err := it.Item().Value(p.UnmarshalBinary); err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read periods of %s in partition %d: %w", customer, partition, err)
	}
	return out, nil
}
