// Package sources reads raw usage from Kafka and hands it on in batches.
//
// A Source owns one kafka-go consumer-group reader. Batches carry the
// messages they cover; the caller commits a batch only after everything it
// produced is durable (ClickHouse rows, Badger state, dead-letter records).
package sources

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// Config configures the Kafka consumer.
type Config struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string `yaml:"brokers"`
	// GroupID is the consumer group. Default "tariff".
	GroupID string `yaml:"group_id"`
	// Topics maps each input topic to the decoder format its messages use
	// ("gateway", "litellm", "openrouter", "meter" or "auto"). Required.
	Topics map[string]string `yaml:"topics"`
	// MaxBatchMessages flushes a batch at this many messages. Default 5000.
	MaxBatchMessages int `yaml:"max_batch_messages"`
	// MaxBatchBytes flushes a batch at this many bytes of message values.
	// Default 8 MiB.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// MaxBatchWait flushes a non-empty batch this long after its first
	// message. Default 200ms.
	MaxBatchWait time.Duration `yaml:"max_batch_wait"`
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.GroupID == "" {
		c.GroupID = "tariff"
	}
	if c.MaxBatchMessages == 0 {
		c.MaxBatchMessages = 5000
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 8 << 20
	}
	if c.MaxBatchWait == 0 {
		c.MaxBatchWait = 200 * time.Millisecond
	}
}

// Validate reports every bad field at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.brokers: at least one broker address is required"))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("kafka.topics: at least one input topic is required"))
	}
	for t, f := range c.Topics {
		switch f {
		case "gateway", "litellm", "openrouter", "meter", "auto":
		default:
			errs = append(errs, fmt.Errorf("kafka.topics[%s]: format %q: expected gateway, litellm, openrouter, meter or auto", t, f))
		}
	}
	if c.MaxBatchMessages < 0 {
		errs = append(errs, fmt.Errorf("kafka.max_batch_messages: %d: expected a positive count", c.MaxBatchMessages))
	}
	if c.MaxBatchBytes < 0 {
		errs = append(errs, fmt.Errorf("kafka.max_batch_bytes: %d: expected a positive size in bytes", c.MaxBatchBytes))
	}
	if c.MaxBatchWait < 0 {
		errs = append(errs, fmt.Errorf("kafka.max_batch_wait: %s: expected a positive duration", c.MaxBatchWait))
	}
	return errors.Join(errs...)
}

// Batch is a run of messages fetched from the group. Messages keep their
// fetch order, which is offset order within each partition.
type Batch struct {
	Messages []kafka.Message
	Bytes    int
}

// Reset empties the batch, keeping its capacity.
func (b *Batch) Reset() {
	clear(b.Messages) // drop references so the payloads can be collected
	b.Messages = b.Messages[:0]
	b.Bytes = 0
}

// Source fetches batches from a consumer group.
type Source struct {
	cfg    Config
	reader *kafka.Reader
	log    zerolog.Logger
}

// New builds a Source. It does not contact the brokers until Fetch.
func New(cfg Config, log zerolog.Logger) (*Source, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	topics := make([]string, 0, len(cfg.Topics))
	for t := range cfg.Topics {
		topics = append(topics, t)
	}
	log = log.With().Str("component", "source").Logger()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.GroupID,
		GroupTopics: topics,
		MinBytes:    1,
		MaxBytes:    16 << 20,
		MaxWait:     100 * time.Millisecond,
		// Commits are explicit and synchronous: an offset is committed only
		// after the caller made the batch durable. A non-zero interval would
		// commit in the background, before the sinks have the data.
		CommitInterval: 0,
		StartOffset:    kafka.FirstOffset,
		QueueCapacity:  1024,
		// Heartbeats run in the reader's own goroutine, so a slow sink does
		// not cost the group membership; a long outage does (session
		// timeout), and the partitions are then redelivered, which the
		// stored offsets make harmless.
		SessionTimeout:        30 * time.Second,
		RebalanceTimeout:      30 * time.Second,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn().Msgf(msg, args...)
		}),
	})
	return &Source{cfg: cfg, reader: r, log: log}, nil
}

// Format returns the decoder format configured for topic.
func (s *Source) Format(topic string) string { return s.cfg.Topics[topic] }

// Fetch fills b with the next batch: it blocks for the first message, then
// gathers more until MaxBatchMessages, MaxBatchBytes or MaxBatchWait is
// reached. It returns ctx's error only when b is still empty; a partial
// batch is returned without error when ctx ends mid-batch, so that work
// already fetched is processed during a graceful stop.
func (s *Source) Fetch(ctx context.Context, b *Batch) error {
	b.Reset()
	m, err := s.reader.FetchMessage(ctx)
	if err != nil {
		return fmt.Errorf("fetch from kafka: %w", err)
	}
	b.Messages = append(b.Messages, m)
	b.Bytes += len(m.Value)
	wctx, cancel := context.WithTimeout(ctx, s.cfg.MaxBatchWait)
	defer cancel()
	for len(b.Messages) < s.cfg.MaxBatchMessages && b.Bytes < s.cfg.MaxBatchBytes {
		m, err := s.reader.FetchMessage(wctx)
		if err != nil {
			// The wait ran out or ctx ended: the batch is complete. A
			// message not returned stays queued in the reader.
			break
		}
		b.Messages = append(b.Messages, m)
		b.Bytes += len(m.Value)
	}
	return nil
}

// Commit commits the offsets of every message in b. Call it only after the
// batch's results are durable.
func (s *Source) Commit(ctx context.Context, b *Batch) error {
	if len(b.Messages) == 0 {
		return nil
	}
	if err := s.reader.CommitMessages(ctx, b.Messages...); err != nil {
		return fmt.Errorf("commit %d offsets: %w", len(b.Messages), err)
	}
	return nil
}

// Lag reports the reader's lag as last seen (-1 when unknown).
func (s *Source) Lag() int64 { return s.reader.Stats().Lag }

// Close leaves the group and closes the connections.
func (s *Source) Close() error { return s.reader.Close() }
