package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// errRejected: some input was refused; the reasons are already printed.
var errRejected = errors.New("some events were rejected")

func cmdRate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rate", `Rate usage events by hand: read events in any supported format from files
or standard input ("-"), and write one JSON object per event to standard
output with event_id, customer_id, provider, model, price_key, cost and charge
(exact decimal strings, USD) and lines (type, quantity, unit_price, cost,
charge). A FILE may hold one event, a JSON array of events or one per line.
A refused event is reported on standard error with its file, position and
reason, and the exit status is then 1.`, "[FILE...]", stderr)
	prices := fs.String("prices", "", "price list: a LiteLLM price map or an OpenRouter model list, detected from its content (default: the bundled LiteLLM map)")
	markup := fs.String("markup", "0", "markup in percent over provider cost, e.g. 30")
	format := fs.String("format", "auto", "input format: auto, gateway, litellm, openrouter or meter")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m, err := parseMarkup(*markup)
	if err != nil {
		return fmt.Errorf("--markup: %w", err)
	}
	dec, err := schemas.DecoderFor(*format, schemas.DecodeOptions{})
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	book, _, err := loadBook(*prices)
	if err != nil {
		return err
	}
	rater := pipeline.NewPriceRater(rating.NewBookRef(book),
		rating.Terms{Markups: rating.MarkupLayers{Global: &rating.MarkupRules{Default: m}}})

	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	enc := json.NewEncoder(stdout)
	var events []schemas.UsageEvent
	var out sinks.RatedEvent
	rejected := 0
	now := time.Now()
	for _, f := range files {
		docs, err := readDocs(f)
		if err != nil {
			return err
		}
		name := f
		if f == "-" {
			name = "standard input"
		}
		for i, doc := range docs {
			where := fmt.Sprintf("%s: document %d", name, i+1)
			events, err = dec.Decode(events[:0], doc)
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", where, err)
				rejected++
				continue
			}
			for j := range events {
				ev := &events[j]
				pos := where
				if len(events) > 1 {
					pos = fmt.Sprintf("%s, event %d", where, j+1)
				}
				if err := ev.Validate(now); err != nil {
					fmt.Fprintf(stderr, "%s: %v\n", pos, err)
					rejected++
					continue
				}
				if err := rater.Rate(ev, &out); err != nil {
					fmt.Fprintf(stderr, "%s: %v\n", pos, err)
					rejected++
					continue
				}
				if err := enc.Encode(sinks.ToJSON(&out)); err != nil {
					return err
				}
			}
		}
	}
	if rejected > 0 {
		fmt.Fprintf(stderr, "%d rejected\n", rejected)
		return errRejected
	}
	return nil
}
