package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// HeaderAlertKey carries an alert's idempotency key: an alert emitted
// again after a crash has the same key, so consumers keep the first.
const HeaderAlertKey = "tariff.alert.key"

// HeaderAlertKind names an operator alert's kind (see OperatorAlert).
// Balance alerts do not carry it: their kind is in their JSON body, and
// they stay as they were on the wire.
const HeaderAlertKind = "tariff.alert.kind"

// OperatorAlert is an alert for the seller's operators rather than about
// one customer's balance: today only "unpriced_model" (see UnpricedModel).
// It travels on the alerts topic beside the balance alerts, told apart by
// the tariff.alert.kind header.
type OperatorAlert struct {
	// Kind goes in the tariff.alert.kind header (metrics.KindUnpricedModel).
	Kind string
	// Key is the idempotency key (tariff.alert.key header): the same
	// condition in the same window always has the same key, so a consumer
	// keeps the first and drops repeats (from another partition, or the
	// same batch applied again after a crash).
	Key string
	// MessageKey is the Kafka message key, which keeps one subject's
	// alerts on one partition, in order (unpriced_model: provider/model).
	MessageKey string
	// Body is the JSON payload.
	Body []byte
}

// OperatorAlerts publishes operator alerts and returns once all are
// acknowledged. The slice and its bodies are the caller's again after the
// call. An Alerts implementation that also implements OperatorAlerts gets
// them (AlertWriter does); one that does not (tests of balances only)
// simply receives none.
type OperatorAlerts interface {
	WriteOperatorAlerts(ctx context.Context, alerts []OperatorAlert) error
}

// UnpricedModel is the body of an unpriced_model alert: events of a model
// were refused to the dead-letter topic because the model, or a unit it
// used, has no price, so that usage is not billed until prices are fixed
// and the dead letters replayed. One alert is emitted per provider and
// model per partition per UTC hour (of processing time), at the end of the
// batch that refused the first such event in that hour.
type UnpricedModel struct {
	Kind     string `json:"kind"` // "unpriced_model"
	Key      string `json:"key"`
	Provider string `json:"provider"`
	Model    string `json:"model"`
	// PriceKey is the price-list entry tried when the model was found but
	// a unit has no price; empty when no entry matches the model.
	PriceKey string `json:"price_key"`
	// Unit is the unit without a price, when that was the cause.
	Unit string `json:"unit,omitempty"`
	// Reason is the rating error, as written in the dead letter.
	Reason string `json:"reason"`
	// The first refused event of the hour and where its message came from.
	FirstEventID    string `json:"first_event_id"`
	FirstCustomerID string `json:"first_customer_id"`
	Topic           string `json:"topic"`
	Partition       int    `json:"partition"`
	Offset          int64  `json:"offset"`
	// Count is how many messages of this model this partition refused as
	// unpriced in the hour, up to and including the batch that alerts.
	Count int64 `json:"count"`
	// Hour is the start of the UTC hour the alert covers.
	Hour time.Time `json:"hour"`
}

// UnpricedAlertKey is the idempotency key of the unpriced_model alert for
// provider and model in the UTC hour starting at hour, e.g.
// "unpriced:openai/gpt-9:2026-11-02T13Z". It leaves the partition out on
// purpose: the partitions that meet the same model in the same hour emit
// the same key, and a consumer that deduplicates on it tells the seller
// once.
func UnpricedAlertKey(provider, model string, hour time.Time) string {
	return "unpriced:" + provider + "/" + model + ":" + hour.UTC().Format("2006-01-02T15Z")
}

// AlertWriter publishes balance alerts as JSON to a Kafka topic, keyed by
// customer id, and waits for the broker's acknowledgement. It publishes
// operator alerts (OperatorAlerts) to the same topic.
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

// WriteOperatorAlerts publishes operator alerts with their kind and key
// headers and returns once all are acknowledged.
func (a *AlertWriter) WriteOperatorAlerts(ctx context.Context, alerts []OperatorAlert) error {
	msgs := make([]kafka.Message, len(alerts))
	for i, al := range alerts {
		msgs[i] = kafka.Message{Key: []byte(al.MessageKey), Value: al.Body,
			Headers: []kafka.Header{{Key: HeaderAlertKey, Value: []byte(al.Key)}, {Key: HeaderAlertKind, Value: []byte(al.Kind)}}}
	}
	if err := a.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("publish %d operator alerts: %w", len(alerts), err)
	}
	return nil
}

