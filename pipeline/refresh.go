package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tariff-dev/tariff/pipeline/balance"
)

// Refresh: long-lived balance state outlives the changelog's retention.
//
// The changelog topic deletes records by time (Changelog.Ensure: the dedup
// window plus a day, 36 days by default). That suits idempotency keys,
// which expire with the window, but an account ('b'), its due entry ('n')
// and its closed periods ('p') live for years, and the only copy of a key
// in the changelog is the record of the batch that last wrote it. An
// account nobody wrote for longer than the retention (a yearly plan, an
// idle customer) would have no record left, and an instance restoring the
// partition from the changelog would lose it with its grants and periods.
//
// So a batch that holds ticks also re-appends a slice of the partition's
// accounts to its mutations: each account, its due entry, its stored
// periods and its rate-card assignments ('k', assign.go: every customer
// with assignments has an account), with the bytes and expiry they have in the batch's read
// transaction (values unchanged), walking the accounts in key order from a
// cursor kept in the partition's state ('r', below) and wrapping around at
// the end. The cursor travels in the changelog like all state, so a sweep
// begun on one instance continues on the next owner.
//
// The guarantee. A sweep takes at most sweep = retention/4. The last
// complete sweep began at most two sweeps ago, half the retention, so its
// records are all still in the topic, and they alone rebuild every
// account, due entry and period: a key that existed when the cursor passed
// its account was re-logged then, and every later write or delete of it is
// in a later record; a key created after is in the record that created it.
// The other half of the retention is margin for a sweep that runs late
// (below). Ticks drive the refresh: with pipeline.tick_interval 0 and no
// other tick writer, nothing is re-logged.
//
// Pacing. The cursor holds the tick time its sweep started (start), the
// estimated accounts of the partition (N) and how many the sweep has
// re-logged (visited). A batch whose latest tick is at re-logs
//
//	quota = floor(N × (at − start) / sweep) − visited
//
// accounts when that is positive (the k-th account of the sweep is due
// at k/N of it, the last at its end): at least refreshFloor, at most
// maxRefreshAccounts, and it stops once maxRefreshBytes are re-logged.
// When at − start reaches sweep before the walk wrapped (N was low, or no
// tick came for a long while), every batch with a tick walks at the cap
// until it wraps. With the defaults (35-day window, 5 s ticks) sweep is
// 9 days = 777,600 s = 155,520 ticks: a partition of 1,000,000 accounts
// needs 6.4 accounts a tick, which the floor turns into 16 every 2 to 3
// ticks; the cap allows 2,000 a tick, so a sweep keeps to 9 days up to
// about 300 million accounts per partition. A partition with fewer
// accounts than the floor is swept N times as often (every 3 days for 3
// accounts).
//
// Pacing by the ticks' times, not by their number times
// pipeline.tick_interval, keeps the rate right however the ticks come:
// from another process at its own interval when tick_interval is 0, twice
// during a rebalance, or many in one batch after a backlog. And the floor
// applies to a batch that re-logs something, not to every tick: 16 a tick
// would sweep a partition of 1,000 accounts every 5 minutes, and the
// topic would hold some 10,000 copies of it, every one replayed when the
// partition is restored; paced, it holds about four.
//
// Counting. N is the number of accounts the previous sweep re-logged,
// counted by the walk itself for free and exact for the accounts that
// existed; accounts created ahead of the cursor during a sweep make it
// low, which the catch-up above covers. Only the first sweep of a
// partition (no cursor yet) counts the account keys, once, in a key-only
// scan (about 0.8 µs a key: under a second for a million). A counter kept in state was the other choice: it needs every
// batch to know which accounts it creates (the processor keeps accounts
// loaded across batches, some never written), one more mutation in each
// such batch, and the same scan for state older than the counter. Badger's
// own estimates (EstimateSize, table key counts) measure bytes or whole
// tables, mixing kinds and partitions, and miss the memtables.
//
// A batch that also changes an account it re-logs (a tick advancing it, a
// command, usage) writes each key once: keys the batch already writes or
// deletes are skipped, since the refresh runs after the batch's own
// balance mutations and Apply takes them in order, so a stale copy after
// them would undo a change or bring a deleted period or due entry back.
//
// State key:
//
//	'r' p(4) -> version 1 | start unix ns (8, big-endian) | N uvarint |
//	    visited uvarint | last account re-logged (the rest)
const kindRefresh byte = 'r'

