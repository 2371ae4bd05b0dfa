package rating_test

import (
	"fmt"
	"os"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

func Example() {
	data, err := os.ReadFile("testdata/litellm_small.json")
	if err != nil {
		panic(err)
	}
	snap, err := rating.ParsePriceList(data) // LiteLLM or OpenRouter, detected
	if err != nil || snap.Err() != nil {
		panic(fmt.Sprint(err, snap.Err()))
	}
	book, _ := rating.NewBook(nil, &rating.Version{ID: "litellm-2026-02-21", Prices: snap})
	rater := rating.NewRater(rating.NewBookRef(book)) // the pipeline Stores new books here
	terms := &rating.Terms{Markups: rating.MarkupLayers{Global: &rating.MarkupRules{Default: rating.MustMarkup("30")}}}

	ev := &schemas.UsageEvent{ID: "e1", CustomerID: "c1", Time: time.Now(), Provider: "anthropic", Model: "claude-sonnet-4-5-20250929"}
	ev.Quantities[schemas.UnitInput], ev.Quantities[schemas.UnitCacheWrite5m] = 1200, 2000
	ev.Quantities[schemas.UnitCachedInput], ev.Quantities[schemas.UnitOutput], ev.Quantities[schemas.UnitReasoning] = 8000, 330, 120

	var out rating.Rated // reuse across events: Rate does not allocate
	if err := rater.Rate(ev, terms, &out); err != nil {
		panic(err)
	}
	fmt.Println(out.PriceKey, out.Cost, out.Charge, out.Charge.RoundForInvoice(2, rating.RoundHalfEven))
	for _, l := range out.Lines() {
		fmt.Println(l.Unit, l.Quantity, l.UnitPrice, l.Cost, l.Charge)
	}
	// Output:
	// claude-sonnet-4-5-20250929 0.02025 0.026325 0.03
	// input 1200 0.000003 0.0036 0.00468
	// cached_input 8000 0.0000003 0.0024 0.00312
	// cache_write_5m 2000 0.00000375 0.0075 0.00975
	// output 330 0.000015 0.00495 0.006435
	// reasoning 120 0.000015 0.0018 0.00234
}