// Close flushes and closes the writer.
func (a *AlertWriter) Close() error { return a.w.Close() }

// unpricedAlerts tells the seller that a model is not billed: events of
// it are refused as unpriced (ErrUnpriced) to the dead-letter topic, where
// nobody may look for a while. At most one unpriced_model alert goes out
// per provider and model per partition per UTC hour of processing time;
// the key (UnpricedAlertKey) is the same in every partition, so consumers
// that deduplicate on it hear of a model once an hour.
//
// The state is in memory only: after a restart or a rebalance the next
// unpriced event of the hour alerts again, with the same key. At most
// maxUnpricedModelsPerHour models are tracked per partition and hour.
type unpricedAlerts struct {
	w       OperatorAlerts
	emitted *metrics.Counter
	// hour is the UTC hour models covers; a batch in a later hour starts
	// afresh, which also keeps models as small as one hour's models.
	hour   time.Time
	models map[unpricedModelKey]*unpricedEntry
	// fresh are the models first refused in the batch in hand: alerted at
	// its end.
	fresh []*unpricedEntry
	out   []OperatorAlert
}

type unpricedModelKey struct{ provider, model string }

// maxUnpricedModelsPerHour bounds the models one partition alerts about
// in an hour. Model names come from outside: a client sending a new
// made-up name with every request must not turn into as many alerts and
// as much memory. Refusals beyond it are still dead-lettered and counted
// in tariff_messages_unpriced_total.
const maxUnpricedModelsPerHour = 1000

type unpricedEntry struct {
	body UnpricedModel
}

// note counts one message refused because ev has no price (err, as reason
// in the dead letter), in the hour of now.
func (u *unpricedAlerts) note(m *kafka.Message, ev *schemas.UsageEvent, err error, reason string, now time.Time) {
	hour := now.UTC().Truncate(time.Hour)
	if !hour.Equal(u.hour) {
		clear(u.models)
		u.hour = hour
	}
	e := u.models[unpricedModelKey{ev.Provider, ev.Model}]
	if e == nil && len(u.models) >= maxUnpricedModelsPerHour {
		return
	}
	if e == nil {
		// Cloned: the event's strings may point into the fetched message's
		// buffer, which the source reuses.
		provider, model := strings.Clone(ev.Provider), strings.Clone(ev.Model)
		e = &unpricedEntry{body: UnpricedModel{
			Kind: metrics.KindUnpricedModel, Key: UnpricedAlertKey(provider, model, hour),
			Provider: provider, Model: model, Reason: reason,
			FirstEventID: strings.Clone(ev.ID), FirstCustomerID: strings.Clone(ev.CustomerID),
			Topic: strings.Clone(m.Topic), Partition: m.Partition, Offset: m.Offset, Hour: hour,
		}}
		var re *rating.RateError
		if errors.As(err, &re) {
			e.body.PriceKey = re.PriceKey
			if re.HasUnit {
				e.body.Unit = re.Unit.String()
			}
		}
		u.models[unpricedModelKey{provider, model}] = e
		u.fresh = append(u.fresh, e)
	}
	e.body.Count++
}

// flush returns the alerts of the models first refused in this batch and
// forgets them as fresh. The returned slice is reused by the next flush.
func (u *unpricedAlerts) flush() ([]OperatorAlert, error) {
	u.out = u.out[:0]
	for _, e := range u.fresh {
		b, err := json.Marshal(&e.body)
		if err != nil {
			return nil, fmt.Errorf("encode unpriced-model alert %s: %w", e.body.Key, err)
		}
		u.out = append(u.out, OperatorAlert{Kind: e.body.Kind, Key: e.body.Key, MessageKey: e.body.Provider + "/" + e.body.Model, Body: b})
	}
	clear(u.fresh)
	u.fresh = u.fresh[:0]
	return u.out, nil
}
