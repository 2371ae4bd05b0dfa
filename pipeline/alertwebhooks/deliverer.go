// Package alertwebhooks delivers balance alerts to the configured
// webhooks: signed (sinks/webhook), retried with backoff, with the alert's
// idempotency key, and with every attempt in a delivery log.
//
// The Deliverer is a consumer group of its own on the alerts topic, so it
// neither slows nor is slowed by rating: the pipeline writes an alert to
// Kafka before it commits the usage that caused it, and the deliverer
// reads it from there. One worker per partition delivers that partition's
// alerts in offset order (alerts are keyed by customer, so a customer's
// alerts arrive in order) and commits an alert's offset only once every
// endpoint has a final outcome: delivered, refused (a 4xx other than 408
// and 429) or out of attempts. A crash or a stop before that delivers the
// alert again, with the same idempotency key: nothing is lost, and a
// receiver that keeps the first of each key sees each alert once.
//
// Operator alerts (pipeline.OperatorAlert, e.g. unpriced_model) share the
// topic and go to the same endpoints, with their kind as X-Tariff-Event.
// Every attempt is recorded: to the deliveries topic (durable, queryable)
// and in memory (Recent). Each instance delivers, and lists, the alerts
// of the partitions it owns.
package alertwebhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/sinks/webhook"
)

// EventBalanceAlert is the X-Tariff-Event header of a balance alert's
// delivery. An operator alert's is its kind (the tariff.alert.kind header,
// e.g. "unpriced_model").
const EventBalanceAlert = "balance_alert"

// Options are what the deliverer takes from the rest of tariff's
// configuration.
type Options struct {
	// Brokers are the Kafka bootstrap addresses. Required.
	Brokers []string
	// AlertsTopic is the topic pipeline.AlertWriter writes. Required.
	AlertsTopic string
	// GroupID is the deliverer's own consumer group, by convention
	// "<kafka.group_id>.webhooks". Required.
	GroupID string
	// Dialer and Transport carry TLS and SASL to the brokers (the group
	// and its readers; the delivery log writer). Nil: plaintext.
	Dialer    *kafka.Dialer
	Transport kafka.RoundTripper
	// SessionTimeout is the group's session timeout. Default 30s.
	SessionTimeout time.Duration
	// Deliveries is metrics.Tariff's WebhookDeliveries; attempts are
	// counted as webhook="alerts". Nil: not counted.
	Deliveries *metrics.CounterVec
	Log        zerolog.Logger
}

// Deliverer delivers the alerts topic to the configured endpoints.
type Deliverer struct {
	cfg       Config
	opt       Options
	endpoints []endpoint
	client    *http.Client
	backoff   webhook.Backoff
	logw      messageWriter
	recent    *ring
	counters  map[string]*metrics.Counter
	log       zerolog.Logger
}

type endpoint struct {
	url    string
	shown  string // url without credentials, for logs
	secret []byte
}

