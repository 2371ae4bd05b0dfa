package pipeline

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// minTickInterval bounds pipeline.tick_interval from below: every tick is
// a produce per owned partition and a scan of the due index, and alerts
// need no finer timing than this.
const minTickInterval = 100 * time.Millisecond

// TickWriter writes one tick record (see FormatCommand) to a partition of
// the command topic. WriteTick blocks until the broker has acknowledged
// the record or ctx ends; value belongs to the caller again on return.
type TickWriter interface {
	WriteTick(ctx context.Context, partition int, value []byte) error
}

// Ticker writes a tick to each partition this instance owns, every
// interval, so that time-driven balance changes (grant expiry, scheduled
// plan changes, period ends) are applied in stream order even to accounts
// that send nothing: the tick travels through the command topic like a
// command, so a replay after a crash applies it at the same place.
//
// Missed or doubled ticks are harmless: a tick advances accounts to its
// time and an account's clock never moves back, so the next tick covers
// what a lost one would have, and a tick applied twice (or written by two
// instances during a rebalance) changes nothing the second time.
type Ticker struct {
	interval time.Duration
	owned    func() []int
	w        TickWriter
	now      func() time.Time
	log      zerolog.Logger
}

// NewTicker ticks every interval to the partitions owned returns (called
// at each tick; the Runner's Partitions), through w.
func NewTicker(interval time.Duration, owned func() []int, w TickWriter, log zerolog.Logger) *Ticker {
	return &Ticker{interval: interval, owned: owned, w: w, now: time.Now,
		log: log.With().Str("component", "ticker").Logger()}
}

// TickerFor builds the ticker `tariff run` starts: every cfg's
// tick_interval, to the command topic among topics (input topic ->
// format; the first by name when several have format command: they are
// co-partitioned, so one is enough), on brokers through rt (nil:
// plaintext). It returns nil, saying why at debug level, when ticks are
// off or no topic has format command.
func TickerFor(cfg Config, topics map[string]string, brokers []string, rt kafka.RoundTripper, owned func() []int, log zerolog.Logger) *Ticker {
	cfg.setDefaults()
	if *cfg.TickInterval == 0 {
		log.Debug().Msg("pipeline.tick_interval is 0: no ticks written; grant expiry and period ends reach an account only with its next usage or command, or a tick written by another process")
		return nil
	}
	var names []string
	for t, f := range topics {
		if f == FormatCommand {
			names = append(names, t)
		}
	}
	if len(names) == 0 {
		log.Debug().Msg("no input topic has format command: no ticks written")
		return nil
	}
	sort.Strings(names)
	return NewTicker(*cfg.TickInterval, owned, NewKafkaTicks(brokers, names[0], rt), log)
}

// Run ticks until ctx ends, then returns nil. A failed write is logged and
// not retried: the next tick does the same work.
func (t *Ticker) Run(ctx context.Context) error {
	tk := time.NewTicker(t.interval)
	defer tk.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
		n, err := t.Tick(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			t.log.Warn().Err(err).Msg("writing ticks failed; balance expiry and period ends wait for the next tick")
			failing = true
		case err != nil:
			t.log.Debug().Err(err).Msg("writing ticks failed again")
		case failing:
			t.log.Info().Int("partitions", n).Msg("writing ticks works again")
			failing = false
		}
	}
}

// Tick writes one tick stamped now to every owned partition and returns
// how many it wrote; on a failure it still tries the other partitions and
// returns the first error.
func (t *Ticker) Tick(ctx context.Context) (int, error) {
	value := EncodeTick(t.now())
	var first error
	n := 0
	for _, p := range t.owned() {
		if err := t.w.WriteTick(ctx, p, value); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		n++
	}
	return n, first
}

// KafkaTicks writes ticks to an explicit partition of a topic.
// (kafka.Writer picks the partition itself and ignores Message.Partition,
// hence the produce request.)
type KafkaTicks struct {
	client *kafka.Client
	topic  string
}

// NewKafkaTicks writes to topic on brokers through rt (nil: plaintext).
func NewKafkaTicks(brokers []string, topic string, rt kafka.RoundTripper) *KafkaTicks {
	return &KafkaTicks{client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: rt}, topic: topic}
}

// WriteTick implements TickWriter, waiting for all in-sync replicas.
func (k *KafkaTicks) WriteTick(ctx context.Context, partition int, value []byte) error {
	res, err := k.client.Produce(ctx, &kafka.ProduceRequest{
		Topic:        k.topic,
		Partition:    partition,
		RequiredAcks: kafka.RequireAll,
		Records:      kafka.NewRecordReader(kafka.Record{Time: time.Now(), Value: kafka.NewBytes(value)}),
	})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return fmt.Errorf("write tick to %s/%d: %w", k.topic, partition, err)
	}
	return nil
}
