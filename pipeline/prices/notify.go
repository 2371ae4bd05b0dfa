package prices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/sinks/webhook"
)

// Notifier delivers announcements of new price versions to one target.
//
// The syncer stores each announcement in the state store's outbox in the
// same transaction as the version it announces, then calls Deliver; only
// a successful Deliver removes it. So an announcement is never lost (a
// crash or an unreachable receiver leaves it queued for the next sync) and
// may be delivered more than once: receivers deduplicate on the ids.
type Notifier interface {
	// Target names the receiver in the outbox, e.g. "kafka:tariff.prices.changes"
	// or "webhook:https://example.com/hook". It must stay the same across
	// restarts, or queued announcements are orphaned.
	Target() string
	// Deliver sends one announcement (Announcement JSON; the caller keeps
	// ownership of payload). It blocks until the receiver has it, ctx
	// ends, or it gives up; an error leaves the announcement queued.
	Deliver(ctx context.Context, payload []byte) error
	// Close releases connections.
	Close() error
}

// KafkaNotifier publishes each change of an announcement as its own
// message on the changes topic: key = the model, value = ChangeEvent JSON,
// headers tariff.event = price_change and tariff.price_version = the
// version id. It waits for every in-sync replica (acks=all) before an
// announcement counts as delivered.
type KafkaNotifier struct {
	topic string
	w     *kafka.Writer
}

// NewKafkaNotifier writes to topic on brokers. The topic is not created
// here (auto-creation would pick the broker's defaults): `tariff setup`
// creates it.
func NewKafkaNotifier(brokers []string, topic string, rt kafka.RoundTripper) (*KafkaNotifier, error) {
	if len(brokers) == 0 {
		return nil, errors.New("price change events: no kafka brokers")
	}
	if topic == "" {
		return nil, errors.New("price change events: no topic")
	}
	return &KafkaNotifier{topic: topic, w: &kafka.Writer{
		Addr:      kafka.TCP(brokers...),
		Transport: rt,
		Topic:     topic,
		// Murmur2 is the Java client's partitioner: every change of one
		// model lands on the partition any Kafka client would pick.
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		AllowAutoTopicCreation: false,
		// A whole announcement is written by one call; these let it go
		// out in a few requests instead of waiting out a batch timer.
		BatchSize:       1000,
		BatchTimeout:    5 * time.Millisecond,
		MaxAttempts:     5,
		WriteBackoffMin: 200 * time.Millisecond,
		WriteBackoffMax: 5 * time.Second,
	}}, nil
}

// Target implements Notifier.
func (n *KafkaNotifier) Target() string { return "kafka:" + n.topic }

// Deliver implements Notifier.
func (n *KafkaNotifier) Deliver(ctx context.Context, payload []byte) error {
	var a struct {
		VersionID string            `json:"version_id"`
		Changes   []json.RawMessage `json:"changes"`
	}
	if err := json.Unmarshal(payload, &a); err != nil {
		return fmt.Errorf("decode queued announcement: %w", err)
	}
	if len(a.Changes) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(a.Changes))
	for i, raw := range a.Changes {
		var key struct {
			Model string `json:"model"`
		}
		if err := json.Unmarshal(raw, &key); err != nil {
			return fmt.Errorf("decode queued change: %w", err)
		}
		msgs[i] = kafka.Message{
			Key:   []byte(key.Model),
			Value: raw,
			Headers: []kafka.Header{
				{Key: "tariff.event", Value: []byte("price_change")},
				{Key: "tariff.price_version", Value: []byte(a.VersionID)},
			},
		}
	}
	if err := n.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("publish %d price changes of %s to %s: %w", len(msgs), a.VersionID, n.topic, err)
	}
	return nil
}

// Close implements Notifier.
func (n *KafkaNotifier) Close() error { return n.w.Close() }

