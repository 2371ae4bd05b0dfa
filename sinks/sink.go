// Package sinks writes rated usage where people and systems read it:
// ClickHouse for analysts, a local file for the embedded default, and the
// console for someone watching a demo.
package sinks

import (
	"context"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// Line is one charged unit type of one rated event.
type Line struct {
	Unit      schemas.Unit
	Quantity  int64
	UnitPrice rating.Price  // USD per unit, before markup
	Cost      rating.Amount // what the provider charges, USD
	Charge    rating.Amount // what the customer pays, USD, markup applied
}

// RatedEvent is one usage event with its rating.
type RatedEvent struct {
	Event           schemas.UsageEvent
	PriceKey        string // the price-list entry that priced the event
	Provider        string // that entry's provider (the event's may be empty)
	PriceVersion    string
	RateCardID      string
	RateCardVersion uint32
	Cost            rating.Amount
	Charge          rating.Amount
	Lines           []Line
	// Where the event was read, for tracing a row back to its message (for
	// a re-rated event: the rerate command's message).
	Topic     string
	Partition int
	Offset    int64
	RatedAt   time.Time
	// Run is the rating run that produced this rating: "" for live usage,
	// the replay's run id for an event re-rated by `tariff replay`
	// (pipeline.FormatCommand, kind rerate).
	Run string
}

// Granularity is the window length of a usage aggregate.
type Granularity uint8

const (
	GranularityHour Granularity = iota
	GranularityDay
)

// Aggregate is the running total of one customer's usage of one price entry
// and unit type in one window. It is absolute, not a delta: writing it
// twice, or writing an older total after a newer one with a lower Version,
// changes nothing once ClickHouse keeps the highest version.
type Aggregate struct {
	Granularity Granularity
	WindowStart time.Time
	CustomerID  string
	Provider    string
	PriceKey    string
	Unit        schemas.Unit
	Quantity    int64
	Events      int64
	Cost        rating.Amount
	Charge      rating.Amount
	// Partition and Version say which partition's state produced the total
	// and after which of its batches: versions grow with every batch.
	Partition int32
	Version   uint64
}

// Batch is the unit a sink writes.
type Batch struct {
	Events     []RatedEvent
	Aggregates []Aggregate
}

// Sink writes rated batches durably.
//
// WriteBatch blocks until the whole batch is durable or fails; it returns
// nil only when every row is stored, so the caller may then commit the
// source offsets. The batch belongs to the caller: a sink must not keep
// references to it after WriteBatch returns. A sink must tolerate the same
// batch written twice (redelivery after a crash) without changing any
// documented total.
type Sink interface {
	WriteBatch(ctx context.Context, b *Batch) error
	Close() error
}

// Multi writes each batch to several sinks in order; the first error wins
// and the batch is not acknowledged, so it is redelivered to all of them.
type Multi []Sink

func (m Multi) WriteBatch(ctx context.Context, b *Batch) error {
	for _, s := range m {
		if err := s.WriteBatch(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func (m Multi) Close() error {
	var first error
	for _, s := range m {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
