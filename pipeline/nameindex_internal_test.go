package pipeline

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// Every id is filed under one of a handful of hashes, so that chains are
// long and every path of remove (head alone, head of a chain, inside a
// chain) is taken; the index must still agree with a map at every step.
func TestNameIndexCollisions(t *testing.T) {
	var x nameIndex
	want := map[string]uint32{}
	hash := func(id string) uint64 { return uint64(len(id) % 3) }
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(step int) {
		t.Helper()
		if x.live != len(want) {
			t.Fatalf("step %d: %d live entries, want %d", step, x.live, len(want))
		}
		for id, slot := range want {
			e := x.find(hash(id), id)
			if e == nil || e.at.slot != slot || string(x.name(e)) != id {
				t.Fatalf("step %d: %s: found %+v, want slot %d", step, id, e, slot)
			}
		}
		if e := x.find(hash("absent"), "absent"); e != nil {
			t.Fatalf("step %d: found an id never inserted", step)
		}
	}
	for step := range 20000 {
		id := fmt.Sprint("customer-", rng.IntN(400))
		if _, ok := want[id]; ok && rng.IntN(2) == 0 {
			i := slices.IndexFunc(x.entries, func(e nameEntry) bool { return e.live && string(x.name(&e)) == id })
			x.removeHashed(uint32(i), hash(id))
			delete(want, id)
		} else {
			e, existed := x.insert(hash(id), id)
			if _, ok := want[id]; existed != ok {
				t.Fatalf("step %d: %s existed %v, want %v", step, id, existed, ok)
			}
			e.at.slot = uint32(step)
			want[id] = uint32(step)
		}
		if step%500 == 0 {
			x.compact()
			check(step)
		}
	}
	check(-1)
	if len(x.entries) > 400 {
		t.Errorf("%d entries for at most 400 ids: freed entries are not reused", len(x.entries))
	}
}

// Removing most ids lets compact give their bytes back.
func TestNameIndexCompacts(t *testing.T) {
	var v Views
	view := viewOf(t, "c", 1)
	for i := range 20000 {
		v.store(i%4, fmt.Sprintf("a-rather-long-customer-id-%06d", i), view)
	}
	var before int
	for i := range v.shards {
		before += len(v.shards[i].index.names)
	}
	v.forget(0)
	v.forget(1)
	v.forget(2)
	var after, heads, live int
	for i := range v.shards {
		after += len(v.shards[i].index.names)
		heads += len(v.shards[i].index.heads)
		live += v.shards[i].index.live
	}
	// forget unlinks by the hash of the stored id (maphash.Bytes), which
	// must be the hash the id was filed under (maphash.String): then no
	// hash is left pointing at a removed entry.
	if heads != live || live != 5000 {
		t.Errorf("%d hashes filed for %d live ids, want 5000 of each", heads, live)
	}
	// Each shard compacts once its unused ids are at least half of its
	// arena (and 4 KiB): here after the second forget.
	if after > before/2 {
		t.Errorf("%d bytes of ids kept for a quarter of %d bytes", after, before)
	}
	for i := range 20000 {
		c := fmt.Sprintf("a-rather-long-customer-id-%06d", i)
		if _, ok := v.Get(c); ok != (i%4 == 3) {
			t.Fatalf("%s known %v after forgetting its partition %d", c, ok, i%4)
		}
	}
}
