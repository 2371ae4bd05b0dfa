package loadgen

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/schemas"
)

// Observed reads what tariff wrote to table (rated_lines, usage_hourly or
// usage_daily) as Totals per customer, price entry and unit, read with
// FINAL as the documented queries read it, for comparison with a run's
// expected Totals.
func Observed(ctx context.Context, conn driver.Conn, table string) (Totals, error) {
	rows, err := conn.Query(ctx, "SELECT customer_id, price_key, unit, sum(quantity), toString(sum(cost)), toString(sum(charge)) FROM "+
		table+" FINAL GROUP BY customer_id, price_key, unit")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := Totals{}
	for rows.Next() {
		var cust, key, unit, cost, charge string
		var qty int64
		if err := rows.Scan(&cust, &key, &unit, &qty, &cost, &charge); err != nil {
			return nil, err
		}
		u, ok := schemas.ParseUnit(unit)
		if !ok {
			return nil, fmt.Errorf("unknown unit %q in %s", unit, table)
		}
		c, err := decimal.NewFromString(cost)
		if err != nil {
			return nil, fmt.Errorf("%s: cost %q: %w", table, cost, err)
		}
		ch, err := decimal.NewFromString(charge)
		if err != nil {
			return nil, fmt.Errorf("%s: charge %q: %w", table, charge, err)
		}
		out.Add(Key{CustomerID: cust, PriceKey: key, Unit: u}, qty, c, ch)
	}
	return out, rows.Err()
}
