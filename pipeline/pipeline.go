// Package pipeline runs the stream: fetch a batch from Kafka, decode,
// validate, deduplicate, rate, write to the sinks, record state and offsets
// in Badger, and only then commit the offsets to Kafka.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

// Rater rates one validated event into out, reusing out's storage. It must
// be safe to call from the pipeline goroutine while prices are swapped.
type Rater interface {
	Rate(ev *schemas.UsageEvent, out *sinks.RatedEvent) error
}

// Source is what the pipeline needs of the Kafka consumer.
type Source interface {
	Fetch(ctx context.Context, b *sources.Batch) error
	Commit(ctx context.Context, b *sources.Batch) error
	Format(topic string) string
}

// DeadLetters stores refused messages durably.
type DeadLetters interface {
	Write(ctx context.Context, recs []sinks.DeadLetter) error
}

// Stats are the pipeline's running counters, safe to read concurrently.
type Stats struct {
	Batches      atomic.Int64
	Messages     atomic.Int64 // input messages processed (not counting skipped)
	Redelivered  atomic.Int64 // messages skipped because their batch was already applied
	Events       atomic.Int64 // events decoded
	Rated        atomic.Int64 // events rated and written
	Duplicates   atomic.Int64 // events ignored as already seen
	DeadLettered atomic.Int64 // messages sent to the dead-letter topic
	Unpriced     atomic.Int64 // messages dead-lettered because a model or unit has no price
	SinkRetries  atomic.Int64
}

// Config tunes the pipeline.
type Config struct {
	// RetryMin and RetryMax bound the backoff when a sink or the state
	// store fails. Defaults 200ms and 30s.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
}

func (c *Config) setDefaults() {
	if c.RetryMin == 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
}

// Pipeline is one consumer's processing loop.
type Pipeline struct {
	cfg      Config
	src      Source
	decoders map[string]schemas.Decoder // by format
	rater    Rater
	sink     sinks.Sink
	dlq      DeadLetters
	store    *Store
	log      zerolog.Logger
	now      func() time.Time

	Stats Stats

	// Per-batch scratch, reused across batches (reset, not reallocated).
	batch   sources.Batch
	events  []schemas.UsageEvent
	out     sinks.Batch
	dead    []sinks.DeadLetter
	applied Applied
	inBatch map[[2]string]struct{}
	offsets map[TopicPartition]int64 // next offset to apply, as stored
	key     []byte
}

// New builds a pipeline. decoders maps each topic format to its decoder.
func New(cfg Config, src Source, decoders map[string]schemas.Decoder, rater Rater, sink sinks.Sink, dlq DeadLetters, store *Store, log zerolog.Logger) *Pipeline {
	cfg.setDefaults()
	return &Pipeline{
		cfg: cfg, src: src, decoders: decoders, rater: rater, sink: sink, dlq: dlq, store: store,
		log:     log.With().Str("component", "pipeline").Logger(),
		now:     time.Now,
		applied: Applied{Offsets: make(map[TopicPartition]int64)},
		inBatch: make(map[[2]string]struct{}),
		offsets: make(map[TopicPartition]int64),
	}
}

// Run processes batches until ctx ends. On ctx's end it finishes the batch
// in hand (write, store, commit) before returning, so a graceful stop
// leaves nothing half done; a crash at any point is safe too, because a
// batch is committed to Kafka only after its results are durable and the
// store recognizes a batch it already applied.
func (p *Pipeline) Run(ctx context.Context) error {
	for {
		if err := p.src.Fetch(ctx, &p.batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Warn().Err(err).Msg("fetch failed; retrying")
			if !sleepCtx(ctx, p.cfg.RetryMin) {
				return nil
			}
			continue
		}
		// The batch in hand is finished even when ctx ends now: its work is
		// already fetched, and finishing it keeps shutdown fast on restart.
		if err := p.process(context.WithoutCancel(ctx), ctx); err != nil {
			return err
		}
	}
}

// process handles p.batch. work is the context for I/O that must finish;
// stop tells retries to give up (the batch is then redelivered later).
func (p *Pipeline) process(work, stop context.Context) error {
	started := p.now()
	p.out.Events = p.out.Events[:0]
	p.dead = p.dead[:0]
	p.applied.Reset()
	clear(p.inBatch)

	txn := p.store.DB().NewTransaction(false)
	defer txn.Discard()

	for i := range p.batch.Messages {
		m := &p.batch.Messages[i]
		tp := TopicPartition{m.Topic, m.Partition}
		next, err := p.nextOffset(tp)
		if err != nil {
			return err
		}
		if m.Offset < next {
			// Applied by an earlier run whose Kafka commit did not happen.
			p.Stats.Redelivered.Add(1)
			continue
		}
		if m.Offset+1 > p.applied.Offsets[tp] {
			p.applied.Offsets[tp] = m.Offset + 1
		}
		p.Stats.Messages.Add(1)
		if err := p.handle(txn, m); err != nil {
			return err
		}
	}

	if err := p.retry(stop, "write rated batch", func() error { return p.sink.WriteBatch(work, &p.out) }); err != nil {
		return err
	}
	if err := p.retry(stop, "write dead letters", func() error { return p.dlq.Write(work, p.dead) }); err != nil {
		return err
	}
	if len(p.applied.Offsets) > 0 {
		if err := p.retry(stop, "commit state", func() error { return p.store.Commit(&p.applied) }); err != nil {
			return err
		}
		for tp, next := range p.applied.Offsets {
			p.offsets[tp] = next
		}
	}
	// From here the batch is durable; a failed Kafka commit only means the
	// batch is redelivered and skipped by offset.
	if err := p.src.Commit(work, &p.batch); err != nil {
		p.log.Warn().Err(err).Int("messages", len(p.batch.Messages)).Msg("kafka offset commit failed; the batch will be redelivered and skipped")
	}
	p.Stats.Batches.Add(1)
	p.log.Debug().Int("messages", len(p.batch.Messages)).Int("rated", len(p.out.Events)).
		Int("dead", len(p.dead)).Dur("took", p.now().Sub(started)).Msg("batch done")
	return nil
}

