package alertwebhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
)

// Outcomes of one attempt, as the delivery log and the metrics name them.
// Delivered and failed are final; retried means another attempt follows;
// interrupted means the deliverer stopped (or lost the partition) during
// the attempt, so the alert was not committed and will be delivered again,
// with the same idempotency key.
const (
	OutcomeDelivered   = "delivered"
	OutcomeRetried     = "retried"
	OutcomeFailed      = "failed"
	OutcomeInterrupted = "interrupted"
)

// Delivery is one attempt to deliver one alert to one endpoint: a record
// of the deliveries topic (JSON, keyed by AlertKey) and an entry of
// Deliverer.Recent.
type Delivery struct {
	AlertKey string `json:"alert_key"`
	// CustomerID is empty for an operator alert.
	CustomerID string `json:"customer_id,omitempty"`
	// AlertKind is the alert's kind (threshold, zero, recovery, paused,
	// resumed).
	AlertKind string `json:"alert_kind,omitempty"`
	// Event is the X-Tariff-Event header sent: balance_alert, or an
	// operator alert's kind.
	Event string `json:"event"`
	// URL is the endpoint, without user information and query.
	URL     string `json:"url"`
	Attempt int    `json:"attempt"`
	// Status is the HTTP status; 0 when no response arrived (Error says
	// why).
	Status     int       `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMS float64   `json:"duration_ms"`
	At         time.Time `json:"at"`
	Outcome    string    `json:"outcome"`
	// Where the alert is in the alerts topic.
	Partition int   `json:"alert_partition"`
	Offset    int64 `json:"alert_offset"`
}

// ring keeps the latest deliveries in memory.
type ring struct {
	mu   sync.Mutex
	buf  []Delivery
	next int // where the next entry goes
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]Delivery, n)} }

func (r *ring) add(d Delivery) {
	r.mu.Lock()
	r.buf[r.next] = d
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// recent returns up to limit entries, newest first; limit <= 0 means all
// that are kept.
func (r *ring) recent(limit int) []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	out := make([]Delivery, 0, limit)
	for i := 1; i <= limit; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// messageWriter is what the delivery log is written to: a *kafka.Writer.
// WriteMessages blocks until the broker acknowledges (acks=all).
type messageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

func newLogWriter(brokers []string, topic string, rt kafka.RoundTripper) *kafka.Writer {
	return &kafka.Writer{
		Addr: kafka.TCP(brokers...), Transport: rt, Topic: topic,
		// Keyed by the alert key: all attempts of one alert, to every
		// endpoint, are in one partition, in order.
		Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		// Endpoints of one alert write concurrently; a short timer lets
		// their records share a request without delaying a lone one.
		BatchTimeout: 2 * time.Millisecond,
		// When the topic does not exist and the broker allows it, it is
		// created with the broker's defaults.
		AllowAutoTopicCreation: true,
	}
}

// record keeps d in memory and writes it to the deliveries topic, retrying
// with backoff until the broker has it or ctx ends: the alert is committed
// only after its attempts are in the log.
func (d *Deliverer) record(ctx context.Context, rec Delivery) error {
	d.recent.add(rec)
	b, err := json.Marshal(&rec)
	if err != nil {
		panic("BUG: a Delivery does not encode: " + err.Error())
	}
	msg := kafka.Message{Key: []byte(rec.AlertKey), Value: b}
	for failed := 1; ; failed++ {
		err := d.logw.WriteMessages(ctx, msg)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("write delivery log to %s: %w", d.cfg.DeliveriesTopic, ctx.Err())
		}
		wait := d.backoff.Delay(failed, 0)
		d.log.Warn().Err(err).Dur("retry_in", wait).Str("topic", d.cfg.DeliveriesTopic).Msg("delivery log write failed; retrying")
		if !pipeline.Sleep(ctx, wait) {
			return fmt.Errorf("write delivery log to %s: %w (last error: %v)", d.cfg.DeliveriesTopic, ctx.Err(), err)
		}
	}
}
