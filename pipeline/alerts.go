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

// HeaderAlertKey carries an alert's idempotency key: an alert emitted
// again after a crash has the same key, so consumers keep the first.
const HeaderAlertKey = "tariff.alert.key"

// AlertWriter publishes balance alerts as JSON to a Kafka topic, keyed by
// customer id, and waits for the broker's acknowledgement.
type AlertWriter struct {
	w *kafka.Writer
}

// NewAlertWriter writes to topic on brokers through rt (nil: plaintext).
func NewAlertWriter(brokers []string, topic string, rt kafka.RoundTripper) (*AlertWriter, error) {
	if topic == "" {
		return nil, errors.New("alerts_topic: a topic name is required")
	}
	return &AlertWriter{w: &kafka.Writer{
		Addr: kafka.TCP(brokers...), Transport: rt, Topic: topic,
		Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		AllowAutoTopicCreation: true,
	}}, nil
}

// WriteAlerts publishes alerts and returns once all are acknowledged.
func (a *AlertWriter) WriteAlerts(ctx context.Context, alerts []balance.Alert) error {
	msgs := make([]kafka.Message, len(alerts))
	for i := range alerts {
		b, err := json.Marshal(&alerts[i])
		if err != nil {
			return fmt.Errorf("encode alert %s: %w", alerts[i].Key, err)
		}
		msgs[i] = kafka.Message{Key: []byte(alerts[i].CustomerID), Value: b,
			Headers: []kafka.Header{{Key: HeaderAlertKey, Value: []byte(alerts[i].Key)}}}
	}
	if err := a.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("publish %d alerts: %w", len(alerts), err)
	}
	return nil
}

// Close flushes and closes the writer.
func (a *AlertWriter) Close() error { return a.w.Close() }
