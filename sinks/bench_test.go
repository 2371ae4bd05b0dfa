package sinks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/schemas"
)

// BenchmarkClickHouseBatchEncode is the sink's work for a chunk of an
// insert into rated_lines short of sending it: the rows of 682 gateway
// events (three lines each, two dimensions; insertChunkRows rows) built
// column by column and appended to a fresh clickhouse-go insert; the
// insert's prepare round trip and its abort are not timed. (In the sink,
// the chunks after an insert's first reuse its column buffers, so this
// is the costlier case.) It needs a ClickHouse
// server (TARIFF_TEST_CLICKHOUSE) for the insert's column types. One op
// is one event.
func BenchmarkClickHouseBatchEncode(b *testing.B) {
	_, s := testClickHouse(b)
	const chunk = insertChunkRows / 3
	at := time.Date(2026, 11, 3, 10, 4, 5, 123e6, time.UTC)
	in := &Batch{}
	for i := range chunk {
		in.Events = append(in.Events, RatedEvent{
			Event: schemas.UsageEvent{
				ID: fmt.Sprintf("gw-%08d-256e-091f-0752-525224db44b9", i), Time: at, CustomerID: fmt.Sprintf("cust-%06d", i%1000),
				Provider: "openai", Model: "gpt-4o-mini", Source: schemas.SourceGateway,
				Dimensions: []schemas.Dimension{{Key: "team", Value: "search"}, {Key: "project", Value: "falcon"}},
			},
			PriceKey: "gpt-4o-mini", PriceVersion: "litellm-20261127T000000Z-c0ad52a9e750", Provider: "openai",
			Topic: "usage.gateway", Partition: 1, Offset: int64(i), RatedAt: at,
			Lines: []Line{
				{Unit: schemas.UnitInput, Quantity: 1076, UnitPrice: price("0.00000015"), Cost: amt("0.0001614"), Charge: amt("0.00020982")},
				{Unit: schemas.UnitCachedInput, Quantity: 800, UnitPrice: price("0.000000075"), Cost: amt("0.00006"), Charge: amt("0.000078")},
				{Unit: schemas.UnitOutput, Quantity: 135, UnitPrice: price("0.0000006"), Cost: amt("0.000081"), Charge: amt("0.0001053")},
			},
		})
	}
	ctx := context.Background()
	c := new(lineColumns)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += chunk {
		b.StopTimer()
		ins, err := s.conn.PrepareBatch(ctx, "INSERT INTO rated_lines ("+ratedLineColumns+")")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c.reset()
		for i := range min(chunk, b.N-n) {
			c.add(&in.Events[i])
		}
		if err := c.appendTo(ins); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		ins.Abort()
		b.StartTimer()
	}
}
