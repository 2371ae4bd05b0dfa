package bridge

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/sources/producer"
)

// Publisher writes messages to Kafka. See producer.Producer.Publish for
// the contract: on nil every message is durable; on an error any subset
// may have been written, and the bridge answers 503 so the partner resends,
// which the pipeline's deduplication by idempotency key makes harmless.
// Publish is safe for concurrent use.
type Publisher = producer.Publisher

// ErrMessageTooLarge is returned (wrapped) by Publish when a message is
// larger than the broker or the writer accepts: resending cannot help.
var ErrMessageTooLarge = producer.ErrMessageTooLarge

// KafkaPublisher publishes with kafka-go, acks=all, keyed by customer id.
type KafkaPublisher = producer.Producer

// NewKafkaPublisher builds a publisher for cfg.Brokers. It connects lazily,
// on the first Publish, so the bridge starts (and answers 503) while Kafka
// is down.
func NewKafkaPublisher(cfg Config, log zerolog.Logger) *KafkaPublisher {
	cfg.SetDefaults()
	return producer.New(producer.Options{
		Brokers: cfg.Brokers, ClientID: "tariff-bridge", Component: "bridge",
		MaxMessageBytes: cfg.MaxMessageBytes,
		// Requests wait synchronously for their messages; a short linger
		// still lets concurrent requests share a produce request.
		BatchSize: 1000, BatchTimeout: 2 * time.Millisecond,
		// kafka-go retries a failed produce itself; Publish retries what it
		// does not, all bounded by the request's publish_timeout.
		MaxAttempts: 10, WriteBackoffMax: time.Second,
		Timeout: cfg.PublishTimeout,
	}, log)
}
