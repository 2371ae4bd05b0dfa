// Package pipeline runs the stream: for each owned partition, fetch a batch
// from Kafka, decode, validate, deduplicate, rate, write to the sinks,
// record the state in the changelog topic and Badger, and only then commit
// the offsets to Kafka.
package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

// Rater rates one validated event into out, reusing out's storage. It must
// be safe to call while prices are swapped. One Rater per goroutine. A
// Rater that is also a CardRater (assign.go) is given each customer's
// rate-card assignments from partition state instead.
type Rater interface {
	Rate(ev *schemas.UsageEvent, out *sinks.RatedEvent) error
}

// Fetcher hands out batches of one partition number across input topics.
type Fetcher interface {
	Fetch(ctx context.Context, b *sources.Batch) error
}

// DeadLetters stores refused messages durably.
type DeadLetters interface {
	Write(ctx context.Context, recs []sinks.DeadLetter) error
}

// StateLog is where a batch's state mutations go before Badger, so another
// instance can rebuild the partition (see Changelog). Append returns the
// record's offset.
type StateLog interface {
	Append(ctx context.Context, partition int, record []byte) (int64, error)
}

// Stats are the pipeline's running counters, safe to read concurrently.
type Stats struct {
	Batches      atomic.Int64
	Messages     atomic.Int64 // input messages processed (not counting skipped)
	Redelivered  atomic.Int64 // messages skipped because they were already applied
	Events       atomic.Int64 // events decoded
	Rated        atomic.Int64 // events rated and written
	Duplicates   atomic.Int64 // events ignored as already seen
	DeadLettered atomic.Int64 // messages sent to the dead-letter topic
	Unpriced     atomic.Int64 // messages dead-lettered because a model or unit has no price
	KeyMismatch  atomic.Int64 // messages whose Kafka key is not their events' customer id
	Reconciled   atomic.Int64 // events whose source reported its own cost, compared with ours
	CostMismatch atomic.Int64 // of those, events where the difference exceeded the tolerance
	Retries      atomic.Int64 // failed writes retried
	Alerts       atomic.Int64 // balance alerts emitted
}

// Config tunes the pipeline.
type Config struct {
	// RetryMin and RetryMax bound the backoff when a sink, the changelog or
	// the state store fails. Defaults 200ms and 30s.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// ReconcileTolerance is how far, in USD, a partner's reported cost
	// (LiteLLM response_cost, OpenRouter usage.cost) may differ from
	// tariff's before the event is counted and logged as a mismatch. The
	// partner's figure is only compared, never billed. Default "0.000001".
	ReconcileTolerance string `yaml:"reconcile_tolerance"`
	// TickInterval is how often `tariff run` writes a tick (see
	// FormatCommand) to each partition it owns of the command topic, so
	// that grant expiry, scheduled plan changes and period ends reach
	// accounts that send no usage: it bounds how late such an alert or a
	// period close can be. Default 5s; 0 turns ticks off (another process
	// must then write them). Unused when no input topic has format command.
	TickInterval *time.Duration `yaml:"tick_interval"`
}

// DefaultTickInterval is the default of Config.TickInterval.
const DefaultTickInterval = 5 * time.Second

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() { c.setDefaults() }

func (c *Config) setDefaults() {
	if c.RetryMin == 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.ReconcileTolerance == "" {
		c.ReconcileTolerance = "0.000001"
	}
	if c.TickInterval == nil {
		d := DefaultTickInterval
		c.TickInterval = &d
	}
}

