// Package producer publishes messages to Kafka for tariff's HTTP front
// doors (the webhook bridge and the AI gateway): acks from all in-sync
// replicas, the partitioner every tariff producer uses, and retries of
// what kafka-go does not retry itself.
package producer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// ErrMessageTooLarge is returned (wrapped) by Publish when a message is
// larger than the broker or the writer accepts: resending cannot help.
var ErrMessageTooLarge = errors.New("message too large")

// Publisher publishes messages: a *Producer, or a fake in tests. On nil
// every message is durable; on an error any subset may have been written
// (see Producer.Publish). Safe for concurrent use.
type Publisher interface {
	Publish(ctx context.Context, msgs []kafka.Message) error
}

// Options configures a Producer.
type Options struct {
	Brokers []string
	// ClientID names the producer to the brokers ("tariff-bridge").
	ClientID string
	// Component labels the producer's sampled log lines.
	Component string
	// MaxMessageBytes bounds one record batch per partition, so it is also
	// the largest message; it must fit the broker's message.max.bytes.
	MaxMessageBytes int
	// BatchSize and BatchTimeout let concurrent callers share a produce
	// request.
	BatchSize    int
	BatchTimeout time.Duration
	// MaxAttempts and WriteBackoffMax bound kafka-go's own retries of a
	// failed produce (leader moves, dropped connections); Publish retries
	// what it does not, until the caller's context ends.
	MaxAttempts     int
	WriteBackoffMax time.Duration
	// Timeout bounds one produce request's write and read.
	Timeout time.Duration
	// Dial, when set, replaces the TCP dialer (a proxy, or a test that
	// injects a broker outage).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Producer publishes with kafka-go. It connects lazily, on the first
// Publish, so its owner starts while Kafka is down.
type Producer struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// New builds a producer.
func New(o Options, log zerolog.Logger) *Producer {
	// kafka-go logs every failed attempt: during an outage that is many
	// lines a second, so it is sampled.
	log = log.With().Str("component", o.Component).Str("part", "kafka-writer").Logger().
		Sample(&zerolog.BurstSampler{Burst: 10, Period: 10 * time.Second})
	// A transport of its own: kafka-go's default one is shared by every
	// client in the process and caches topic metadata, so a topic created
	// after another client looked would stay unknown here until the cache
	// expired.
	tr := &kafka.Transport{ClientID: o.ClientID, DialTimeout: 5 * time.Second, MetadataTTL: 6 * time.Second, Dial: o.Dial}
	return &Producer{transport: tr, w: &kafka.Writer{
		Addr:      kafka.TCP(o.Brokers...),
		Transport: tr,
		// The same partitioner as `tariff send` and the dead-letter writer
		// (FNV-1a of the key), so that every producer tariff runs puts a
		// customer in the same partition number of co-partitioned topics.
		Balancer:        &kafka.Hash{},
		RequiredAcks:    kafka.RequireAll,
		BatchTimeout:    o.BatchTimeout,
		BatchSize:       o.BatchSize,
		BatchBytes:      int64(o.MaxMessageBytes),
		MaxAttempts:     o.MaxAttempts,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: o.WriteBackoffMax,
		WriteTimeout:    o.Timeout,
		ReadTimeout:     o.Timeout,
		// Topics must exist with the input topics' partition count; a topic
		// created by a produce would get the broker's default.
		AllowAutoTopicCreation: false,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn().Msgf(msg, args...)
		}),
	}}
}

// Publish blocks until the broker has acknowledged every message from all
// in-sync replicas, one failed for good, or ctx ended. Each message names
// its topic. On nil every message is durable. On an error the caller must
// assume any subset was written: resending is safe, since the pipeline
// deduplicates by idempotency key. The caller must not modify the
// messages' bytes after an error (a write may still be in flight); after
// nil it owns them again. Safe for concurrent use.
//
// A temporary failure (no leader yet, topic metadata not propagated,
// connection refused or reset) is retried with capped exponential backoff
// until ctx ends; only the messages that failed are written again, so a
// partial failure does not duplicate the rest.
func (p *Producer) Publish(ctx context.Context, msgs []kafka.Message) error {
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
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) ||
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
	var mt kafka.MessageTooLargeError
	return errors.As(err, &mt)
}

// Close flushes and closes the writer and its connections. Call it after
// the callers have drained.
func (p *Producer) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections()
	return err
}
