package pipeline

import (
	"bytes"
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
	return c.publish(ctx, cmd.CustomerID, cmd.ID, cmd)
}

// publish writes one command of any kind as JSON, keyed by its customer.
func (c *CommandWriter) publish(ctx context.Context, customer, id string, cmd any) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("encode command %s: %w", id, err)
	}
	if err := c.w.WriteMessages(ctx, kafka.Message{Key: []byte(customer), Value: b}); err != nil {
		return fmt.Errorf("publish command %s to %s: %w", id, c.topic, err)
	}
	return nil
}

// isKind reports whether a message of the command format has kind. The
// byte test first keeps messages of other kinds (grants, usage-ordered
// commands) from paying a second decode.
func isKind(msg []byte, kind string) bool {
	if !bytes.Contains(msg, []byte(`"`+kind+`"`)) {
		return false
	}
	var probe struct {
		Kind string `json:"kind"`
	}
	return json.Unmarshal(msg, &probe) == nil && probe.Kind == kind
}

// decodeStrict decodes one JSON object into v, refusing unknown fields
// (in a message that moves money, more likely a mistake than something to
// ignore) and trailing data; errors start with what.
func decodeStrict(msg []byte, what string, v any) error {
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: trailing data after the JSON object", what)
	}
	return nil
}

// Close flushes and closes the writer.
func (c *CommandWriter) Close() error { return c.w.Close() }
