package ops

import (
	"context"
	"time"

	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/sinks"
)

// MeasuredSink wraps a sink with its flush latency and failed writes
// (tariff_flush_duration_seconds{sink}, tariff_sink_write_errors_total{sink})
// and, for ClickHouse, the rows each table received
// (tariff_clickhouse_inserted_rows_total{table}). It changes nothing else:
// the batch and its ownership pass straight through.
type MeasuredSink struct {
	sinks.Sink
	latency *metrics.Histogram
	errors  *metrics.Counter
	// Nil unless the sink is ClickHouse.
	lines, hourly, daily *metrics.Counter
}

// MeasureSink wraps s, naming it name in the series ("file", "console").
// The series are created here, so WriteBatch allocates nothing.
func MeasureSink(name string, s sinks.Sink, m *metrics.Tariff) *MeasuredSink {
	return &MeasuredSink{Sink: s, latency: m.FlushSeconds.With(name), errors: m.SinkErrors.With(name)}
}

// MeasureClickHouse wraps the ClickHouse sink: MeasureSink as
// "clickhouse", and the rows it inserts per table (a rated event is one
// rated_lines row per unit line; an aggregate is one row of usage_hourly
// or usage_daily).
func MeasureClickHouse(s sinks.Sink, m *metrics.Tariff) *MeasuredSink {
	ms := MeasureSink("clickhouse", s, m)
	ms.lines = m.ClickHouseRows.With("rated_lines")
	ms.hourly = m.ClickHouseRows.With("usage_hourly")
	ms.daily = m.ClickHouseRows.With("usage_daily")
	return ms
}

// WriteBatch implements sinks.Sink.
func (s *MeasuredSink) WriteBatch(ctx context.Context, b *sinks.Batch) error {
	t := time.Now()
	err := s.Sink.WriteBatch(ctx, b)
	s.latency.ObserveSeconds(int64(time.Since(t)))
	if err != nil {
		s.errors.Inc()
		return err
	}
	if s.lines == nil {
		return nil
	}
	var lines, hourly, daily uint64
	for i := range b.Events {
		lines += uint64(len(b.Events[i].Lines))
	}
	for i := range b.Aggregates {
		if b.Aggregates[i].Granularity == sinks.GranularityHour {
			hourly++
		} else {
			daily++
		}
	}
	s.lines.Add(lines)
	s.hourly.Add(hourly)
	s.daily.Add(daily)
	return nil
}

// Unwrap returns the measured sink.
func (s *MeasuredSink) Unwrap() sinks.Sink { return s.Sink }