// New validates cfg and opt. Nothing connects before Run.
func New(cfg Config, opt Options) (*Deliverer, error) {
	cfg.SetDefaults()
	secrets, err := cfg.secrets()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if len(cfg.Alerts) == 0 {
		errs = append(errs, errors.New("webhooks.alerts: no endpoint: expected at least one url with its secret"))
	}
	if len(opt.Brokers) == 0 {
		errs = append(errs, errors.New("alert webhooks: no kafka brokers"))
	}
	if opt.AlertsTopic == "" {
		errs = append(errs, errors.New("alert webhooks: no alerts topic"))
	}
	if opt.GroupID == "" {
		errs = append(errs, errors.New("alert webhooks: no consumer group id"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opt.SessionTimeout == 0 {
		opt.SessionTimeout = 30 * time.Second
	}
	d := &Deliverer{
		cfg: cfg, opt: opt,
		client:  &http.Client{Timeout: cfg.Timeout},
		backoff: webhook.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax},
		logw:    newLogWriter(opt.Brokers, cfg.DeliveriesTopic, opt.Transport),
		recent:  newRing(cfg.RecentDeliveries),
		log:     opt.Log.With().Str("component", "alert-webhooks").Logger(),
	}
	for i, e := range cfg.Alerts {
		d.endpoints = append(d.endpoints, endpoint{url: e.URL, shown: logURL(e.URL), secret: secrets[i]})
	}
	if opt.Deliveries != nil {
		d.counters = map[string]*metrics.Counter{
			OutcomeDelivered: opt.Deliveries.With("alerts", metrics.OutcomeDelivered),
			OutcomeRetried:   opt.Deliveries.With("alerts", metrics.OutcomeRetried),
			OutcomeFailed:    opt.Deliveries.With("alerts", metrics.OutcomeFailed),
			// An interrupted attempt is made again after the restart.
			OutcomeInterrupted: opt.Deliveries.With("alerts", metrics.OutcomeRetried),
		}
	}
	return d, nil
}

// Recent returns up to limit of the latest attempts, newest first (limit
// <= 0: all kept, webhooks.recent_deliveries). Safe for concurrent use;
// the caller owns the slice.
func (d *Deliverer) Recent(limit int) []Delivery { return d.recent.recent(limit) }

// Close releases the delivery log writer and idle connections. Call it
// after Run has returned.
func (d *Deliverer) Close() error {
	d.client.CloseIdleConnections()
	return d.logw.Close()
}

// Run joins the group and delivers until ctx ends; it returns nil then.
// In-flight attempts are abandoned at once (their alerts are not
// committed, so they are delivered again by the next owner).
func (d *Deliverer) Run(ctx context.Context) error {
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:      d.opt.GroupID,
		Brokers: d.opt.Brokers,
		Dialer:  d.opt.Dialer,
		Topics:  []string{d.opt.AlertsTopic},
		// A new group starts at the oldest alert kept: one emitted before
		// the deliverer first started is delivered too, never skipped.
		StartOffset:           kafka.FirstOffset,
		SessionTimeout:        d.opt.SessionTimeout,
		RebalanceTimeout:      d.opt.SessionTimeout,
		HeartbeatInterval:     d.opt.SessionTimeout / 10,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			d.log.Debug().Msgf(msg, args...)
		}),
	})
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", d.opt.GroupID, err)
	}
	defer cg.Close()
	d.log.Info().Str("group", d.opt.GroupID).Str("topic", d.opt.AlertsTopic).Int("endpoints", len(d.endpoints)).Msg("delivering alerts to webhooks")
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			// kafka-go reports transient group errors here (a rebalance in
			// progress, a coordinator that moved) and rejoins by itself.
			d.log.Warn().Err(err).Msg("consumer group not ready; rejoining")
			if !pipeline.Sleep(ctx, 200*time.Millisecond) {
				return nil
			}
			continue
		}
		parts := gen.Assignments[d.opt.AlertsTopic]
		d.log.Info().Int32("generation", gen.ID).Int("partitions", len(parts)).Msg("alert partitions assigned")
		for _, p := range parts {
			gen.Start(func(gctx context.Context) {
				wctx, cancel := context.WithCancel(gctx)
				defer cancel()
				stop := context.AfterFunc(ctx, cancel)
				defer stop()
				d.runPartition(wctx, gen, p.ID, p.Offset)
			})
		}
	}
}

// runPartition delivers one partition's alerts in order from offset until
// ctx ends (the generation ended or Run stopped). It returns only then:
// kafka-go ends the whole generation when one worker returns.
func (d *Deliverer) runPartition(ctx context.Context, gen *kafka.Generation, partition int, offset int64) {
	log := d.log.With().Int("partition", partition).Logger()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: d.opt.Brokers, Topic: d.opt.AlertsTopic, Partition: partition, Dialer: d.opt.Dialer,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 250 * time.Millisecond,
		// An alert waits here only while the one before it is delivered.
		QueueCapacity: 16,
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		log.Error().Err(err).Int64("offset", offset).Msg("cannot start reading alerts")
		<-ctx.Done()
		return
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn().Err(err).Msg("fetch alerts; retrying")
			if !pipeline.Sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if err := d.deliver(ctx, m); err != nil {
			log.Debug().Err(err).Int64("offset", m.Offset).Msg("stopped before every endpoint had a final outcome; the alert will be delivered again")
			<-ctx.Done()
			return
		}
		if err := gen.CommitOffsets(map[string]map[int]int64{m.Topic: {partition: m.Offset + 1}}); err != nil {
			// The generation ended (a rebalance): the next owner starts at
			// the last committed alert and delivers this one again.
			log.Debug().Err(err).Int64("offset", m.Offset).Msg("commit failed; the alert will be delivered again")
			<-ctx.Done()
			return
		}
	}
}

// alertHead is what the deliverer reads of an alert: the rest is sent as
// is, byte for byte.
type alertHead struct {
	Key        string `json:"key"`
	CustomerID string `json:"customer_id"`
	Kind       string `json:"kind"`
}

