package alertwebhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/sinks/webhook"
	"github.com/tariff-dev/tariff/sources/secret"
)

const testSecret = "0123456789abcdef-alerts"

// receiver is an httptest endpoint that verifies every request the way a
// customer's receiver would and answers from a script.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	// answer returns the status of the n-th request (1-based).
	answer func(n int) int
	got    []received
}

type received struct {
	key, event, contentType string
	body                    []byte
	sigErr                  error
}

func newReceiver(t *testing.T, secret string, answer func(n int) int) *receiver {
	r := &receiver{t: t, secret: []byte(secret), answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		rec := received{
			key: req.Header.Get(webhook.HeaderIdempotencyKey), event: req.Header.Get(webhook.HeaderEvent),
			contentType: req.Header.Get("Content-Type"), body: body,
			sigErr: webhook.Verify(r.secret, req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute),
		}
		r.mu.Lock()
		r.got = append(r.got, rec)
		n := len(r.got)
		r.mu.Unlock()
		status := r.answer(n)
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// logRecorder stands in for the deliveries topic in unit tests; the
// integration test reads the real one.
type logRecorder struct {
	mu   sync.Mutex
	recs []Delivery
}

func (l *logRecorder) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		var d Delivery
		if err := json.Unmarshal(m.Value, &d); err != nil {
			return err
		}
		if string(m.Key) != d.AlertKey {
			return fmt.Errorf("delivery record keyed %q, alert key %q", m.Key, d.AlertKey)
		}
		l.recs = append(l.recs, d)
	}
	return nil
}

func (l *logRecorder) Close() error { return nil }

func (l *logRecorder) forURL(u string) []Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Delivery
	for _, d := range l.recs {
		if d.URL == u {
			out = append(out, d)
		}
	}
	return out
}

// newTestDeliverer builds a deliverer of urls with millisecond backoffs
// and the log recorder in place of the topic.
func newTestDeliverer(t *testing.T, maxAttempts int, urls ...string) (*Deliverer, *logRecorder, *metrics.Tariff) {
	t.Helper()
	t.Setenv("TEST_ALERT_WEBHOOK_SECRET", testSecret)
	cfg := Config{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, MaxAttempts: maxAttempts, RecentDeliveries: 100}
	for _, u := range urls {
		cfg.Alerts = append(cfg.Alerts, Endpoint{URL: u})
		cfg.Alerts[len(cfg.Alerts)-1].Secret.Env = "TEST_ALERT_WEBHOOK_SECRET"
	}
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	d, err := New(cfg, Options{Brokers: []string{"127.0.0.1:1"}, AlertsTopic: "alerts", GroupID: "g.webhooks",
		Deliveries: m.WebhookDeliveries, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{}
	d.logw = rec
	return d, rec, m
}

// alertMessage encodes an alert the way pipeline.AlertWriter does.
func alertMessage(t *testing.T, customer string, seq uint32, offset int64) (kafka.Message, balance.Alert) {
	t.Helper()
	a := balance.Alert{Key: fmt.Sprintf("%s-zero-%d", customer, seq), CustomerID: customer, Kind: balance.AlertZero,
		Seq: seq, At: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC), Cause: balance.Cause{Kind: balance.CauseUsage, ID: "ev-1"}}
	b, err := json.Marshal(&a)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: "alerts", Partition: 2, Offset: offset, Key: []byte(customer), Value: b,
		Headers: []kafka.Header{{Key: pipeline.HeaderAlertKey, Value: []byte(a.Key)}}}, a
}

func outcomes(ds []Delivery) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%d:%d:%s", d.Attempt, d.Status, d.Outcome))
	}
	return strings.Join(s, " ")
}

