package gateway

import (
	"context"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/sources/producer"
)

// Publisher writes messages to Kafka. See producer.Producer.Publish for
// the contract: on nil every message is durable; on an error any subset
// may have been written, and the gateway spools the whole batch and
// publishes it again later, which the pipeline's deduplication by event id
// absorbs. Safe for concurrent use.
type Publisher = producer.Publisher

// ErrMessageTooLarge is returned (wrapped) by Publish when a message is
// larger than the broker or the writer accepts: resending cannot help.
var ErrMessageTooLarge = producer.ErrMessageTooLarge

// KafkaOptions tunes the Kafka publisher beyond Config.
type KafkaOptions struct {
	// Dial, when set, replaces the TCP dialer (a proxy, or a test that
	// injects a broker outage).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// KafkaPublisher publishes with kafka-go, acks=all, partitioned by key with
// kafka-go's Hash (FNV-1a), the partitioner of every tariff producer.
type KafkaPublisher = producer.Producer

// NewKafkaPublisher builds a publisher for cfg.Brokers. It connects lazily,
// so the gateway starts (and spools) while Kafka is down.
func NewKafkaPublisher(cfg Config, log zerolog.Logger, opt KafkaOptions) *KafkaPublisher {
	cfg.SetDefaults()
	return producer.New(producer.Options{
		Brokers: cfg.Brokers, ClientID: "tariff-gateway", Component: "gateway",
		MaxMessageBytes: cfg.MaxMessageBytes,
		// The recorder already batches; a short linger lets the writer
		// merge what arrives while a produce is in flight.
		BatchSize: cfg.Spool.BatchSize, BatchTimeout: time.Millisecond,
		// Few attempts inside the writer: a failed batch goes to the spool
		// and the recorder retries it with backoff.
		MaxAttempts: 3, WriteBackoffMax: 500 * time.Millisecond,
		Timeout: cfg.PublishTimeout, Dial: opt.Dial,
	}, log)
}
