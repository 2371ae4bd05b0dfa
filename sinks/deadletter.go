package sinks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// DeadLetter is a refused input message with why it was refused.
type DeadLetter struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte // the original bytes, unchanged
	Decoder   string // the stage or decoder that refused it
	Reason    string
	Time      time.Time // when the original was written to Kafka
}

// Header names of a dead-letter record. The record's value is the original
// message value byte for byte, so it can be fixed and replayed as it is.
const (
	HeaderDLQTopic     = "tariff.dlq.topic"
	HeaderDLQPartition = "tariff.dlq.partition"
	HeaderDLQOffset    = "tariff.dlq.offset"
	HeaderDLQDecoder   = "tariff.dlq.decoder"
	HeaderDLQReason    = "tariff.dlq.reason"
	HeaderDLQTime      = "tariff.dlq.time"
)

// DeadLetterWriter writes refused messages to the dead-letter topic and
// waits for the broker's acknowledgement from all in-sync replicas.
type DeadLetterWriter struct {
	w     *kafka.Writer
	topic string
}

// NewDeadLetterWriter writes to topic on brokers, through rt (nil:
// plaintext).
func NewDeadLetterWriter(brokers []string, topic string, rt kafka.RoundTripper) (*DeadLetterWriter, error) {
	if topic == "" {
		return nil, errors.New("dead_letter_topic: a topic name is required")
	}
	return &DeadLetterWriter{topic: topic, w: &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		Transport:              rt,
		Topic:                  topic,
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           time.Millisecond,
		AllowAutoTopicCreation: true,
	}}, nil
}

// Topic returns the dead-letter topic.
func (d *DeadLetterWriter) Topic() string { return d.topic }

// Write stores the records durably; it returns only when the broker has
// acknowledged all of them or one failed.
func (d *DeadLetterWriter) Write(ctx context.Context, recs []DeadLetter) error {
	if len(recs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{
			Key:   r.Key,
			Value: r.Value,
			Headers: []kafka.Header{
				{Key: HeaderDLQTopic, Value: []byte(r.Topic)},
				{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
				{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
				{Key: HeaderDLQDecoder, Value: []byte(r.Decoder)},
				{Key: HeaderDLQReason, Value: []byte(r.Reason)},
				{Key: HeaderDLQTime, Value: []byte(r.Time.UTC().Format(time.RFC3339Nano))},
			},
		}
	}
	if err := d.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("write %d records to dead-letter topic %s: %w", len(recs), d.topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (d *DeadLetterWriter) Close() error { return d.w.Close() }