// TestDeliverRetriesThenDelivers: one endpoint fails once with 500, the
// other twice with 429; both get the alert, signed, with its key on every
// attempt, and every attempt is in the log and the metrics.
func TestDeliverRetriesThenDelivers(t *testing.T) {
	r500 := newReceiver(t, testSecret, func(n int) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	r429 := newReceiver(t, testSecret, func(n int) int {
		if n <= 2 {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	d, log, m := newTestDeliverer(t, 10, r500.srv.URL+"/a", r429.srv.URL+"/b?token=t0p")
	msg, a := alertMessage(t, "acme", 1, 41)
	if err := d.deliver(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		r    *receiver
		n    int
		url  string
		want string
	}{
		"500": {r500, 2, r500.srv.URL + "/a", "1:500:retried 2:204:delivered"},
		"429": {r429, 3, r429.srv.URL + "/b?redacted", "1:429:retried 2:429:retried 3:200:delivered"},
	} {
		got := c.r.requests()
		if len(got) != c.n {
			t.Errorf("%s: %d requests, want %d", name, len(got), c.n)
		}
		for i, g := range got {
			if g.sigErr != nil || g.key != a.Key || g.event != EventBalanceAlert || g.contentType != "application/json" || !bytes.Equal(g.body, msg.Value) {
				t.Errorf("%s: request %d: signature %v, key %q, event %q, content type %q, body %s", name, i+1, g.sigErr, g.key, g.event, g.contentType, g.body)
			}
		}
		recs := log.forURL(c.url)
		if s := outcomes(recs); s != c.want {
			t.Errorf("%s: log %q, want %q", name, s, c.want)
		}
		for _, rec := range recs {
			if rec.AlertKey != a.Key || rec.CustomerID != "acme" || rec.AlertKind != "zero" || rec.Event != EventBalanceAlert || rec.Partition != 2 || rec.Offset != 41 ||
				rec.At.IsZero() || rec.DurationMS <= 0 || (rec.Outcome == OutcomeRetried) != (rec.Error != "") {
				t.Errorf("%s: log entry %+v", name, rec)
			}
		}
	}
	if got := d.Recent(0); len(got) != 5 || got[0].Outcome != OutcomeDelivered {
		t.Errorf("Recent: %d entries, newest %+v; want 5, newest delivered", len(got), got[0])
	}
	if got := d.Recent(2); len(got) != 2 {
		t.Errorf("Recent(2): %d entries", len(got))
	}
	for outcome, want := range map[string]uint64{metrics.OutcomeDelivered: 2, metrics.OutcomeRetried: 3, metrics.OutcomeFailed: 0} {
		if n := m.WebhookDeliveries.With("alerts", outcome).Value(); n != want {
			t.Errorf("tariff_webhook_deliveries_total{webhook=alerts,outcome=%s} = %d, want %d", outcome, n, want)
		}
	}
}

// TestDeliverFinalFailures: a 400 is not retried; a receiver that keeps
// failing with 503 gets max_attempts attempts. Both are final: deliver
// returns nil, so the alert is committed.
func TestDeliverFinalFailures(t *testing.T) {
	r400 := newReceiver(t, testSecret, func(int) int { return http.StatusBadRequest })
	r503 := newReceiver(t, testSecret, func(int) int { return http.StatusServiceUnavailable })
	d, log, m := newTestDeliverer(t, 4, r400.srv.URL, r503.srv.URL)
	msg, _ := alertMessage(t, "acme", 2, 7)
	if err := d.deliver(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	if n := len(r400.requests()); n != 1 {
		t.Errorf("400: %d requests, want 1 (not retried)", n)
	}
	if s := outcomes(log.forURL(r400.srv.URL)); s != "1:400:failed" {
		t.Errorf("400: log %q", s)
	}
	if n := len(r503.requests()); n != 4 {
		t.Errorf("503: %d requests, want 4 (max_attempts)", n)
	}
	if s := outcomes(log.forURL(r503.srv.URL)); s != "1:503:retried 2:503:retried 3:503:retried 4:503:failed" {
		t.Errorf("503: log %q", s)
	}
	if f := m.WebhookDeliveries.With("alerts", metrics.OutcomeFailed).Value(); f != 2 {
		t.Errorf("failed counted %d, want 2", f)
	}
}

// TestDeliverStopsWithoutFinalOutcome: when ctx ends while an endpoint is
// still being retried, deliver returns an error (the alert must not be
// committed) and the log says the attempt was interrupted or retried.
func TestDeliverStopsWithoutFinalOutcome(t *testing.T) {
	release := make(chan struct{})
	slow := newReceiver(t, testSecret, func(int) int { <-release; return http.StatusOK })
	defer close(release)
	ok := newReceiver(t, testSecret, func(int) int { return http.StatusOK })
	d, log, _ := newTestDeliverer(t, 10, slow.srv.URL, ok.srv.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	msg, _ := alertMessage(t, "acme", 3, 9)
	if err := d.deliver(ctx, msg); err == nil {
		t.Fatal("deliver returned nil although one endpoint had no final outcome")
	}
	if s := outcomes(log.forURL(slow.srv.URL)); s != "1:0:interrupted" {
		t.Errorf("slow endpoint: log %q, want one interrupted attempt", s)
	}
	if s := outcomes(log.forURL(ok.srv.URL)); s != "1:200:delivered" {
		t.Errorf("other endpoint: log %q", s)
	}
}

// TestDeliverRefusesForeignMessages: a message that is not an alert is
// recorded as failed for every endpoint, sent nowhere, and committed.
func TestDeliverRefusesForeignMessages(t *testing.T) {
	r := newReceiver(t, testSecret, func(int) int { return http.StatusOK })
	d, log, _ := newTestDeliverer(t, 3, r.srv.URL)
	for _, m := range []kafka.Message{
		{Key: []byte("acme"), Value: []byte("not json"), Offset: 1},
		{Key: []byte("acme"), Value: []byte(`{"customer_id":"acme"}`), Offset: 2},
	} {
		if err := d.deliver(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.requests()); n != 0 {
		t.Errorf("%d requests for messages that are not alerts", n)
	}
	recs := log.forURL(r.srv.URL)
	if len(recs) != 2 || recs[0].Outcome != OutcomeFailed || !strings.Contains(recs[0].Error, "not a balance alert") ||
		!strings.Contains(recs[1].Error, "no idempotency key") {
		t.Errorf("log: %+v", recs)
	}
}

func TestRing(t *testing.T) {
	r := newRing(3)
	if got := r.recent(10); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	for i := 1; i <= 5; i++ {
		r.add(Delivery{Attempt: i})
	}
	var got []int
	for _, d := range r.recent(0) {
		got = append(got, d.Attempt)
	}
	if fmt.Sprint(got) != "[5 4 3]" {
		t.Errorf("recent: %v, want [5 4 3]", got)
	}
	if d := r.recent(1); len(d) != 1 || d[0].Attempt != 5 {
		t.Errorf("recent(1): %v", d)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Setenv("TEST_SHORT_SECRET", "short")
	t.Setenv("TEST_GOOD_SECRET", testSecret)
	check := func(name string, c Config, want ...string) {
		t.Helper()
		c.SetDefaults()
		err := c.Validate()
		if len(want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			return
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", name, err, w)
			}
		}
		if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "short\"") {
			t.Errorf("%s: the error shows a secret: %v", name, err)
		}
	}
	good := Endpoint{URL: "https://billing.example.com/hooks", Secret: secretEnv("TEST_GOOD_SECRET")}
	check("defaults", Config{})
	check("one endpoint", Config{Alerts: []Endpoint{good}})
	check("bad url", Config{Alerts: []Endpoint{{URL: "billing.example.com/hooks", Secret: good.Secret}}}, "webhooks.alerts[0].url", "expected an http or https URL")
	check("ftp url", Config{Alerts: []Endpoint{{URL: "ftp://x/y", Secret: good.Secret}}}, "webhooks.alerts[0].url")
	check("no secret", Config{Alerts: []Endpoint{{URL: good.URL}}}, "webhooks.alerts[0].secret: required")
	check("short secret", Config{Alerts: []Endpoint{{URL: good.URL, Secret: secretEnv("TEST_SHORT_SECRET")}}}, "webhooks.alerts[0].secret", "5 bytes: expected at least 16")
	check("unset secret", Config{Alerts: []Endpoint{{URL: good.URL, Secret: secretEnv("TEST_NOT_SET_ANYWHERE")}}}, "webhooks.alerts[0].secret.env", "not set")
	check("twice", Config{Alerts: []Endpoint{good, good}}, "webhooks.alerts[1].url", "also webhooks.alerts[0]")
	check("retry bounds", Config{RetryMin: 2 * time.Second, RetryMax: time.Second}, "webhooks.retry_max", "expected at least retry_min")
	check("attempts", Config{MaxAttempts: -1}, "webhooks.max_attempts", "expected 1..100")
	check("topic", Config{DeliveriesTopic: "a b"}, "webhooks.deliveries_topic")
	if _, err := New(Config{}, Options{}); err == nil || !strings.Contains(err.Error(), "webhooks.alerts: no endpoint") {
		t.Errorf("New without endpoints: %v", err)
	}
}

func secretEnv(name string) secret.Secret { return secret.Secret{Env: name} }

// TestDeliverOperatorAlert: an operator alert on the same topic goes to
// the same endpoints with its kind as the event and its own key.
func TestDeliverOperatorAlert(t *testing.T) {
	r := newReceiver(t, testSecret, func(int) int { return http.StatusOK })
	d, log, _ := newTestDeliverer(t, 3, r.srv.URL)
	key := pipeline.UnpricedAlertKey("openai", "gpt-9", time.Date(2026, 11, 2, 13, 0, 0, 0, time.UTC))
	body := []byte(`{"kind":"unpriced_model","key":"` + key + `","provider":"openai","model":"gpt-9"}`)
	m := kafka.Message{Key: []byte("openai/gpt-9"), Value: body, Offset: 3, Headers: []kafka.Header{
		{Key: pipeline.HeaderAlertKey, Value: []byte(key)}, {Key: pipeline.HeaderAlertKind, Value: []byte("unpriced_model")}}}
	if err := d.deliver(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	got := r.requests()
	if len(got) != 1 || got[0].event != "unpriced_model" || got[0].key != key || got[0].sigErr != nil || !bytes.Equal(got[0].body, body) {
		t.Fatalf("requests: %+v", got)
	}
	recs := log.forURL(r.srv.URL)
	if len(recs) != 1 || recs[0].CustomerID != "" || recs[0].AlertKind != "unpriced_model" || recs[0].Event != "unpriced_model" || recs[0].Outcome != OutcomeDelivered {
		t.Errorf("log: %+v", recs)
	}
}
