// Package sinks writes rated usage where people and systems read it:
// ClickHouse for analysts, a local file for the embedded default, and the
// console for someone watching a demo.
package sinks

import (
	"context"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/schemas"
)

// Line is one charged unit type of one rated event.
type Line struct {
	Unit      schemas.Unit
	Quantity  int64
	UnitPrice decimal.Decimal // USD per unit, before markup
	Cost      decimal.Decimal // what the provider charges, USD
	Charge    decimal.Decimal // what the customer pays, USD, markup applied
}

// RatedEvent is one usage event with its rating.
type RatedEvent struct {
	Event           schemas.UsageEvent
	PriceKey        string // the price-list entry that priced the event
	PriceVersion    string
	RateCardID      string
	RateCardVersion uint32
	Cost            decimal.Decimal
	Charge          decimal.Decimal
	Lines           []Line
	// Where the event was read, for tracing a row back to its message.
	Topic     string
	Partition int
	Offset    int64
	RatedAt   time.Time
}

// Batch is the unit a sink writes.
type Batch struct {
	Events []RatedEvent
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
