package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/balance"
)

// CommandWriter publishes admin commands (balance.Command JSON) to the
// command topic, keyed by customer id with the partitioner every tariff
// producer uses (kafka.Hash), so a command lands in the partition number
// that holds the customer's usage and is applied in order with it.
type CommandWriter struct {
	topic string
	w     *kafka.Writer
}

// NewCommandWriter writes to topic on brokers through rt (nil: plaintext).
func NewCommandWriter(brokers []string, topic string, rt kafka.RoundTripper) (*CommandWriter, error) {
	if topic == "" {
		return nil, errors.New("command topic: a topic name is required (a kafka.topics entry with format \"command\")")
	}
	return &CommandWriter{topic: topic, w: &kafka.Writer{
		Addr: kafka.TCP(brokers...), Transport: rt, Topic: topic,
		Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		MaxAttempts: 5, WriteBackoffMin: 100 * time.Millisecond, WriteBackoffMax: 2 * time.Second,
	}}, nil
}

// Topic names the command topic.
func (c *CommandWriter) Topic() string { return c.topic }

// Submit publishes cmd and returns once every in-sync replica has it.
func (c *CommandWriter) Submit(ctx context.Context, cmd *balance.Command) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("encode command %s: %w", cmd.ID, err)
	}
	if err := c.w.WriteMessages(ctx, kafka.Message{Key: []byte(cmd.CustomerID), Value: b}); err != nil {
		return fmt.Errorf("publish command %s to %s: %w", cmd.ID, c.topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (c *CommandWriter) Close() error { return c.w.Close() }
