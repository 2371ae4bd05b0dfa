package prices

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/sinks/webhook"
)

// TestWebhookSignedDelivery runs a price change through a webhook whose
// receiver verifies every request's signature the way a customer's would,
// fails twice with 503 and then accepts.
func TestWebhookSignedDelivery(t *testing.T) {
	secret := []byte("s3cret")
	var mu sync.Mutex
	var attempts int
	var got []byte
	var verr []error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			verr = append(verr, err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if attempts <= 2 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Header.Get(webhook.HeaderDelivery) == "" || r.Header.Get(webhook.HeaderEvent) != "price_version" {
			t.Errorf("headers: %v", r.Header)
		}
		got = body
	}))
	defer srv.Close()

	t.Setenv("TEST_WEBHOOK_SECRET", string(secret))
	wh, err := NewWebhookNotifier(WebhookConfig{URL: srv.URL + "/hook", SecretEnv: "TEST_WEBHOOK_SECRET"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	wh.backoff = func(int) time.Duration { return time.Millisecond }
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	wh.CountIn(m.WebhookDeliveries)
	st := newState(t, openDB(t, ""))
	s := newSyncer(t, st, wh)
	syncAt(t, s, time.Time{}, litellm(map[string]string{"m": "0.000001 0.000002"}))
	res := syncAt(t, s, mustTime("2026-03-01T00:00:00Z"), litellm(map[string]string{"m": "0.0000015 0.000002"}))
	if len(res.Undelivered) != 0 || len(res.Delivered) != 1 {
		t.Fatalf("delivered %v, undelivered %v", res.Delivered, res.Undelivered)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(verr) != 0 || attempts != 3 {
		t.Fatalf("attempts %d, signature errors %v", attempts, verr)
	}
	for outcome, want := range map[string]uint64{metrics.OutcomeRetried: 2, metrics.OutcomeDelivered: 1, metrics.OutcomeFailed: 0} {
		if n := m.WebhookDeliveries.With("prices", outcome).Value(); n != want {
			t.Errorf("tariff_webhook_deliveries_total{webhook=prices,outcome=%s} = %d, want %d", outcome, n, want)
		}
	}
	var a Announcement
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatal(err)
	}
	if a.ID != res.Version.ID || a.Type != "price_version" || a.Summary.PricesUp != 1 || len(a.Changes) != 1 {
		t.Fatalf("announcement: %s", got)
	}
	c := a.Changes[0]
	if c.Kind != rating.ChangePriceUp || c.UnitName != "input" || c.Old.String() != "0.000001" || c.New.String() != "0.0000015" ||
		c.Relative.String() != "0.5" || c.OldPerMillion != "1" || c.NewPerMillion != "1.5" {
		t.Errorf("change: %+v", c)
	}
}

func TestWebhookGivesUpOnClientErrors(t *testing.T) {
	var n int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	defer srv.Close()
	wh, err := NewWebhookNotifier(WebhookConfig{URL: srv.URL, Secret: "x"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	wh.backoff = func(int) time.Duration { return time.Millisecond }
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	wh.CountIn(m.WebhookDeliveries)
	err = wh.Deliver(t.Context(), []byte(`{"id":"v"}`))
	if err == nil || !strings.Contains(err.Error(), "404") || n != 1 {
		t.Errorf("404: %v after %d attempts, want one attempt", err, n)
	}
	if f, r := m.WebhookDeliveries.With("prices", metrics.OutcomeFailed).Value(), m.WebhookDeliveries.With("prices", metrics.OutcomeRetried).Value(); f != 1 || r != 0 {
		t.Errorf("a refused delivery counted failed %d, retried %d; want 1, 0", f, r)
	}
	if _, err := NewWebhookNotifier(WebhookConfig{URL: "ftp://x"}, testLog(t)); err == nil ||
		!strings.Contains(err.Error(), "prices.webhooks[0].url") || !strings.Contains(err.Error(), "secret: required") {
		t.Errorf("bad config: %v", err)
	}
}
