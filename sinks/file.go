package sinks

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// RatedJSON is the JSON shape of one rated event, used by the file sink and
// by `tariff rate`. Amounts are decimal strings in USD, never numbers, so no
// reader ever parses money as a float.
type RatedJSON struct {
	EventID         string            `json:"event_id"`
	Time            string            `json:"time"`
	CustomerID      string            `json:"customer_id"`
	Dimensions      map[string]string `json:"dimensions,omitempty"`
	Source          string            `json:"source,omitempty"`
	Provider        string            `json:"provider"`
	Model           string            `json:"model"`
	ServiceTier     string            `json:"service_tier"`
	PriceKey        string            `json:"price_key"`
	PriceVersion    string            `json:"price_version,omitempty"`
	RateCardID      string            `json:"rate_card_id,omitempty"`
	RateCardVersion uint32            `json:"rate_card_version,omitempty"`
	Cost            string            `json:"cost"`
	Charge          string            `json:"charge"`
	ReportedCost    string            `json:"reported_cost,omitempty"`
	// RatingRun is the re-rating run that produced this line (RatedEvent.Run);
	// absent for live usage. In the file a re-rated event is a new line:
	// the last line of an event_id is the one in force.
	RatingRun string     `json:"rating_run,omitempty"`
	Lines     []LineJSON `json:"lines"`
}

// LineJSON is the JSON shape of one line.
type LineJSON struct {
	Type      string `json:"type"`
	Quantity  int64  `json:"quantity"`
	UnitPrice string `json:"unit_price"`
	Cost      string `json:"cost"`
	Charge    string `json:"charge"`
}

// ToJSON converts a rated event to its JSON shape.
func ToJSON(r *RatedEvent) RatedJSON {
	ev := &r.Event
	out := RatedJSON{
		EventID:         ev.ID,
		Time:            ev.Time.UTC().Format(time.RFC3339Nano),
		CustomerID:      ev.CustomerID,
		Source:          string(ev.Source),
		Provider:        ev.Provider,
		Model:           ev.Model,
		ServiceTier:     ev.Tier.String(),
		PriceKey:        r.PriceKey,
		PriceVersion:    r.PriceVersion,
		RateCardID:      r.RateCardID,
		RateCardVersion: r.RateCardVersion,
		Cost:            r.Cost.String(),
		Charge:          r.Charge.String(),
		RatingRun:       r.Run,
		Lines:           make([]LineJSON, 0, len(r.Lines)),
	}
	if ev.ReportedCost.Valid {
		out.ReportedCost = ev.ReportedCost.Decimal.String()
	}
	if len(ev.Dimensions) > 0 {
		out.Dimensions = make(map[string]string, len(ev.Dimensions))
		for _, d := range ev.Dimensions {
			out.Dimensions[d.Key] = d.Value
		}
	}
	for _, l := range r.Lines {
		out.Lines = append(out.Lines, LineJSON{
			Type:      l.Unit.String(),
			Quantity:  l.Quantity,
			UnitPrice: l.UnitPrice.String(),
			Cost:      l.Cost.String(),
			Charge:    l.Charge.String(),
		})
	}
	return out
}

// File appends rated events as JSON lines to a local file: the sink of the
// embedded default, readable with `tail -f`. It fsyncs each batch before
// returning, so an acknowledged batch survives a crash. A batch redelivered
// after a crash is appended again; readers that total the file must key on
// event_id and type (ClickHouse does this for the production path).
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
	w    *bufio.Writer
}

// NewFile opens (creating if needed) path for appending.
func NewFile(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open rated-usage file: %w", err)
	}
	return &File{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// Path returns the file's path.
func (s *File) Path() string { return s.path }

func (s *File) WriteBatch(_ context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	enc := json.NewEncoder(s.w)
	for i := range b.Events {
		if err := enc.Encode(ToJSON(&b.Events[i])); err != nil {
			return fmt.Errorf("write %s: %w", s.path, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	return nil
}

func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.w.Flush(); err != nil {
		s.f.Close()
		return err
	}
	return s.f.Close()
}

// Console prints one short line per rated event for a person watching, up
// to a rate; beyond it, it prints a count instead, so a flood of events does
// not drown the terminal. It is not durable and not for production.
type Console struct {
	mu      sync.Mutex
	w       io.Writer
	max     int // lines per second
	window  time.Time
	printed int
	skipped int
}

// NewConsole prints to w at most maxPerSecond event lines a second.
func NewConsole(w io.Writer, maxPerSecond int) *Console {
	return &Console{w: w, max: maxPerSecond}
}

func (c *Console) WriteBatch(_ context.Context, b *Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range b.Events {
		now := time.Now()
		if now.Sub(c.window) >= time.Second {
			if c.skipped > 0 {
				fmt.Fprintf(c.w, "  ... and %d more rated events\n", c.skipped)
			}
			c.window, c.printed, c.skipped = now, 0, 0
		}
		if c.printed >= c.max {
			c.skipped++
			continue
		}
		c.printed++
		r := &b.Events[i]
		var tokens int64
		for _, l := range r.Lines {
			if l.Unit.IsToken() {
				tokens += l.Quantity
			}
		}
		fmt.Fprintf(c.w, "rated %-12s %-28s %8d tokens  cost $%-12s charge $%s\n",
			r.Event.CustomerID, r.Event.Model, tokens, r.Cost.String(), r.Charge.String())
	}
	return nil
}

func (c *Console) Close() error { return nil }
