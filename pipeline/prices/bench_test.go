package prices

import (
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// benchWorld: the two real LiteLLM maps as two price versions, a default
// card at 30% and an assigned customer.
func benchWorld(b *testing.B) (*State, [2]*Catalog) {
	b.Helper()
	st := newState(b, openDB(b, ""))
	s := newSyncer(b, st)
	syncAt(b, s, time.Time{}, sharedData(b, "litellm_model_prices.2025-11-28.json"))
	c0 := st.Catalog()
	syncAt(b, s, mustTime("2026-02-21T12:00:00Z"), sharedData(b, "litellm_model_prices.json"))
	if _, err := st.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("30")}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		b.Fatal(err)
	}
	c1 := st.Catalog()
	c0 = &Catalog{Book: c0.Book, Cards: c1.Cards, DefaultCard: c1.DefaultCard}
	return st, [2]*Catalog{c0, c1}
}

func benchEvent() *schemas.UsageEvent {
	e := &schemas.UsageEvent{ID: "e", CustomerID: "acme", Provider: "anthropic", Model: "claude-sonnet-4-5", Time: mustTime("2026-03-01T00:00:00Z")}
	q := &e.Quantities
	q[schemas.UnitInput], q[schemas.UnitCacheWrite5m], q[schemas.UnitCachedInput], q[schemas.UnitOutput] = 1200, 2000, 8000, 450
	return e
}

// BenchmarkCardRater: one event with four token types through the
// per-customer rater (card lookup, rollout resolution, rating).
func BenchmarkCardRater(b *testing.B) {
	st, _ := benchWorld(b)
	r := st.NewRater()
	e := benchEvent()
	var out rating.Rated
	if err := r.RateEvent(e, &out); err != nil { // assigns the customer
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.RateEvent(e, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCatalogSwapUnderLoad publishes a new catalog (book and cards)
// while GOMAXPROCS-1 readers rate continuously, and reports what a reader
// sees: the slowest single event and the 99.99th percentile while swaps
// happen. A swap is one atomic pointer store, so readers never wait on it.
//
// The "load" variant runs the same readers while the loop only reads the
// catalog: the baseline for scheduler and GC noise on the machine.
func BenchmarkCatalogSwapUnderLoad(b *testing.B) {
	st, cats := benchWorld(b)
	b.Run("swap", func(b *testing.B) { swapUnderLoad(b, st, cats, true) })
	b.Run("load", func(b *testing.B) { swapUnderLoad(b, st, cats, false) })
}

func swapUnderLoad(b *testing.B, st *State, cats [2]*Catalog, swap bool) {
	readers := max(1, runtime.GOMAXPROCS(0)-1)
	var stop atomic.Bool
	var wg sync.WaitGroup
	lat := make([][]time.Duration, readers)
	var rated atomic.Int64
	for w := 0; w < readers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := st.NewRater()
			e := benchEvent()
			var out rating.Rated
			samples := make([]time.Duration, 0, 1<<20)
			var n int64
			for !stop.Load() {
				t0 := time.Now()
				if err := r.RateEvent(e, &out); err != nil {
					b.Error(err)
					return
				}
				if len(samples) < cap(samples) {
					samples = append(samples, time.Since(t0))
				}
				n++
			}
			lat[w] = samples
			rated.Add(n)
		}(w)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if swap {
			st.publish(cats[i&1])
		} else if st.Catalog() == nil {
			b.Fatal("no catalog")
		}
		i++
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)-1].Nanoseconds()), "max-event-ns")
	b.ReportMetric(float64(all[len(all)*9999/10000].Nanoseconds()), "p99.99-event-ns")
	b.ReportMetric(float64(rated.Load()), "events-rated")
}
