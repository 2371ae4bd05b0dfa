package main

import (
	"fmt"
	"os"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
)

// parseMarkup reads a markup percentage ("30", "30%", "12.5").
func parseMarkup(s string) (rating.Markup, error) {
	m, err := rating.ParseMarkup(s)
	if err != nil {
		return rating.Markup{}, fmt.Errorf("%q: expected a percentage such as 30 or 12.5%%: %w", s, err)
	}
	return m, nil
}

// loadBook reads the configured price list (or the bundled one) into a
// one-version book. It returns a description for people.
func loadBook(file string) (*rating.Book, string, error) {
	data, source := bundled.LiteLLM, bundled.LiteLLMSource
	if file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, "", fmt.Errorf("read price list: %w", err)
		}
		source = file
	}
	snap, err := rating.ParsePriceList(data)
	if err != nil {
		return nil, "", fmt.Errorf("price list %s: %w", source, err)
	}
	// Entries with a price that cannot be held exactly are left out and
	// listed; rating an event of such a model then fails as unpriced
	// instead of rounding. Say so, but run with the rest of the list.
	rejected := len(snap.Rejected)
	v := &rating.Version{ID: bundled.VersionID(snap.Source.String(), data), Prices: snap}
	book, err := rating.NewBook(nil, v)
	if err != nil {
		return nil, "", fmt.Errorf("price list %s: %w", source, err)
	}
	desc := fmt.Sprintf("%s: %d models, version %s", source, len(snap.Prices), v.ID)
	if rejected > 0 {
		desc += fmt.Sprintf(" (%d entries refused: %v)", rejected, snap.Err())
	}
	return book, desc, nil
}

// buildRater returns the pipeline's rater over the configured prices and
// global markup, and a one-line description of the prices.
func buildRater(cfg *Config) (pipeline.Rater, string, error) {
	book, desc, err := loadBook(cfg.Prices.File)
	if err != nil {
		return nil, "", err
	}
	m, err := parseMarkup(cfg.Prices.Markup)
	if err != nil {
		return nil, "", fmt.Errorf("prices.markup: %w", err)
	}
	terms := rating.Terms{Markups: rating.MarkupLayers{Global: &rating.MarkupRules{Default: m}}}
	return pipeline.NewPriceRater(rating.NewBookRef(book), terms), desc + ", markup " + m.String(), nil
}