// deliver sends one alert to every endpoint concurrently and returns once
// each has a final outcome, with every attempt recorded. An error means
// ctx ended first: the alert must not be committed.
func (d *Deliverer) deliver(ctx context.Context, m kafka.Message) error {
	var a alertHead
	jerr := json.Unmarshal(m.Value, &a)
	key, operatorKind := a.Key, ""
	for _, h := range m.Headers {
		switch h.Key {
		case pipeline.HeaderAlertKey:
			if len(h.Value) > 0 {
				key = string(h.Value)
			}
		case pipeline.HeaderAlertKind:
			operatorKind = string(h.Value)
		}
	}
	event := EventBalanceAlert
	switch {
	case operatorKind != "":
		// An operator alert (pipeline.OperatorAlert, e.g. unpriced_model)
		// shares the topic: it goes to the same endpoints, told apart by
		// X-Tariff-Event, and is about no customer.
		event, a.Kind = operatorKind, operatorKind
	case a.CustomerID == "":
		a.CustomerID = string(m.Key) // balance alerts are keyed by customer
	}
	base := Delivery{AlertKey: key, CustomerID: a.CustomerID, AlertKind: a.Kind, Event: event, Partition: m.Partition, Offset: m.Offset}
	if jerr != nil || key == "" {
		// Not an alert tariff wrote: no receiver could deduplicate it.
		// Recorded as failed for every endpoint, then committed: never
		// retried in a loop, never dropped without a trace.
		reason := "not a balance alert: no idempotency key"
		if jerr != nil {
			reason = "not a balance alert: " + jerr.Error()
		}
		d.log.Error().Int("partition", m.Partition).Int64("offset", m.Offset).Str("reason", reason).Msg("alert skipped")
		for _, ep := range d.endpoints {
			rec := base
			rec.URL, rec.Attempt, rec.Error, rec.Outcome, rec.At = ep.shown, 0, reason, OutcomeFailed, time.Now().UTC()
			d.count(OutcomeFailed)
			if err := d.record(ctx, rec); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, len(d.endpoints))
	var wg sync.WaitGroup
	for i := range d.endpoints {
		wg.Go(func() { errs[i] = d.deliverTo(ctx, &d.endpoints[i], base, m.Value) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deliverTo makes attempts until one is final. It returns an error only
// when ctx ends first.
func (d *Deliverer) deliverTo(ctx context.Context, ep *endpoint, base Delivery, body []byte) error {
	header := http.Header{
		webhook.HeaderIdempotencyKey: {base.AlertKey},
		webhook.HeaderEvent:          {base.Event},
	}
	for attempt := 1; ; attempt++ {
		start := time.Now()
		resp, err := webhook.Post(ctx, d.client, start, webhook.Request{
			URL: ep.url, Secret: ep.secret, Body: body, Header: header, UserAgent: "tariff-alert-webhook/1",
		})
		rec := base
		rec.URL, rec.Attempt, rec.Status = ep.shown, attempt, resp.Status
		rec.At, rec.DurationMS = start.UTC(), float64(time.Since(start).Microseconds())/1000
		switch {
		case err == nil:
			rec.Outcome = OutcomeDelivered
		case ctx.Err() != nil:
			rec.Outcome = OutcomeInterrupted
		case errors.Is(err, webhook.ErrPermanent) || attempt >= d.cfg.MaxAttempts:
			rec.Outcome = OutcomeFailed
		default:
			rec.Outcome = OutcomeRetried
		}
		if err != nil {
			rec.Error = truncate(err.Error(), 300)
		}
		d.count(rec.Outcome)
		if rec.Outcome == OutcomeInterrupted {
			// Logged on a short detached context: the attempt may have
			// reached the receiver, and the log should say so.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = d.record(lctx, rec)
			cancel()
			return ctx.Err()
		}
		if err := d.record(ctx, rec); err != nil {
			return err
		}
		switch rec.Outcome {
		case OutcomeDelivered:
			return nil
		case OutcomeFailed:
			d.log.Warn().Str("url", ep.shown).Str("alert", base.AlertKey).Str("customer", base.CustomerID).
				Int("attempts", attempt).Str("error", rec.Error).Msg("alert webhook delivery failed")
			return nil
		}
		if !pipeline.Sleep(ctx, d.backoff.Delay(attempt, resp.RetryAfter)) {
			return ctx.Err()
		}
	}
}

func (d *Deliverer) count(outcome string) {
	if c := d.counters[outcome]; c != nil {
		c.Inc()
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
