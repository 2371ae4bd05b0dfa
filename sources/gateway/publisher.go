package gateway

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

// Publisher writes messages to Kafka.
//
// Publish blocks until the broker has acknowledged every message from all
// in-sync replicas, one failed, or ctx ended. Each message names its topic.
// On nil every message is durable. On an error the caller must assume any
// subset was written: the gateway spools the whole batch and publishes it
// again later, which the pipeline's deduplication by event id absorbs. The
// caller must not modify the messages' bytes after an error (a write may
// still be in flight); after nil it owns them again. Safe for concurrent
// use.
type Publisher interface {
	Publish(ctx context.Context, msgs []kafka.Message) error
}

// ErrMessageTooLarge is returned (wrapped) by Publish when a message is
// larger than the broker or the writer accepts: resending cannot help.
var ErrMessageTooLarge = errors.New("message too large")

// KafkaOptions tunes the Kafka publisher beyond Config.
type KafkaOptions struct {
	// Dial, when set, replaces the TCP dialer (a proxy, or a test that
	// injects a broker outage).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// KafkaPublisher publishes with kafka-go, acks=all, partitioned by key with
// kafka-go's Hash (FNV-1a), the partitioner of every tariff producer.
type KafkaPublisher struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// NewKafkaPublisher builds a publisher for cfg.Brokers. It connects lazily,
// so the gateway starts (and spools) while Kafka is down.
func NewKafkaPublisher(cfg Config, log zerolog.Logger, opt KafkaOptions) *KafkaPublisher {
	cfg.SetDefaults()
	// kafka-go logs every failed attempt: sampled, or an outage floods.
	log = log.With().Str("component", "gateway").Str("part", "kafka-writer").Logger().
		Sample(&zerolog.BurstSampler{Burst: 10, Period: 10 * time.Second})
	// A transport of its own: the default one is shared process-wide and
	// caches topic metadata.
	tr := &kafka.Transport{ClientID: "tariff-gateway", DialTimeout: 5 * time.Second, MetadataTTL: 6 * time.Second, Dial: opt.Dial}
	return &KafkaPublisher{transport: tr, w: &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Transport:    tr,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		// The recorder already batches; a short linger lets the writer
		// merge what arrives while a produce is in flight.
		BatchTimeout: time.Millisecond,
		BatchSize:    cfg.Spool.BatchSize,
		BatchBytes:   int64(cfg.MaxMessageBytes),
		// Few attempts inside the writer: a failed batch goes to the spool
		// and the recorder retries it with backoff.
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		WriteTimeout:           cfg.PublishTimeout,
		ReadTimeout:            cfg.PublishTimeout,
		AllowAutoTopicCreation: false,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn().Msgf(msg, args...)
		}),
	}}
}

// Publish implements Publisher. Transient failures are retried with capped
// exponential backoff until ctx ends; only the messages that failed are
// written again.
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
	return false
}

// Close flushes and closes the writer and its connections. Call it after
// the gateway has stopped (Run returned).
func (p *KafkaPublisher) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections()
	return err
}
