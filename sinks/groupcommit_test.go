package sinks

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many writers at once: every batch is written exactly once, each caller
// returns only after the write holding its batch ended and with that
// write's error, writes never overlap, and writers arriving during a
// write share the next one.
func TestGroupCommit(t *testing.T) {
	var g groupCommit
	const writers, rounds = 8, 50
	var (
		mu       sync.Mutex
		written  = map[*Batch]int{}
		failed   = map[*Batch]bool{}
		inWrite  atomic.Int32
		writes   atomic.Int32
		grouped  atomic.Int32
		overlaps atomic.Int32
	)
	boom := errors.New("boom")
	write := func(batches []*Batch) error {
		if inWrite.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer inWrite.Add(-1)
		writes.Add(1)
		if len(batches) > 1 {
			grouped.Add(1)
		}
		time.Sleep(200 * time.Microsecond)
		fail := writes.Load()%7 == 0
		mu.Lock()
		for _, b := range batches {
			written[b]++
			failed[b] = fail
		}
		mu.Unlock()
		if fail {
			return boom
		}
		return nil
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				b := &Batch{Aggregates: []Aggregate{{CustomerID: fmt.Sprint(w, "-", r)}}}
				err := g.do(b, write)
				mu.Lock()
				n, f := written[b], failed[b]
				mu.Unlock()
				if n != 1 {
					t.Errorf("batch %d-%d written %d times when its call returned", w, r, n)
				}
				if f != (err != nil) || err != nil && !errors.Is(err, boom) {
					t.Errorf("batch %d-%d: error %v, its write failed: %v", w, r, err, f)
				}
			}
		})
	}
	wg.Wait()
	if len(written) != writers*rounds {
		t.Errorf("%d batches written, want %d", len(written), writers*rounds)
	}
	if overlaps.Load() != 0 {
		t.Errorf("%d writes overlapped another", overlaps.Load())
	}
	if grouped.Load() == 0 || writes.Load() >= writers*rounds {
		t.Errorf("%d writes for %d batches, %d of them grouped: writers did not share writes", writes.Load(), writers*rounds, grouped.Load())
	}
	if g.leading || len(g.queue) != 0 {
		t.Errorf("left leading=%v with %d queued", g.leading, len(g.queue))
	}
}
