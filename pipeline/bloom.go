package pipeline

import (
	"math"

	"github.com/cespare/xxhash/v2"
)

// bloom is a Bloom filter over idempotency keys: the fast negative path of
// deduplication. Almost every event is new, and for those the filter
// answers "never seen" without a Badger lookup; a "maybe" (a real
// duplicate, or a false positive about 1% of the time) goes to Badger,
// which decides. The filter only ever gains keys, so it can never make a
// seen key look new.
type bloom struct {
	bits []uint64
	k    uint32
	n    int // keys added
	cap  int // keys it was sized for at ~1% false positives
}

func newBloom(capacity int) *bloom {
	capacity = max(capacity, 1<<16)
	m := uint64(math.Ceil(-float64(capacity) * math.Log(0.01) / (math.Ln2 * math.Ln2)))
	words := (m + 63) / 64
	return &bloom{bits: make([]uint64, words), k: 7, cap: capacity}
}

// full reports whether the filter holds more keys than it was sized for;
// its false-positive rate then climbs, and it should be rebuilt larger.
func (b *bloom) full() bool { return b.n > b.cap }

func (b *bloom) add(key []byte) {
	h := xxhash.Sum64(key)
	h1, h2 := h&0xffffffff, h>>32|1
	m := uint64(len(b.bits) * 64)
	for i := uint64(0); i < uint64(b.k); i++ {
		bit := (h1 + i*h2) % m
		b.bits[bit/64] |= 1 << (bit % 64)
	}
	b.n++
}

func (b *bloom) mayContain(key []byte) bool {
	h := xxhash.Sum64(key)
	h1, h2 := h&0xffffffff, h>>32|1
	m := uint64(len(b.bits) * 64)
	for i := uint64(0); i < uint64(b.k); i++ {
		bit := (h1 + i*h2) % m
		if b.bits[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}
