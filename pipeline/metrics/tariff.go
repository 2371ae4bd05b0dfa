package metrics

import (
	"runtime"
	runtimemetrics "runtime/metrics"
	"sync"
	"time"
)

// Label values of Tariff's families.
const (
	// KindUnpricedModel labels AlertsEmitted for the operator alert that a
	// model or unit has no price (balance alerts carry their own kind:
	// threshold, zero, recovery, paused, resumed).
	KindUnpricedModel = "unpriced_model"

	// Webhook delivery outcomes: delivered (2xx), retried (an attempt
	// failed and another follows), failed (refused, or attempts exhausted:
	// a price version stays queued for the next sync; an alert is given up
	// for that endpoint, and its delivery log says so).
	OutcomeDelivered = "delivered"
	OutcomeRetried   = "retried"
	OutcomeFailed    = "failed"

	// Price-sync results: changed (a new version was recorded), unchanged,
	// refused (a list that removes too many models, or invalid), failed (a
	// source could not be fetched or the store could not be written).
	SyncChanged   = "changed"
	SyncUnchanged = "unchanged"
	SyncRefused   = "refused"
	SyncFailed    = "failed"
)

// Tariff is every metric tariff exports. Build it once per process with
// NewTariff and hand it to the components; each keeps the series it
// updates (Source, and With on the vectors) from its constructor on.
type Tariff struct {
	Registry *Registry

	// Per input topic (label source, the topic's name): see Source. The
	// pipeline counts them itself, per message, from the counters Source
	// returned at partition start.
	Messages     *CounterVec
	Decoded      *CounterVec
	Rated        *CounterVec
	Deduplicated *CounterVec
	DeadLettered *CounterVec
	Unpriced     *CounterVec

	// Without labels: With() is the one series. They are vectors so that
	// a total kept elsewhere (pipeline.Stats) can back them (WithFunc).
	Batches     *CounterVec // batches applied
	Redelivered *CounterVec // messages skipped as already applied
	KeyMismatch *CounterVec // messages whose key is not their customer id
	Retries     *CounterVec // failed writes retried

	// ConsumerLag is per partition number (summed over input topics), set
	// at each scrape by a collector (see GaugeVec.Collect).
	ConsumerLag *GaugeVec
	// BatchSeconds is the time from fetching a batch to committing it.
	BatchSeconds *Histogram
	// FlushSeconds is one sink's WriteBatch, per sink.
	FlushSeconds *HistogramVec
	// ClickHouseRows counts rows inserted into ClickHouse per table
	// (rated_lines, usage_hourly, usage_daily). SinkErrors counts failed
	// writes per sink (sink="clickhouse": failed ClickHouse inserts).
	ClickHouseRows *CounterVec
	SinkErrors     *CounterVec

	AlertsEmitted     *CounterVec // label kind
	WebhookDeliveries *CounterVec // labels webhook (prices, alerts), outcome
	PriceSyncs        *CounterVec // label result

	// CheckUp is 1 when a readiness check last passed, 0 when it failed.
	CheckUp *GaugeVec

	mu      sync.Mutex
	sources map[string]*SourceCounters
}

// SourceCounters are the per-source series of one input topic.
type SourceCounters struct {
	Messages, Decoded, Rated, Deduplicated, DeadLettered, Unpriced *Counter
}

