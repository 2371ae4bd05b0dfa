// Package sources reads raw usage from Kafka and hands it on in batches.
//
// A Group takes part in the consumer group and hands out partition numbers;
// a PartitionSource reads one partition number of every input topic.
// Batches carry the messages they cover; the caller commits offsets only
// after everything a batch produced is durable.
package sources

import (
	"errors"
	"fmt"
	"strings"
	"time"

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
	// SessionTimeout is how long the group waits for a silent member before
	// giving its partitions to another. Default 30s.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// Security is TLS and SASL to the brokers. Default: plaintext.
	Security Security `yaml:"security"`
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
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 30 * time.Second
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
		case "gateway", "litellm", "openrouter", "meter", "auto", "command":
		default:
			errs = append(errs, fmt.Errorf("kafka.topics[%s]: format %q: expected gateway, litellm, openrouter, meter, auto or command", t, f))
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
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SessionTimeout != 0 && (c.SessionTimeout < 6*time.Second || c.SessionTimeout > 5*time.Minute) {
		errs = append(errs, fmt.Errorf("kafka.session_timeout: %s: expected between 6s and 5m (the broker's group session limits)", c.SessionTimeout))
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

// SplitList splits a comma-separated list (broker addresses from a flag or
// an environment variable), dropping blanks and surrounding spaces.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
