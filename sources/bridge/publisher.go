package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// Publisher writes messages to Kafka.
//
// Publish blocks until the broker has acknowledged every message from all
// in-sync replicas, one failed, or ctx ended. Each message names its own
// topic. On nil every message is durable. On an error the caller must
// assume any subset was written (and, after a ctx timeout, that some may
// still be written later): it answers 503 and the partner resends, which
// the pipeline's deduplication by idempotency key makes harmless. The
// caller must not modify the messages' bytes after an error, since a
// write may still be in flight; after nil, it owns them again.
// Publish is safe for concurrent use.
type Publisher interface {
	Publish(ctx context.Context, msgs []kafka.Message) error
}

// ErrMessageTooLarge is returned (wrapped) by Publish when a message is
// larger than the broker or the writer accepts: resending cannot help.
var ErrMessageTooLarge = errors.New("message too large")

// KafkaPublisher publishes with kafka-go, acks=all, keyed by customer id.
type KafkaPublisher struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// NewKafkaPublisher builds a publisher for cfg.Brokers. It connects lazily,
// on the first Publish, so the bridge starts (and answers 503) while Kafka
// is down.
func NewKafkaPublisher(cfg Config, log zerolog.Logger) *KafkaPublisher {
	cfg.SetDefaults()
	// kafka-go logs every failed attempt: during an outage that is many
	// lines a second, so it is sampled.
	log = log.With().Str("component", "bridge").Str("part", "kafka-writer").Logger().
		Sample(&zerolog.BurstSampler{Burst: 10, Period: 10 * time.Second})
	// A transport of its own: kafka-go's default one is shared by every
	// client in the process and caches topic metadata, so a topic created
	// after another client looked would stay unknown here until the cache
	// expired.
	tr := &kafka.Transport{ClientID: "tariff-bridge", DialTimeout: 5 * time.Second, MetadataTTL: 6 * time.Second}
	return &KafkaPublisher{transport: tr, w: &kafka.Writer{
		Addr:      kafka.TCP(cfg.Brokers...),
		Transport: tr,
		// The same partitioner as `tariff send` and the dead-letter writer
		// (FNV-1a of the key), so that every producer tariff runs puts a
		// customer in the same partition number of co-partitioned topics.
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		// Requests wait synchronously for their messages; a short linger
		// still lets concurrent requests share a produce request.
		BatchTimeout: 2 * time.Millisecond,
		BatchSize:    1000,
		// One record batch per partition must fit the broker's
		// message.max.bytes, so it is also the largest message.
		BatchBytes: int64(cfg.MaxMessageBytes),
		// kafka-go retries a failed produce (leader moves, dropped
		// connections) itself; Publish retries what it does not (topic
		// metadata), all bounded by the request's publish_timeout.
		MaxAttempts:     10,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
		WriteTimeout:    cfg.PublishTimeout,
		ReadTimeout:     cfg.PublishTimeout,
		// Topics must exist with the right partition count; see
		// Endpoint.Topic.
		AllowAutoTopicCreation: false,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn().Msgf(msg, args...)
		}),
	}}
}

// Publish implements Publisher. A temporary failure (no leader yet, topic
// metadata not propagated, connection refused or reset) is retried with
// capped exponential backoff until ctx ends; only the messages that failed
// are written again, so a partial failure does not duplicate the rest.
func (p *KafkaPublisher) Publish(ctx context.Context, msgs []kafka.Message) error {
	backoff := 50 * time.Millisecond
	for {
		err := p.w.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		if tooLarge(err) {
			return fmt.Errorf("%w: %w", ErrMessageTooLarge, err)
		}
		var we kafka.WriteErrors
		if errors.As(err, &we) && len(we) == len(msgs) {
			failed := make([]kafka.Message, 0, we.Count())
			for i, e := range we {
				if e != nil {
					failed = append(failed, msgs[i])
				}
			}
			msgs = failed
		}
		if !retriable(err) {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// retriable reports whether every error in err is worth another attempt.
func retriable(err error) bool {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && !retriable(e) {
				return false
			}
		}
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var temp interface{ Temporary() bool }
	if errors.As(err, &temp) && temp.Temporary() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func tooLarge(err error) bool {
	if errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge) {
		return true
	}
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && (errors.Is(e, kafka.MessageSizeTooLarge) || errors.Is(e, kafka.RecordListTooLarge)) {
				return true
			}
		}
	}
	return false
}

// Close flushes and closes the writer and its connections. Call it after
// the server has drained (Bridge.Run has returned).
func (p *KafkaPublisher) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections()
	return err
}