// NewTariff registers tariff's metrics on r, with build information and
// process and Go runtime gauges.
func NewTariff(r *Registry, version string) *Tariff {
	t := &Tariff{
		Registry:       r,
		Messages:       r.NewCounterVec("tariff_messages_total", "Input messages processed (redelivered ones already applied are not counted).", "source"),
		Decoded:        r.NewCounterVec("tariff_events_decoded_total", "Usage events decoded from input messages.", "source"),
		Rated:          r.NewCounterVec("tariff_events_rated_total", "Usage events rated and written.", "source"),
		Deduplicated:   r.NewCounterVec("tariff_events_deduplicated_total", "Usage events ignored because their idempotency key was already billed.", "source"),
		DeadLettered:   r.NewCounterVec("tariff_messages_dead_lettered_total", "Messages refused to the dead-letter topic (undecodable, impossible or unpriced).", "source"),
		Unpriced:       r.NewCounterVec("tariff_messages_unpriced_total", "Messages dead-lettered because a model or unit has no price (a subset of dead-lettered).", "source"),
		Batches:        r.NewCounterVec("tariff_batches_total", "Batches applied: written, recorded in the changelog and the state store, committed."),
		Redelivered:    r.NewCounterVec("tariff_messages_redelivered_total", "Messages skipped because an earlier run had already applied them."),
		KeyMismatch:    r.NewCounterVec("tariff_key_mismatch_total", "Messages whose Kafka key is not their events' customer id."),
		Retries:        r.NewCounterVec("tariff_write_retries_total", "Failed writes (sink, dead-letter topic, changelog, state store) that were retried."),
		ConsumerLag:    r.NewGaugeVec("tariff_consumer_lag_messages", "Messages not yet fetched, per partition number owned by this instance, summed over the input topics.", "partition"),
		BatchSeconds:   r.NewHistogram("tariff_batch_duration_seconds", "Time to apply one batch, from fetch to offset commit.", DefaultSeconds),
		FlushSeconds:   r.NewHistogramVec("tariff_flush_duration_seconds", "Time of one sink write of a batch.", DefaultSeconds, "sink"),
		ClickHouseRows: r.NewCounterVec("tariff_clickhouse_inserted_rows_total", "Rows inserted into ClickHouse, per table (a batch written again after a failure counts again).", "table"),
		SinkErrors:     r.NewCounterVec("tariff_sink_write_errors_total", "Sink writes that failed (the batch is retried, never skipped).", "sink"),
		AlertsEmitted: r.NewCounterVec("tariff_alerts_emitted_total",
			"Alerts emitted, by kind.", "kind"),
		WebhookDeliveries: r.NewCounterVec("tariff_webhook_deliveries_total",
			"Signed webhook delivery attempts, by webhook (prices, alerts) and outcome (delivered, retried, failed).", "webhook", "outcome"),
		PriceSyncs: r.NewCounterVec("tariff_price_syncs_total",
			"Price syncs by result (changed, unchanged, refused, failed).", "result"),
		CheckUp: r.NewGaugeVec("tariff_check_up", "1 when the readiness check last passed, 0 when it failed.", "check"),
		sources: make(map[string]*SourceCounters),
	}
	goVersion := runtime.Version()
	r.NewGaugeVec("tariff_build_info", "Always 1; the labels say which tariff this is.", "version", "go_version").With(version, goVersion).Set(1)
	start := float64(time.Now().UnixNano()) / 1e9
	r.NewGaugeFunc("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", func() float64 { return start })
	r.NewGaugeFunc("go_goroutines", "Goroutines that currently exist.", func() float64 { return float64(runtime.NumGoroutine()) })
	r.NewGaugeFunc("go_memory_heap_objects_bytes", "Bytes of heap memory occupied by live and not yet swept objects.", heapObjectsBytes)
	return t
}

// heapObjectsBytes reads the heap size from runtime/metrics, which, unlike
// runtime.ReadMemStats, does not stop the world.
func heapObjectsBytes() float64 {
	s := []runtimemetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	runtimemetrics.Read(s)
	if s[0].Value.Kind() != runtimemetrics.KindUint64 {
		return 0
	}
	return float64(s[0].Value.Uint64())
}

// Source returns the series of one input topic, creating them at zero. A
// pipeline stage calls it once per topic (at partition start) and keeps
// the result; the counters are then lock-free and allocation-free.
func (t *Tariff) Source(topic string) *SourceCounters {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sc := t.sources[topic]; sc != nil {
		return sc
	}
	sc := &SourceCounters{
		Messages: t.Messages.With(topic), Decoded: t.Decoded.With(topic), Rated: t.Rated.With(topic),
		Deduplicated: t.Deduplicated.With(topic), DeadLettered: t.DeadLettered.With(topic), Unpriced: t.Unpriced.With(topic),
	}
	t.sources[topic] = sc
	return sc
}
