package sinks

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/schemas"
)

func testClickHouse(t *testing.T) (ClickHouseConfig, *ClickHouse) {
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
		Cost: dec("0.02025"), Charge: dec("0.026325"),
		Lines: []Line{
			{Unit: schemas.UnitInput, Quantity: 1200, UnitPrice: dec("0.000003"), Cost: dec("0.0036"), Charge: dec("0.00468")},
			{Unit: schemas.UnitCacheWrite5m, Quantity: 2000, UnitPrice: dec("0.00000375"), Cost: dec("0.0075"), Charge: dec("0.00975")},
			{Unit: schemas.UnitCachedInput, Quantity: 8000, UnitPrice: dec("0.0000003"), Cost: dec("0.0024"), Charge: dec("0.00312")},
			{Unit: schemas.UnitOutput, Quantity: 450, UnitPrice: dec("0.000015"), Cost: dec("0.00675"), Charge: dec("0.008775")},
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
