package rating

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tariff-dev/tariff/schemas"
)

func fullBook(tb testing.TB) *Book {
	tb.Helper()
	return bookOf(tb, liteLLM(tb, "litellm_model_prices.json"))
}

var benchTerms = &Terms{CardID: "default", CardVersion: 1,
	Markups: MarkupLayers{Global: &MarkupRules{Default: MustMarkup("30")}}}

func fourTokenEvent() *schemas.UsageEvent {
	return event("anthropic", "claude-sonnet-4-5", qty{in: 1200, cw5: 2000, cr: 8000, out: 450})
}

// TestRateZeroAlloc pins the hot-path promise: rating allocates nothing,
// on the fast lookup path and on the normalized/dated path.
func TestRateZeroAlloc(t *testing.T) {
	b := fullBook(t)
	var r Rated
	for _, ev := range []*schemas.UsageEvent{
		fourTokenEvent(),
		event("anthropic", "Claude-Sonnet-4.5-20991231", qty{in: 1, out: 1}),
		event("azure", "gpt-4o", qty{in: 1, out: 1}),
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if err := b.Rate(ev, benchTerms, &r); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per Rate", ev.Model, allocs)
		}
	}
}

func BenchmarkRate(b *testing.B) {
	book := fullBook(b)
	rater := NewRater(NewBookRef(book))
	ev := fourTokenEvent()
	var r Rated
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := rater.Rate(ev, benchTerms, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRateParallel(b *testing.B) {
	rater := NewRater(NewBookRef(fullBook(b)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ev := fourTokenEvent()
		var r Rated
		for pb.Next() {
			if err := rater.Rate(ev, benchTerms, &r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	s := liteLLM(b, "litellm_model_prices.json")
	for _, c := range []struct{ name, provider, model string }{
		{"exact", "anthropic", "claude-sonnet-4-5"},
		{"provider-prefixed", "azure", "gpt-4o"},
		{"normalized-dated", "anthropic", "Claude-Sonnet-4.5-20991231"},
		{"miss", "nobody", "no-such-model"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = s.Lookup(c.provider, c.model, nil)
			}
		})
	}
}

// BenchmarkSwap measures publishing a new book while 4 readers rate
// continuously: the pause a reader can see is one atomic pointer load.
func BenchmarkSwap(b *testing.B) {
	books := []*Book{fullBook(b), bookOf(b, liteLLM(b, "litellm_model_prices.2025-11-28.json"))}
	ref := NewBookRef(books[0])
	rater := NewRater(ref)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := fourTokenEvent()
			var r Rated
			for !stop.Load() {
				_ = rater.Rate(ev, benchTerms, &r)
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		ref.Store(books[i&1])
		i++
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
}

func BenchmarkParseLiteLLM(b *testing.B) {
	data := sharedData(b, "litellm_model_prices.json")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseLiteLLM(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseOpenRouter(b *testing.B) {
	data := sharedData(b, "openrouter_models.2026-08-19.json")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseOpenRouter(data); err != nil {
			b.Fatal(err)
		}
	}
}
