package pipeline

import (
	"fmt"
	"hash/maphash"
	"sync"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"

	"github.com/tariff-dev/tariff/pipeline/balance"
)

// Views holds, per customer, an immutable snapshot of the account as last
// committed, and the partition whose state holds it, for entitlement
// checks that must answer from memory and for the admin API to find an
// account. Only the customers of partitions this instance owns are
// present: a partition's views are loaded from state when its worker
// starts and dropped when it stops. The zero Views is empty and ready.
//
// Views are kept packed (balance.PackedView) in sharded slabs, and the
// customer ids in a pointer-free index (nameIndex): with a million
// customers the garbage collector sees a few large arrays per shard, not
// a string and a boxed view per customer on every cycle, and an update
// allocates nothing.
type Views struct {
	shards [viewShards]viewShard
}

// viewShards spreads the lock traffic of the partition workers (writers)
// and the entitlement API (readers) so that they rarely meet.
const viewShards = 64

// A shard's packed views live in fixed chunks of a slab, found through
// the index; a map holding the 120-byte views directly would keep them
// in half-empty table slots, twice the memory.
const (
	viewChunkBits = 9
	viewChunk     = 1 << viewChunkBits
)

type viewShard struct {
	viewShardState
	// Pads the shard to whole cache lines of its own, so that readers
	// taking one shard's lock do not slow down its neighbours' through
	// false sharing.
	_ [cacheLine - unsafe.Sizeof(viewShardState{})%cacheLine]byte
}

const cacheLine = 64

type viewShardState struct {
	mu     sync.RWMutex
	index  nameIndex
	chunks []*[viewChunk]balance.PackedView
	free   []uint32 // slots of chunks no customer uses
	// whole holds the views that do not pack (more usable credits than
	// balance.PackedCredits), which are rare.
	whole map[string]balance.View
}

// viewSlot says where a customer's view is: slot in the chunks, or
// wholeSlot for the whole map.
type viewSlot struct {
	slot      uint32
	partition int32 // Kafka partition numbers are int32
}

const wholeSlot = ^uint32(0)

// viewSeed is process-wide so that the zero Views works.
var viewSeed = maphash.MakeSeed()

// shard returns the customer's shard and the hash its index files it by.
func (v *Views) shard(customer string) (*viewShard, uint64) {
	h := maphash.String(viewSeed, customer)
	return &v.shards[h%viewShards], h
}

func (s *viewShard) packed(slot uint32) *balance.PackedView {
	return &s.chunks[slot>>viewChunkBits][slot&(viewChunk-1)]
}

// Get returns the customer's last committed view.
func (v *Views) Get(customer string) (balance.View, bool) {
	s, h := v.shard(customer)
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.index.find(h, customer)
	switch {
	case e == nil:
		return balance.View{}, false
	case e.at.slot == wholeSlot:
		return s.whole[customer], true
	}
	return s.packed(e.at.slot).Unpack(), true
}

// Partition returns the number of the partition whose state holds the
// customer's account, if it is one of this instance's partitions.
func (v *Views) Partition(customer string) (int, bool) {
	s, h := v.shard(customer)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.index.find(h, customer); e != nil {
		return int(e.at.partition), true
	}
	return 0, false
}

// Entitlement answers whether the customer may use more, from the view
// committed last; known is false for a customer this instance has no
// account for (never seen, or owned by another instance's partitions).
// It does not allocate.
func (v *Views) Entitlement(customer string, now time.Time) (e balance.Entitlement, known bool) {
	s, h := v.shard(customer)
	s.mu.RLock()
	switch at := s.index.find(h, customer); {
	case at == nil:
	case at.at.slot == wholeSlot:
		whole := s.whole[customer]
		e, known = whole.Entitlement(now), true
	default:
		e, known = s.packed(at.at.slot).Entitlement(now), true
	}
	s.mu.RUnlock()
	return e, known
}

// Range calls fn for every customer with a committed account here, in no
// particular order, until fn returns false. fn runs without locks held,
// so it may use v; a view stored or forgotten meanwhile may or may not be
// seen.
func (v *Views) Range(fn func(customer string, view balance.View) bool) {
	type item struct {
		customer string
		view     balance.View
	}
	var items []item
	for i := range v.shards {
		s := &v.shards[i]
		items = items[:0]
		s.mu.RLock()
		for j := range s.index.entries {
			e := &s.index.entries[j]
			if !e.live {
				continue
			}
			it := item{customer: string(s.index.name(e))}
			if e.at.slot == wholeSlot {
				it.view = s.whole[it.customer]
			} else {
				it.view = s.packed(e.at.slot).Unpack()
			}
			items = append(items, it)
		}
		s.mu.RUnlock()
		for j := range items {
			if !fn(items[j].customer, items[j].view) {
				return
			}
		}
	}
}

func (v *Views) store(partition int, customer string, view balance.View) {
	p, packed := view.Pack()
	s, h := v.shard(customer)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, existed := s.index.insert(h, customer)
	e.at.partition = int32(partition)
	if !packed {
		if existed && e.at.slot != wholeSlot {
			s.release(e.at.slot)
		}
		e.at.slot = wholeSlot
		if s.whole == nil {
			s.whole = make(map[string]balance.View)
		}
		s.whole[customer] = view
		return
	}
	if !existed || e.at.slot == wholeSlot {
		if existed {
			delete(s.whole, customer)
		}
		e.at.slot = s.take()
	}
	*s.packed(e.at.slot) = p
}

// take returns a free slot, growing the slab by a chunk when none is.
func (s *viewShard) take() uint32 {
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return slot
	}
	base := uint32(len(s.chunks)) << viewChunkBits
	s.chunks = append(s.chunks, new([viewChunk]balance.PackedView))
	for i := uint32(viewChunk - 1); i > 0; i-- {
		s.free = append(s.free, base+i)
	}
	return base
}

func (s *viewShard) release(slot uint32) {
	*s.packed(slot) = balance.PackedView{}
	s.free = append(s.free, slot)
}

// forget drops the views of partition: this instance no longer owns it.
func (v *Views) forget(partition int) {
	for i := range v.shards {
		s := &v.shards[i]
		s.mu.Lock()
		for j := range s.index.entries {
			e := &s.index.entries[j]
			if !e.live || int(e.at.partition) != partition {
				continue
			}
			if e.at.slot == wholeSlot {
				delete(s.whole, string(s.index.name(e)))
			} else {
				s.release(e.at.slot)
			}
			s.index.remove(uint32(j))
		}
		if s.index.live == 0 {
			// The last partition went: give the slab back.
			s.chunks, s.free, s.index, s.whole = nil, nil, nameIndex{}, nil
		} else {
			s.index.compact()
		}
		s.mu.Unlock()
	}
}

// load publishes the view of every account in partition's state, so that
// entitlement and the admin API know the partition's customers before
// they next send usage. It returns how many it loaded.
func (v *Views) load(s *Store, partition int) (int, error) {
	n := 0
	prefix := partKey(nil, kindBalance, partition)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			customer := string(it.Item().Key()[len(prefix):])
			a := balance.NewAccount(customer)
			if err := it.Item().Value(a.UnmarshalBinary); err != nil {
				return fmt.Errorf("read account of %s: %w", customer, err)
			}
			v.store(partition, customer, a.View())
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("load account views of partition %d: %w", partition, err)
	}
	return n, nil
}