func (p *Pipeline) nextOffset(tp TopicPartition) (int64, error) {
	if n, ok := p.offsets[tp]; ok {
		return n, nil
	}
	n, err := p.store.NextOffset(tp.Topic, tp.Partition)
	if err != nil {
		return 0, err
	}
	p.offsets[tp] = n
	return n, nil
}

// handle decodes, validates, deduplicates and rates one message. A message
// is applied whole or not at all: if any of its events is refused, the
// whole message goes to the dead-letter topic, so that replaying the fixed
// message cannot bill part of it twice.
func (p *Pipeline) handle(txn *badger.Txn, m *kafka.Message) error {
	format := p.src.Format(m.Topic)
	dec := p.decoders[format]
	if dec == nil {
		return fmt.Errorf("BUG: no decoder for format %q of topic %s", format, m.Topic)
	}
	var err error
	p.events, err = dec.Decode(p.events[:0], m.Value)
	if err != nil {
		p.deadLetter(m, dec.Name(), err.Error())
		return nil
	}
	p.Stats.Events.Add(int64(len(p.events)))
	now := p.now()
	for i := range p.events {
		p.events[i].Source = sourceOf(p.events[i].Source, format)
		if err := p.events[i].Validate(now); err != nil {
			p.deadLetter(m, "validate", eventReason(i, len(p.events), err))
			return nil
		}
	}
	// Deduplicate and rate into the tail of p.out; roll back on refusal.
	mark := len(p.out.Events)
	var keys [][2]string
	for i := range p.events {
		ev := &p.events[i]
		k := [2]string{ev.CustomerID, ev.ID}
		if _, dup := p.inBatch[k]; dup {
			p.Stats.Duplicates.Add(1)
			continue
		}
		seen, key, err := p.store.Seen(txn, p.key, ev.CustomerID, ev.ID)
		p.key = key
		if err != nil {
			return err
		}
		if seen {
			p.Stats.Duplicates.Add(1)
			continue
		}
		out := p.nextOut()
		if err := p.rater.Rate(ev, out); err != nil {
			p.out.Events = p.out.Events[:mark]
			if errors.Is(err, ErrUnpriced) {
				p.Stats.Unpriced.Add(1)
			}
			p.deadLetter(m, "rate", eventReason(i, len(p.events), err))
			return nil
		}
		out.Topic, out.Partition, out.Offset, out.RatedAt = m.Topic, m.Partition, m.Offset, now
		keys = append(keys, k)
	}
	for _, k := range keys {
		p.inBatch[k] = struct{}{}
		p.applied.Keys = append(p.applied.Keys, k)
	}
	p.Stats.Rated.Add(int64(len(keys)))
	return nil
}

// ErrUnpriced marks a rating error caused by a missing price (unknown model
// or a unit the model has no price for). Raters wrap it.
var ErrUnpriced = errors.New("unpriced")

// nextOut returns the next RatedEvent slot of p.out, reusing its storage.
func (p *Pipeline) nextOut() *sinks.RatedEvent {
	if len(p.out.Events) < cap(p.out.Events) {
		p.out.Events = p.out.Events[:len(p.out.Events)+1]
	} else {
		p.out.Events = append(p.out.Events, sinks.RatedEvent{})
	}
	out := &p.out.Events[len(p.out.Events)-1]
	out.Lines = out.Lines[:0]
	return out
}

func (p *Pipeline) deadLetter(m *kafka.Message, stage, reason string) {
	p.Stats.DeadLettered.Add(1)
	p.dead = append(p.dead, sinks.DeadLetter{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Key: m.Key, Value: m.Value, Decoder: stage, Reason: reason, Time: m.Time,
	})
	p.log.Debug().Str("topic", m.Topic).Int("partition", m.Partition).Int64("offset", m.Offset).
		Str("stage", stage).Str("reason", reason).Msg("dead-lettered")
}

func eventReason(i, n int, err error) string {
	if n == 1 {
		return err.Error()
	}
	return fmt.Sprintf("event %d of %d: %v", i, n, err)
}

func sourceOf(s schemas.Source, format string) schemas.Source {
	if s != "" {
		return s
	}
	return schemas.Source(format)
}

// retry runs fn until it succeeds, backing off from RetryMin to RetryMax.
// It gives up only when stop ends; the batch is then not committed and is
// redelivered after restart.
func (p *Pipeline) retry(stop context.Context, what string, fn func() error) error {
	backoff := p.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		p.Stats.SinkRetries.Add(1)
		p.log.Warn().Err(err).Int("attempt", attempt).Dur("backoff", backoff).Msg(what + " failed; retrying")
		if !sleepCtx(stop, backoff) {
			return fmt.Errorf("%s: gave up at shutdown: %w", what, err)
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