// Validate reports every bad field at once.
func (c *Config) Validate() error {
	var errs []error
	if c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("pipeline.retry_min/retry_max: %s/%s: expected 0 <= retry_min <= retry_max", c.RetryMin, c.RetryMax))
	}
	if c.ReconcileTolerance != "" {
		if d, err := decimal.NewFromString(c.ReconcileTolerance); err != nil || d.IsNegative() {
			errs = append(errs, fmt.Errorf("pipeline.reconcile_tolerance: %q: expected a non-negative decimal amount in USD, e.g. 0.000001", c.ReconcileTolerance))
		}
	}
	if d := c.TickInterval; d != nil && (*d < 0 || (*d > 0 && *d < minTickInterval)) {
		errs = append(errs, fmt.Errorf("pipeline.tick_interval: %s: expected 0 (off) or at least %s (default %s)", *d, minTickInterval, DefaultTickInterval))
	}
	return errors.Join(errs...)
}

// Deps are the parts a partition processor works with. Sinks, the
// dead-letter writer, the state log and the store are shared by all
// partitions and safe for concurrent use; Rater is per processor.
type Deps struct {
	Formats  map[string]string          // input topic -> decoder format
	Decoders map[string]schemas.Decoder // format -> decoder
	Sink     sinks.Sink
	DLQ      DeadLetters
	Log      StateLog
	Store    *Store
	Alerts   Alerts // balance alerts, and operator alerts if it is also OperatorAlerts; nil drops them (tests)
	Views    *Views // committed account views for entitlement; nil: none
	Stats    *Stats
	// Metrics receives the per-source counters (label source: the input
	// topic), batch latency and alerts emitted. Nil: none (tests).
	Metrics *metrics.Tariff
	Logger  zerolog.Logger
	Now     func() time.Time
}

// Processor applies the batches of one partition number. It is driven by
// one goroutine.
type Processor struct {
	cfg       Config
	partition int
	gen       int32
	deps      Deps
	rater     Rater
	commit    func(next map[string]int64) error
	log       zerolog.Logger
	tolerance decimal.Decimal

	// offsets holds, per topic, the next offset to apply, as stored.
	offsets map[string]int64
	// seq numbers the partition's applied batches; it versions aggregates.
	seq       uint64
	seqLoaded bool
	agg       *aggregator
	bal       *balances
	// asg holds the customers' rate-card assignments (assign.go); nil
	// when the rater has no rate cards.
	asg *assignments
	// seen is the fast negative path of deduplication (see bloom).
	seen *bloom

	// sources are the per-source counters of each input topic, fetched
	// once (metrics.Tariff.Source takes a lock); src is the message in
	// hand's. A scan of this short slice per message costs less than a
	// map lookup and never allocates.
	sources      []topicCounters
	src          *metrics.SourceCounters
	batchSeconds *metrics.Histogram
	// alertKinds counts balance alerts, indexed by balance.AlertKind.
	alertKinds []*metrics.Counter
	// unpriced drives the unpriced_model operator alert (see
	// unpricedAlerts); nil when deps.Alerts cannot take operator alerts.
	unpriced *unpricedAlerts

	// Per-batch scratch, reused across batches (reset, not reallocated).
	batch   sources.Batch
	events  []schemas.UsageEvent
	out     sinks.Batch
	dead    []sinks.DeadLetter
	muts    []Mutation
	next    map[string]int64
	inBatch map[[2]string]struct{}
	keys    [][2]string // idempotency keys of the message in hand
	key     []byte
	record  []byte
	stamp   [8]byte
}