// WebhookNotifier POSTs each announcement, signed (the scheme of package
// sinks/webhook; header X-Tariff-Event: price_version), to one URL, retrying
// transient failures (network errors, 408, 429, 5xx) with capped
// exponential backoff that honours ctx.
type WebhookNotifier struct {
	cfg    WebhookConfig
	secret []byte
	client *http.Client
	log    zerolog.Logger
	// now and backoff are replaced in tests.
	now     func() time.Time
	backoff func(attempt int) time.Duration
	// deliveries counts attempts by outcome (CountIn); nil: not counted.
	deliveries map[string]*metrics.Counter
}

// CountIn counts this notifier's attempts in v (metrics.Tariff's
// WebhookDeliveries) as webhook="prices": delivered, retried (another
// attempt follows), failed (attempts used up or refused; the version stays
// queued for the next sync). Call it before the first Deliver.
func (n *WebhookNotifier) CountIn(v *metrics.CounterVec) {
	n.deliveries = map[string]*metrics.Counter{}
	for _, o := range []string{metrics.OutcomeDelivered, metrics.OutcomeRetried, metrics.OutcomeFailed} {
		n.deliveries[o] = v.With("prices", o)
	}
}

func (n *WebhookNotifier) count(outcome string) {
	if c := n.deliveries[outcome]; c != nil {
		c.Inc()
	}
}

// NewWebhookNotifier validates cfg and returns the notifier.
func NewWebhookNotifier(cfg WebhookConfig, log zerolog.Logger) (*WebhookNotifier, error) {
	sc := SyncConfig{Webhooks: []WebhookConfig{cfg}}
	sc.SetDefaults()
	cfg = sc.Webhooks[0]
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	secret, _ := cfg.secret()
	return &WebhookNotifier{
		cfg: cfg, secret: secret,
		client:  &http.Client{Timeout: cfg.Timeout},
		log:     log.With().Str("component", "webhook").Str("url", cfg.URL).Logger(),
		now:     time.Now,
		backoff: webhookBackoff,
	}, nil
}

// webhookBackoff is 500ms doubling per attempt, capped at 30s.
func webhookBackoff(attempt int) time.Duration {
	d := 500 * time.Millisecond << min(attempt, 10)
	return min(d, 30*time.Second)
}

// Target implements Notifier.
func (n *WebhookNotifier) Target() string { return "webhook:" + n.cfg.URL }

// Close implements Notifier.
func (n *WebhookNotifier) Close() error { n.client.CloseIdleConnections(); return nil }

// Deliver implements Notifier.
func (n *WebhookNotifier) Deliver(ctx context.Context, payload []byte) error {
	var id struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(payload, &id)
	var err error
	for attempt := 0; attempt < n.cfg.MaxAttempts; attempt++ {
		if attempt > 0 {
			if !pipeline.Sleep(ctx, n.backoff(attempt-1)) {
				return fmt.Errorf("webhook %s: %w (last error: %v)", n.cfg.URL, ctx.Err(), err)
			}
		}
		if err = n.post(ctx, id.ID, payload); err == nil {
			n.count(metrics.OutcomeDelivered)
			return nil
		}
		if errors.Is(err, webhook.ErrPermanent) || ctx.Err() != nil || attempt+1 == n.cfg.MaxAttempts {
			break
		}
		n.count(metrics.OutcomeRetried)
		n.log.Debug().Err(err).Int("attempt", attempt+1).Msg("webhook delivery failed; retrying")
	}
	if ctx.Err() == nil { // a stop is not a failure: the version stays queued
		n.count(metrics.OutcomeFailed)
	}
	return fmt.Errorf("webhook %s: %w", n.cfg.URL, err)
}

func (n *WebhookNotifier) post(ctx context.Context, delivery string, body []byte) error {
	_, err := webhook.Post(ctx, n.client, n.now(), webhook.Request{
		URL: n.cfg.URL, Secret: n.secret, Body: body, UserAgent: "tariff-price-webhook/1",
		Header: http.Header{webhook.HeaderDelivery: {delivery}, webhook.HeaderEvent: {"price_version"}},
	})
	return err
}
