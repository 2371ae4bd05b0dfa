package sinks

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

func testClickHouse(t testing.TB) (ClickHouseConfig, *ClickHouse) {
	t.Helper()
	cfg := ClickHouseConfig{Addr: testenv.ClickHouse(t), Database: testenv.Name(t, "t")}
	ctx := context.Background()
	if err := Migrate(ctx, cfg, zerolog.Nop()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	// A second run must be a no-op.
	if err := Migrate(ctx, cfg, zerolog.Nop()); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	s, err := NewClickHouse(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
		s.Close()
	})
	return cfg, s
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }
func amt(s string) rating.Amount   { return rating.MustAmount(s) }
func price(s string) rating.Price  { return rating.MustPrice(s) }

// TestClickHouseRedeliveryKeepsTotals writes the same batch twice, as a crash
// between the insert and the offset commit would, and checks that the
// documented totals count it once, to the last decimal digit.
func TestClickHouseRedeliveryKeepsTotals(t *testing.T) {
	_, s := testClickHouse(t)
	ctx := context.Background()
	ts := time.Date(2026, 11, 3, 10, 4, 5, 123e6, time.UTC)
	b := &Batch{Events: []RatedEvent{{
		Event: schemas.UsageEvent{
			ID: "ev-1", Time: ts, CustomerID: "acme", Provider: "anthropic", Model: "claude-sonnet-4-5",
			Dimensions: []schemas.Dimension{{Key: "team", Value: "search"}}, Source: schemas.SourceGateway,
		},
		PriceKey: "claude-sonnet-4-5", PriceVersion: "v1",
		Cost: amt("0.02025"), Charge: amt("0.026325"),
		Lines: []Line{
			{Unit: schemas.UnitInput, Quantity: 1200, UnitPrice: price("0.000003"), Cost: amt("0.0036"), Charge: amt("0.00468")},
			{Unit: schemas.UnitCacheWrite5m, Quantity: 2000, UnitPrice: price("0.00000375"), Cost: amt("0.0075"), Charge: amt("0.00975")},
			{Unit: schemas.UnitCachedInput, Quantity: 8000, UnitPrice: price("0.0000003"), Cost: amt("0.0024"), Charge: amt("0.00312")},
			{Unit: schemas.UnitOutput, Quantity: 450, UnitPrice: price("0.000015"), Cost: amt("0.00675"), Charge: amt("0.008775")},
		},
		Topic: "in", Partition: 2, Offset: 41, RatedAt: ts.Add(time.Second),
	}}}
	for i := 0; i < 2; i++ {
		if err := s.WriteBatch(ctx, b); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	var raw uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM rated_lines").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if raw != 8 {
		t.Fatalf("raw rows = %d, want 8 (both inserts stored before merge)", raw)
	}
	var rows uint64
	var cost, charge decimal.Decimal
	var tokens int64
	err := s.conn.QueryRow(ctx, `SELECT count(), sum(quantity), toString(sum(cost)), toString(sum(charge))
		FROM rated_lines FINAL WHERE customer_id = 'acme'`).Scan(&rows, &tokens, strScan{&cost}, strScan{&charge})
	if err != nil {
		t.Fatal(err)
	}
	if rows != 4 || tokens != 11650 || !cost.Equal(dec("0.02025")) || !charge.Equal(dec("0.026325")) {
		t.Fatalf("FINAL totals: rows=%d tokens=%d cost=%s charge=%s; want 4, 11650, 0.02025, 0.026325", rows, tokens, cost, charge)
	}
	var team string
	var ms int64
	if err := s.conn.QueryRow(ctx, `SELECT dim_values[indexOf(dim_keys, 'team')], event_ms FROM rated_lines FINAL LIMIT 1`).Scan(&team, &ms); err != nil {
		t.Fatal(err)
	}
	if team != "search" || ms != ts.UnixMilli() {
		t.Fatalf("team=%q event_ms=%d, want search, %d", team, ms, ts.UnixMilli())
	}
}

// strScan scans a ClickHouse String into a decimal, exactly.
type strScan struct{ d *decimal.Decimal }

func (s strScan) Scan(src any) error {
	v, err := decimal.NewFromString(src.(string))
	*s.d = v
	return err
}

// TestClickHouseAggregatesKeepNewestTotal writes running totals out of order
// and twice; the documented query must return the newest total only.
func TestClickHouseAggregatesKeepNewestTotal(t *testing.T) {
	_, s := testClickHouse(t)
	ctx := context.Background()
	hour := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	agg := func(g Granularity, start time.Time, qty int64, cost string, version uint64) Aggregate {
		c := amt(cost)
		ch, _ := c.Add(c) // any exact charge will do; keep it distinct from cost
		return Aggregate{Granularity: g, WindowStart: start, CustomerID: "acme", Provider: "openai", PriceKey: "gpt-4o",
			Unit: schemas.UnitInput, Quantity: qty, Events: int64(version), Cost: c, Charge: ch, Partition: 1, Version: version}
	}
	day := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	for _, b := range []Batch{
		{Aggregates: []Aggregate{agg(GranularityHour, hour, 100, "0.00025", 1), agg(GranularityDay, day, 100, "0.00025", 1)}},
		{Aggregates: []Aggregate{agg(GranularityHour, hour, 300, "0.00075", 2), agg(GranularityDay, day, 300, "0.00075", 2)}},
		{Aggregates: []Aggregate{agg(GranularityHour, hour, 100, "0.00025", 1), agg(GranularityDay, day, 100, "0.00025", 1)}}, // late copy
		{Aggregates: []Aggregate{agg(GranularityHour, hour, 300, "0.00075", 2)}},                                              // redelivered
	} {
		if err := s.WriteBatch(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	for _, table := range []string{"usage_hourly", "usage_daily"} {
		var qty int64
		var cost, charge string
		if err := s.conn.QueryRow(ctx, "SELECT sum(quantity), toString(sum(cost)), toString(sum(charge)) FROM "+table+" FINAL WHERE customer_id = 'acme'").
			Scan(&qty, &cost, &charge); err != nil {
			t.Fatal(err)
		}
		if qty != 300 || !dec(cost).Equal(dec("0.00075")) || !dec(charge).Equal(dec("0.0015")) {
			t.Fatalf("%s FINAL: quantity %d cost %s charge %s; want the newest total 300, 0.00075, 0.0015", table, qty, cost, charge)
		}
	}
}

// TestUnlinedRoundTrip: the units an event reports without a line come
// back from the unlined text as they went in.
func TestUnlinedRoundTrip(t *testing.T) {
	r := &RatedEvent{Lines: []Line{{Unit: schemas.UnitInput}, {Unit: schemas.UnitOutput}}}
	r.Event.Quantities[schemas.UnitInput] = 1200
	r.Event.Quantities[schemas.UnitOutput] = 330
	r.Event.Quantities[schemas.UnitRequests] = 1
	text := string(AppendUnlined(nil, r))
	if text != "requests=1" {
		t.Fatalf("unlined = %q, want requests=1", text)
	}
	got := map[string]int64{}
	if err := ParseUnlined(text, got); err != nil || len(got) != 1 || got["requests"] != 1 {
		t.Fatalf("parse %q = %v, %v", text, got, err)
	}
	if s := AppendUnlined(nil, &RatedEvent{}); len(s) != 0 {
		t.Fatalf("no quantities: %q", s)
	}
	for _, bad := range []string{"requests", "requests=x", "=1", "requests=-1", "requests=1,"} {
		if err := ParseUnlined(bad, map[string]int64{}); err == nil {
			t.Errorf("ParseUnlined(%q) accepted", bad)
		}
	}
}