// NewProcessor builds the processor of partition in generation gen,
// resuming at offsets (per topic, the next offset to apply). commit
// commits Kafka offsets after a batch is durable; its failure is logged,
// not fatal.
func NewProcessor(cfg Config, partition int, gen int32, offsets map[string]int64, rater Rater, deps Deps, commit func(map[string]int64) error) *Processor {
	cfg.setDefaults()
	tol, err := decimal.NewFromString(cfg.ReconcileTolerance)
	if err != nil {
		tol = decimal.New(1, -6) // Validate refuses a bad value before this
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Stats == nil {
		deps.Stats = &Stats{}
	}
	p := &Processor{
		cfg: cfg, partition: partition, gen: gen, deps: deps, rater: rater, commit: commit, tolerance: tol,
		log:     deps.Logger.With().Str("component", "pipeline").Int("partition", partition).Logger(),
		offsets: offsets,
		next:    make(map[string]int64),
		inBatch: make(map[[2]string]struct{}),
		agg:     newAggregator(partition, deps.Store.Window()),
		bal:     newBalances(partition, deps.Store.Window()),
		src:     &noSourceCounters,
	}
	if cr, ok := rater.(CardRater); ok {
		p.asg = newAssignments(partition, cr)
	}
	if m := deps.Metrics; m != nil {
		for topic := range deps.Formats {
			p.sources = append(p.sources, topicCounters{topic, m.Source(topic)})
		}
		p.batchSeconds = m.BatchSeconds
	}
	if w, ok := deps.Alerts.(OperatorAlerts); ok {
		p.unpriced = &unpricedAlerts{w: w, models: make(map[unpricedModelKey]*unpricedEntry)}
		if deps.Metrics != nil {
			p.unpriced.emitted = deps.Metrics.AlertsEmitted.With(metrics.KindUnpricedModel)
		}
	}
	return p
}

// topicCounters are one input topic's per-source counters.
type topicCounters struct {
	topic string
	c     *metrics.SourceCounters
}

// noSourceCounters counts nothing (its counters are nil): the processor's
// counters when it has no metrics.
var noSourceCounters metrics.SourceCounters

// sourceOf returns topic's per-source counters.
func (p *Processor) sourceOf(topic string) *metrics.SourceCounters {
	for i := range p.sources {
		if p.sources[i].topic == topic {
			return p.sources[i].c
		}
	}
	if p.deps.Metrics == nil {
		return &noSourceCounters
	}
	// A topic missing from Formats: handle refuses it as a bug, but count
	// it under its own name first.
	c := p.deps.Metrics.Source(topic)
	p.sources = append(p.sources, topicCounters{topic, c})
	return c
}

// alertCounter returns the AlertsEmitted series of a balance alert kind
// (nil without metrics), made on the first alert of that kind.
func (p *Processor) alertCounter(k balance.AlertKind) *metrics.Counter {
	if p.deps.Metrics == nil {
		return nil
	}
	for int(k) >= len(p.alertKinds) {
		p.alertKinds = append(p.alertKinds, nil)
	}
	if p.alertKinds[k] == nil {
		p.alertKinds[k] = p.deps.Metrics.AlertsEmitted.With(k.String())
	}
	return p.alertKinds[k]
}

// Run processes batches from src until ctx ends. When ctx ends it finishes
// the batch in hand (write, store, commit) before returning, unless a
// write keeps failing, in which case it gives up uncommitted: the batch is
// applied again by whoever owns the partition next. Either way nothing is
// lost or counted twice.
func (p *Processor) Run(ctx context.Context, src Fetcher) error {
	for {
		if err := src.Fetch(ctx, &p.batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Warn().Err(err).Msg("fetch failed; retrying")
			if !Sleep(ctx, p.cfg.RetryMin) {
				return nil
			}
			continue
		}
		if err := p.process(context.WithoutCancel(ctx), ctx); err != nil {
			if ctx.Err() != nil {
				p.log.Info().Err(err).Msg("stopped with a batch not applied; it will be applied by the next owner")
				return nil
			}
			return err
		}
	}
}

// process applies p.batch. work is the context for I/O that must finish;
// stop tells retries to give up.
func (p *Processor) process(work, stop context.Context) error {
	started := p.deps.Now()
	if !p.seqLoaded {
		seq, err := p.deps.Store.Seq(p.partition)
		if err != nil {
			return err
		}
		p.seq, p.seqLoaded = seq, true
	}
	if p.seen == nil || p.seen.full() {
		f, err := p.deps.Store.DedupFilter(p.partition)
		if err != nil {
			return err
		}
		p.seen = f
	}
	p.agg.reset()
	p.bal.reset()
	p.out.Events = p.out.Events[:0]
	p.out.Aggregates = p.out.Aggregates[:0]
	p.dead = p.dead[:0]
	clear(p.muts)
	p.muts = p.muts[:0]
	clear(p.next)
	clear(p.inBatch)
	binary.BigEndian.PutUint64(p.stamp[:], uint64(started.UnixMilli()))

	txn := p.deps.Store.DB().NewTransaction(false)
	defer txn.Discard()

	for i := range p.batch.Messages {
		m := &p.batch.Messages[i]
		if m.Partition != p.partition {
			return fmt.Errorf("BUG: partition %d processor got a message of %s/%d", p.partition, m.Topic, m.Partition)
		}
		if next, ok := p.offsets[m.Topic]; ok && m.Offset < next {
			// Applied by an earlier run whose Kafka commit did not happen.
			p.deps.Stats.Redelivered.Add(1)
			continue
		}
		if m.Offset+1 > p.next[m.Topic] {
			p.next[m.Topic] = m.Offset + 1
		}
		p.deps.Stats.Messages.Add(1)
		p.src = p.sourceOf(m.Topic)
		p.src.Messages.Inc()
		if err := p.handle(txn, m, started); err != nil {
			return err
		}
	}
	if len(p.next) == 0 {
		// Everything was already applied (a redelivery after a crash
		// between the state commit and the Kafka commit): catch the group's
		// committed offsets up, or every restart would fetch it again.
		p.commitRedelivered()
		return nil
	}
	for topic, next := range p.next {
		p.muts = append(p.muts, Mutation{Key: offsetKey(p.partition, topic), Value: binary.BigEndian.AppendUint64(nil, uint64(next))})
	}
	seq := p.seq + 1
	p.out.Aggregates, p.muts = p.agg.flush(p.out.Aggregates, p.muts, seq)
	p.muts = append(p.muts, Mutation{Key: seqKey(p.partition), Value: binary.BigEndian.AppendUint64(nil, seq)})
	var err error
	if p.muts, err = p.bal.flush(txn, p.muts); err != nil {
		return err
	}

	// Fixed order: durable writes, then the changelog, then Badger, then
	// the Kafka commit. A crash between any two steps redelivers the batch;
	// the sinks collapse repeated rows, and the changelog or Badger, once
	// written, make the batch recognized as applied.
	handled := p.deps.Now()
	// Alerts go out before the state that produced them is committed: a
	// crash in between re-emits them with the same keys (the balance engine
	// derives a key from the crossing, unpriced_model alerts from the model
	// and hour), which consumers deduplicate; the other order could lose
	// one. They do not wait for the sinks: written alongside the rated
	// rows, an alert is out a ClickHouse insert sooner.
	var alertsDone chan error
	if p.hasAlerts() {
		alertsDone = make(chan error, 1)
		go func() { alertsDone <- p.writeAlerts(work, stop) }()
	}
	waitAlerts := func() error {
		if alertsDone == nil {
			return nil
		}
		err := <-alertsDone
		alertsDone = nil
		return err
	}
	defer waitAlerts() // never leave the writer running past the batch
	if err := p.retry(stop, "write rated batch", func() error { return p.deps.Sink.WriteBatch(work, &p.out) }); err != nil {
		return err
	}
	written := p.deps.Now()
	if err := p.retry(stop, "write dead letters", func() error { return p.deps.DLQ.Write(work, p.dead) }); err != nil {
		return err
	}
	if err := waitAlerts(); err != nil {
		return err
	}
	p.record = encodeRecord(p.record, p.gen, p.muts)
	var at int64
	if err := p.retry(stop, "append to changelog", func() (err error) {
		at, err = p.deps.Log.Append(work, p.partition, p.record)
		return err
	}); err != nil {
		return err
	}
	logged := p.deps.Now()
	pos := ChangelogPos{Next: at + 1, Generation: p.gen}
	if err := p.retry(stop, "commit state", func() error { return p.deps.Store.Apply(p.partition, p.muts, pos) }); err != nil {
		return err
	}
	for t, n := range p.next {
		p.offsets[t] = n
	}
	p.seq = seq
	p.agg.committed()
	p.bal.committed(p.deps.Views)
	if p.asg != nil {
		p.asg.committed()
	}
	// From here the batch is durable; a failed Kafka commit only means the
	// batch is redelivered and skipped by offset.
	if err := p.commit(p.next); err != nil {
		p.log.Debug().Err(err).Msg("kafka offset commit failed; the stored offsets cover it")
	}
	p.deps.Stats.Batches.Add(1)
	done := p.deps.Now()
	p.batchSeconds.ObserveSeconds(int64(done.Sub(started)))
	p.log.Debug().Int("messages", len(p.batch.Messages)).Int("rated", len(p.out.Events)).Int("dead", len(p.dead)).
		Dur("handle", handled.Sub(started)).Dur("sinks", written.Sub(handled)).Dur("changelog", logged.Sub(written)).
		Dur("state", done.Sub(logged)).Dur("took", done.Sub(started)).Msg("batch done")
	return nil
}

// applied reports whether the idempotency key (customer, id) was applied
// by a committed batch: the Bloom filter answers most "no"s, Badger the
// rest. It leaves the key in p.key for the caller to store.
func (p *Processor) applied(txn *badger.Txn, customer, id string) (bool, error) {
	p.key = dedupKey(p.key, p.partition, customer, id)
	if !p.seen.mayContain(p.key) {
		return false, nil
	}
	seen, key, err := p.deps.Store.Seen(txn, p.key, p.partition, customer, id)
	p.key = key
	return seen, err
}

// duplicate counts an input ignored as already applied.
func (p *Processor) duplicate() {
	p.deps.Stats.Duplicates.Add(1)
	p.src.Deduplicated.Inc()
}

// hasAlerts reports whether the batch has balance or unpriced-model
// alerts to write.
func (p *Processor) hasAlerts() bool {
	return len(p.bal.fx.Alerts) > 0 && p.deps.Alerts != nil || p.unpriced != nil && len(p.unpriced.fresh) > 0
}

// writeAlerts writes the batch's balance alerts and unpriced-model alerts,
// retrying until they are acknowledged or stop ends. It runs beside the
// sink write and touches nothing else of the processor.
func (p *Processor) writeAlerts(work, stop context.Context) error {
	if alerts := p.bal.fx.Alerts; len(alerts) > 0 && p.deps.Alerts != nil {
		if err := p.retry(stop, "write alerts", func() error { return p.deps.Alerts.WriteAlerts(work, alerts) }); err != nil {
			return err
		}
		p.deps.Stats.Alerts.Add(int64(len(alerts)))
		for i := range alerts {
			p.alertCounter(alerts[i].Kind).Inc()
		}
	}
	if u := p.unpriced; u != nil && len(u.fresh) > 0 {
		ops, err := u.flush()
		if err != nil {
			return err
		}
		if err := p.retry(stop, "write unpriced-model alerts", func() error { return u.w.WriteOperatorAlerts(work, ops) }); err != nil {
			return err
		}
		u.emitted.Add(uint64(len(ops)))
	}
	return nil
}

// commitRedelivered commits the offsets after a batch that was entirely
// applied before. They are below or at the stored offsets, so committing
// them cannot skip anything unapplied.
func (p *Processor) commitRedelivered() {
	next := make(map[string]int64)
	for i := range p.batch.Messages {
		m := &p.batch.Messages[i]
		if m.Offset+1 > next[m.Topic] {
			next[m.Topic] = m.Offset + 1
		}
	}
	if err := p.commit(next); err != nil {
		p.log.Debug().Err(err).Msg("kafka offset commit failed; the stored offsets cover it")
	}
}

// handle decodes, validates, deduplicates and rates one message. A message
// is applied whole or not at all: if any of its events is refused, the
// whole message goes to the dead-letter topic, so that replaying the fixed
// message cannot bill part of it twice.
func (p *Processor) handle(txn *badger.Txn, m *kafka.Message, now time.Time) error {
	format := p.deps.Formats[m.Topic]
	if format == FormatCommand {
		if isRerate(m.Value) {
			return p.rerate(txn, m, now) // rerate.go
		}
		if isAssign(m.Value) {
			return p.assignCommand(txn, m, now) // assign.go
		}
		refused, err := p.bal.command(txn, m.Value, now)
		if err != nil {
			return err
		}
		if refused != nil {
			p.deadLetter(m, "command", refused.Error())
		}
		return nil
	}
	dec := p.deps.Decoders[format]
	if dec == nil {
		return fmt.Errorf("BUG: no decoder for format %q of topic %s", format, m.Topic)
	}
	var err error
	p.events, err = dec.Decode(p.events[:0], m.Value)
	if err != nil {
		p.deadLetter(m, dec.Name(), err.Error())
		return nil
	}
	p.deps.Stats.Events.Add(int64(len(p.events)))
	p.src.Decoded.Add(uint64(len(p.events)))
	window := p.deps.Store.Window()
	for i := range p.events {
		ev := &p.events[i]
		if ev.Source == "" {
			ev.Source = schemas.Source(format)
		}
		if err := ev.Validate(now); err != nil {
			p.deadLetter(m, "validate", eventReason(i, len(p.events), err))
			return nil
		}
		if age := now.Sub(ev.Time); age > window {
			p.deadLetter(m, "validate", eventReason(i, len(p.events), fmt.Errorf(
				"time: %s is older than the %s deduplication window: it can no longer be told apart from a duplicate, so it is refused rather than risk billing it twice",
				ev.Time.UTC().Format(time.RFC3339), window)))
			return nil
		}
		if len(m.Key) > 0 && string(m.Key) != ev.CustomerID {
			// The producer keyed the message by something else than the
			// customer id, so this customer's usage may also arrive on other
			// partitions, where it is deduplicated separately.
			p.deps.Stats.KeyMismatch.Add(1)
		}
	}
	// Deduplicate and rate into the tail of p.out; on refusal roll back
	// what this message added, so nothing of it counts as applied.
	mark, mutMark := len(p.out.Events), len(p.muts)
	p.keys = p.keys[:0]
	if p.asg != nil {
		p.asg.begin()
	}
	for i := range p.events {
		ev := &p.events[i]
		k := [2]string{ev.CustomerID, ev.ID}
		if _, dup := p.inBatch[k]; dup || containsKey(p.keys, k) {
			p.duplicate()
			continue
		}
		if seen, err := p.applied(txn, ev.CustomerID, ev.ID); err != nil {
			return err
		} else if seen {
			p.duplicate()
			continue
		}
		// The customer's rate-card assignments, joining the default card
		// on first usage: read errors stop the batch, they are no refusal.
		hist, err := p.historyFor(txn, ev, true)
		if err != nil {
			return err
		}
		out := p.nextOut()
		if err := p.rate(ev, hist, out); err != nil {
			p.out.Events = p.out.Events[:mark]
			clear(p.muts[mutMark:])
			p.muts = p.muts[:mutMark]
			if p.asg != nil {
				p.asg.rollback()
			}
			reason := eventReason(i, len(p.events), err)
			if errors.Is(err, ErrUnpriced) {
				p.deps.Stats.Unpriced.Add(1)
				p.src.Unpriced.Inc()
				if p.unpriced != nil {
					p.unpriced.note(m, ev, err, reason, now)
				}
			}
			p.deadLetter(m, "rate", reason)
			return nil
		}
		out.Topic, out.Partition, out.Offset, out.RatedAt = m.Topic, m.Partition, m.Offset, now
		if ev.ReportedCost.Valid {
			p.reconcile(out)
		}
		p.keys = append(p.keys, k)
		// Added before the batch is durable: should it fail, the filter only
		// holds a key too many, which costs a Badger lookup, never a miss.
		p.seen.add(p.key)
		p.muts = append(p.muts, Mutation{
			Key:       append([]byte(nil), p.key...),
			Value:     p.stamp[:],
			ExpiresAt: uint64(ev.Time.Add(window).Unix()),
		})
	}
	for _, k := range p.keys {
		p.inBatch[k] = struct{}{}
	}
	for i := mark; i < len(p.out.Events); i++ {
		if err := p.agg.add(txn, &p.out.Events[i]); err != nil {
			return err
		}
	}
	if err := p.bal.usage(txn, p.out.Events[mark:]); err != nil {
		return err
	}
	rated := int64(len(p.keys))
	p.deps.Stats.Rated.Add(rated)
	p.src.Rated.Add(uint64(rated))
	return nil
}

// reconcile compares a partner's reported cost with ours; a difference
// beyond the tolerance is counted and logged, never billed.
func (p *Processor) reconcile(out *sinks.RatedEvent) {
	p.deps.Stats.Reconciled.Add(1)
	r := rating.Reconcile(out.Event.ReportedCost, out.Cost, p.tolerance)
	if !r.Within {
		p.deps.Stats.CostMismatch.Add(1)
		p.log.Debug().Str("customer", out.Event.CustomerID).Str("event", out.Event.ID).Str("price_key", out.PriceKey).
			Str("reported", out.Event.ReportedCost.Decimal.String()).Str("ours", out.Cost.String()).
			Str("difference", r.Diff.String()).Msg("partner-reported cost differs from ours")
	}
}

func containsKey(keys [][2]string, k [2]string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// ErrUnpriced marks a rating error caused by a missing price (unknown model
// or a unit the model has no price for). Raters wrap it.
var ErrUnpriced = errors.New("unpriced")

// nextOut returns the next RatedEvent slot of p.out, reusing its storage.
func (p *Processor) nextOut() *sinks.RatedEvent {
	if len(p.out.Events) < cap(p.out.Events) {
		p.out.Events = p.out.Events[:len(p.out.Events)+1]
	} else {
		p.out.Events = append(p.out.Events, sinks.RatedEvent{})
	}
	out := &p.out.Events[len(p.out.Events)-1]
	out.Lines = out.Lines[:0]
	out.Run = "" // raters do not set it: a slot a rerate used must not mark live usage
	return out
}

func (p *Processor) deadLetter(m *kafka.Message, stage, reason string) {
	p.deps.Stats.DeadLettered.Add(1)
	p.src.DeadLettered.Inc()
	p.dead = append(p.dead, sinks.DeadLetter{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Key: m.Key, Value: m.Value, Decoder: stage, Reason: reason, Time: m.Time,
	})
	p.log.Debug().Str("topic", m.Topic).Int64("offset", m.Offset).
		Str("stage", stage).Str("reason", reason).Msg("dead-lettered")
}

func eventReason(i, n int, err error) string {
	if n == 1 {
		return err.Error()
	}
	return fmt.Sprintf("event %d of %d: %v", i, n, err)
}

// retry runs fn until it succeeds, backing off from RetryMin to RetryMax.
// It gives up only when stop ends; the batch is then not committed and is
// applied again later.
func (p *Processor) retry(stop context.Context, what string, fn func() error) error {
	backoff := p.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		p.deps.Stats.Retries.Add(1)
		p.log.Warn().Err(err).Int("attempt", attempt).Dur("backoff", backoff).Msg(what + " failed; retrying")
		if !Sleep(stop, backoff) {
			return fmt.Errorf("%s: gave up at shutdown: %w", what, err)
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}

// Sleep waits d and reports true, or reports false as soon as ctx ends:
// the wait between retries everywhere in tariff.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
