package pipeline

import "hash/maphash"

// nameIndex finds a customer's viewSlot by customer id without holding a
// pointer per customer: the ids are copied into one byte arena, their
// entries kept in one slice, and heads maps an id's 64-bit hash to its
// entry. Ids whose hashes collide are chained through the entries and
// told apart by comparing the ids themselves, so a collision costs a
// comparison, never a wrong answer. None of it holds pointers, so the
// garbage collector does not look inside however many customers there
// are. The zero nameIndex is empty and ready; the caller locks.
type nameIndex struct {
	heads   map[uint64]uint32 // hash -> index+1 of the chain's first entry
	entries []nameEntry
	names   []byte   // ids, back to back, each where its entry says
	unused  []uint32 // indexes of entries no id uses
	garbage int      // bytes of names no live entry uses
	live    int      // entries in use
}

type nameEntry struct {
	off, n uint32 // the id is names[off : off+n]
	next   uint32 // index+1 of the next entry of the same hash; 0: none
	at     viewSlot
	live   bool
}

func (x *nameIndex) name(e *nameEntry) []byte { return x.names[e.off : e.off+e.n] }

// find returns the entry of id, whose hash is h, or nil. It does not
// allocate.
func (x *nameIndex) find(h uint64, id string) *nameEntry {
	for i := x.heads[h]; i != 0; {
		e := &x.entries[i-1]
		if string(x.name(e)) == id {
			return e
		}
		i = e.next
	}
	return nil
}

// insert returns the entry of id, making one (with a zero viewSlot) when
// there is none; existed tells which. The entry stays valid until the
// next insert or compact.
func (x *nameIndex) insert(h uint64, id string) (e *nameEntry, existed bool) {
	if e := x.find(h, id); e != nil {
		return e, true
	}
	if x.heads == nil {
		x.heads = make(map[uint64]uint32)
	}
	var i uint32
	if n := len(x.unused); n > 0 {
		i = x.unused[n-1]
		x.unused = x.unused[:n-1]
	} else {
		i = uint32(len(x.entries))
		x.entries = append(x.entries, nameEntry{})
	}
	x.entries[i] = nameEntry{off: uint32(len(x.names)), n: uint32(len(id)), next: x.heads[h], live: true}
	x.names = append(x.names, id...)
	x.heads[h] = i + 1
	x.live++
	return &x.entries[i], false
}

// remove unlinks entry i and frees it.
func (x *nameIndex) remove(i uint32) {
	x.removeHashed(i, maphash.Bytes(viewSeed, x.name(&x.entries[i])))
}

// removeHashed is remove of an entry whose id hashes to h.
func (x *nameIndex) removeHashed(i uint32, h uint64) {
	e := &x.entries[i]
	switch head := x.heads[h]; {
	case head == i+1 && e.next == 0:
		delete(x.heads, h)
	case head == i+1:
		x.heads[h] = e.next
	default:
		for j := head; j != 0; j = x.entries[j-1].next {
			if p := &x.entries[j-1]; p.next == i+1 {
				p.next = e.next
				break
			}
		}
	}
	x.garbage += int(e.n)
	*e = nameEntry{}
	x.unused = append(x.unused, i)
	x.live--
}

// compact rewrites names without the ids of removed entries once they
// are most of it.
func (x *nameIndex) compact() {
	if x.garbage < 1<<12 || x.garbage < len(x.names)/2 {
		return
	}
	names := make([]byte, 0, len(x.names)-x.garbage)
	for i := range x.entries {
		e := &x.entries[i]
		if !e.live {
			continue
		}
		off := uint32(len(names))
		names = append(names, x.name(e)...)
		e.off = off
	}
	x.names, x.garbage = names, 0
}
