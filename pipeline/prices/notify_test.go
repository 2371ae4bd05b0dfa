package prices

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/rating"
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
		if err := Verify(secret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			verr = append(verr, err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if attempts <= 2 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Header.Get(HeaderDelivery) == "" {
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

func TestVerify(t *testing.T) {
	secret := []byte("k")
	body := []byte(`{"id":"v1"}`)
	now := time.Unix(1_770_000_000, 0)
	sig := Sign(secret, now.Unix(), body)
	ts := "1770000000"
	for _, c := range []struct {
		name          string
		secret        []byte
		ts, sig, body string
		at            time.Time
		ok            bool
	}{
		{"valid", secret, ts, sig, string(body), now, true},
		{"valid, 4 minutes later", secret, ts, sig, string(body), now.Add(4 * time.Minute), true},
		{"replayed 10 minutes later", secret, ts, sig, string(body), now.Add(10 * time.Minute), false},
		{"body changed", secret, ts, sig, `{"id":"v2"}`, now, false},
		{"timestamp changed", secret, "1770000001", sig, string(body), now, false},
		{"other secret", []byte("x"), ts, sig, string(body), now, false},
		{"timestamp not a number", secret, "yesterday", sig, string(body), now, false},
	} {
		err := Verify(c.secret, c.ts, c.sig, []byte(c.body), c.at, 5*time.Minute)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrBadSignature)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// Known answer, computed independently (Python: hmac.new(b"k",
	// b'1770000000.{"id":"v1"}', hashlib.sha256).hexdigest()), so
	// receivers in other languages can check their implementation.
	if want := "sha256=9bd30115a604024f48342bc878666989781e772b0987c6c6678bfabff9a30c0b"; sig != want {
		t.Errorf("signature %s, want %s", sig, want)
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
	err = wh.Deliver(t.Context(), []byte(`{"id":"v"}`))
	if err == nil || !strings.Contains(err.Error(), "404") || n != 1 {
		t.Errorf("404: %v after %d attempts, want one attempt", err, n)
	}
	if _, err := NewWebhookNotifier(WebhookConfig{URL: "ftp://x"}, testLog(t)); err == nil ||
		!strings.Contains(err.Error(), "prices.webhooks[0].url") || !strings.Contains(err.Error(), "secret: required") {
		t.Errorf("bad config: %v", err)
	}
}
