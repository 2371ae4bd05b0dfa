package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// TestBuildStateRater: the first start seeds the state with prices.file;
// later starts load it and do not seed again.
func TestBuildStateRater(t *testing.T) {
	cfg := &Config{}
	cfg.State.Dir = filepath.Join(t.TempDir(), "state")
	cfg.Prices.File = writeTemp(t, "p.json", pricesOld)
	cfg.Prices.Markup = "10"
	cfg.SetDefaults()
	for i, wantSeed := range []bool{true, false} {
		store, err := pipeline.OpenStore(cfg.State, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		rater, syncer, desc, err := buildStateRater(cfg, store, nil, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(desc, "recorded") != wantSeed || !strings.Contains(desc, "1 price versions") {
			t.Errorf("start %d: %s", i+1, desc)
		}
		ev := schemas.UsageEvent{ID: "e", CustomerID: "c", Model: "gpt-x", Time: time.Now()}
		ev.Quantities[schemas.UnitInput] = 1000
		var out sinks.RatedEvent
		if err := rater.Rate(&ev, &out); err != nil || out.Charge.String() != "0.00275" { // 1000 × 2.5e-6 × 1.1
			t.Errorf("start %d: charge %s, %v", i+1, out.Charge, err)
		}
		if err := syncer.Run(t.Context(), syncer.Interval()); err != nil { // no sources: returns at once
			t.Fatal(err)
		}
		syncer.Close()
		store.Close()
	}
}