// refreshFloor is the fewest accounts a refresh re-logs once the pace
// calls for any: a refresh costs a cursor write and a seek, so one or two
// accounts a time is waste; taking 16 only finishes the sweep earlier.
const refreshFloor = 16

// maxRefreshAccounts bounds the accounts one batch re-logs, like
// maxTickAdvances bounds the accounts it advances: an account with two
// grants is about 300 bytes and its 36 periods 3.3 KB, so 2,000 of them
// are about 7 MB, and with maxTickAdvances' 8 MB the record stays far
// below the topic's 64 MiB message limit.
const maxRefreshAccounts = 2_000

// maxRefreshBytes stops a refresh once it has re-logged this many bytes of
// keys and values (checked after each account): accounts with many
// grants are bigger than the estimate above.
const maxRefreshBytes = 8 << 20

// refreshSweep returns the longest a sweep may take for a store whose
// dedup window is window: a quarter of the changelog's retention.
func refreshSweep(window time.Duration) time.Duration {
	return changelogRetention(window) / 4
}

// refreshCursor is where a partition's sweep stands.
type refreshCursor struct {
	start   time.Time // tick time the sweep started at
	n       uint64    // estimated accounts in the partition
	visited uint64    // accounts re-logged by this sweep
	last    []byte    // last account re-logged; meaningful when visited > 0
}

const refreshCursorVersion = 1

func refreshKey(partition int) []byte { return partKey(nil, kindRefresh, partition) }

func (c *refreshCursor) appendBinary(dst []byte) []byte {
	dst = append(dst, refreshCursorVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.start.UnixNano()))
	dst = binary.AppendUvarint(dst, c.n)
	dst = binary.AppendUvarint(dst, c.visited)
	return append(dst, c.last...)
}

var errBadCursor = errors.New("malformed refresh cursor")

func (c *refreshCursor) unmarshal(v []byte) error {
	if len(v) < 9 || v[0] != refreshCursorVersion {
		return errBadCursor
	}
	start := time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()
	v = v[9:]
	n, k := binary.Uvarint(v)
	if k <= 0 {
		return errBadCursor
	}
	v = v[k:]
	visited, k := binary.Uvarint(v)
	if k <= 0 {
		return errBadCursor
	}
	*c = refreshCursor{start: start, n: n, visited: visited, last: append([]byte(nil), v[k:]...)}
	return nil
}

// quota returns how many accounts the sweep should re-log now, at.
func (c *refreshCursor) quota(at time.Time, sweep time.Duration) uint64 {
	elapsed := at.Sub(c.start)
	if elapsed >= sweep {
		return maxRefreshAccounts // behind: catch up at the cap until the walk wraps
	}
	if elapsed <= 0 {
		return 0
	}
	// floor(n × elapsed / sweep) in 128 bits: n × elapsed overflows 64
	// bits for a few thousand accounts. hi < sweep because elapsed < sweep.
	// (Rounding up would start a new sweep of a partition with fewer
	// accounts than the floor at every tick.)
	hi, lo := bits.Mul64(c.n, uint64(elapsed))
	target, _ := bits.Div64(hi, lo, uint64(sweep))
	if target <= c.visited {
		return 0
	}
	return min(max(target-c.visited, refreshFloor), maxRefreshAccounts)
}

// noteTick records a tick of the batch for the refresh: the latest tick
// time paces it.
func (b *balances) noteTick(at time.Time) {
	if at.After(b.tickAt) {
		b.tickAt = at
	}
}

// refresh appends to muts the slice of long-lived balance state that the
// batch's ticks call for (see above), and the moved cursor. txn is the
// batch's read transaction; muts must already hold every balance mutation
// of the batch. It does nothing in a batch without ticks.
func (b *balances) refresh(txn *badger.Txn, muts []Mutation) ([]Mutation, error) {
	if b.tickAt.IsZero() || b.sweep <= 0 {
		return muts, nil
	}
	at := b.tickAt
	var cur refreshCursor
	item, err := txn.Get(refreshKey(b.partition))
	if err == nil {
		err = item.Value(cur.unmarshal)
	}
	switch {
	case errors.Is(err, badger.ErrKeyNotFound), errors.Is(err, errBadCursor):
		// The partition's first sweep: count its accounts, start now. A
		// cursor this binary cannot read (a newer format, after a
		// downgrade) starts over the same way: that costs a sweep and
		// loses nothing.
		cur = refreshCursor{start: at, n: countAccounts(txn, b.partition)}
		return append(muts, Mutation{Key: refreshKey(b.partition), Value: cur.appendBinary(nil)}), nil
	case err != nil:
		return muts, fmt.Errorf("read refresh cursor of partition %d: %w", b.partition, err)
	}
	quota := cur.quota(at, b.sweep)
	if quota == 0 {
		return muts, nil
	}

	// Keys the batch already writes or deletes: theirs is the newer value.
	clear(b.written)
	for i := range muts {
		if k := muts[i].Key; len(k) >= 5 && (k[0] == kindBalance || k[0] == kindDue || k[0] == kindPeriod || k[0] == kindAssignment) {
			b.written[string(k)] = struct{}{}
		}
	}
	relog := func(item *badger.Item) (int, error) {
		if _, ok := b.written[string(item.Key())]; ok {
			return 0, nil
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return 0, err
		}
		muts = append(muts, Mutation{Key: item.KeyCopy(nil), Value: v, ExpiresAt: item.ExpiresAt()})
		return len(item.Key()) + len(v), nil
	}

	prefix := partKey(nil, kindBalance, b.partition)
	seek := prefix
	if cur.visited > 0 {
		// The key right after the last account re-logged.
		seek = append(balanceKey(nil, b.partition, string(cur.last)), 0)
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	popts := badger.DefaultIteratorOptions
	popts.Prefix = partKey(nil, kindPeriod, b.partition)
	popts.PrefetchValues = false
	pit := txn.NewIterator(popts)
	defer pit.Close()

	var done uint64
	size := 0
	for it.Seek(seek); it.Valid(); it.Next() {
		if done == quota || size >= maxRefreshBytes {
			break
		}
		item := it.Item()
		customer := string(item.Key()[len(prefix):])
		var dueAt time.Time
		if err := item.Value(func(v []byte) error {
			a := balance.NewAccount(customer)
			if err := a.UnmarshalBinary(v); err != nil {
				return err
			}
			dueAt = a.NextChange()
			return nil
		}); err != nil {
			return muts, fmt.Errorf("refresh account of %s: %w", customer, err)
		}
		n, err := relog(item)
		if err != nil {
			return muts, fmt.Errorf("refresh account of %s: %w", customer, err)
		}
		size += n
		if !dueAt.IsZero() {
			b.key = dueKey(b.key, b.partition, dueAt, customer)
			due, err := txn.Get(b.key)
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
				// Nothing to re-log: the refresh copies state, never makes it.
			case err != nil:
				return muts, fmt.Errorf("refresh due entry of %s: %w", customer, err)
			default:
				if n, err = relog(due); err != nil {
					return muts, fmt.Errorf("refresh due entry of %s: %w", customer, err)
				}
				size += n
			}
		}
		pp := periodPrefix(nil, b.partition, customer)
		for pit.Seek(pp); pit.ValidForPrefix(pp); pit.Next() {
			if len(pit.Item().Key()) != len(pp)+8 {
				continue // another customer's (see storedPeriodStarts)
			}
			if n, err = relog(pit.Item()); err != nil {
				return muts, fmt.Errorf("refresh periods of %s: %w", customer, err)
			}
			size += n
		}
		b.key = assignmentKey(b.key, b.partition, customer)
		switch asg, err := txn.Get(b.key); {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return muts, fmt.Errorf("refresh rate-card assignments of %s: %w", customer, err)
		default:
			if n, err = relog(asg); err != nil {
				return muts, fmt.Errorf("refresh rate-card assignments of %s: %w", customer, err)
			}
			size += n
		}
		cur.last = append(cur.last[:0], customer...)
		cur.visited++
		done++
	}
	if !it.Valid() {
		// Wrapped: the next sweep starts now, paced by this one's count.
		cur = refreshCursor{start: at, n: cur.visited}
	}
	return append(muts, Mutation{Key: refreshKey(b.partition), Value: cur.appendBinary(nil)}), nil
}

// countAccounts counts the accounts in partition's state, keys only.
func countAccounts(txn *badger.Txn, partition int) uint64 {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = partKey(nil, kindBalance, partition)
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	var n uint64
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n
}
