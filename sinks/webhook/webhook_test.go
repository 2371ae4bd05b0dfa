package webhook

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

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

// TestPostClassifies checks what each answer means for a retry, and that
// the request is signed over exactly the bytes sent.
func TestPostClassifies(t *testing.T) {
	secret := []byte("0123456789abcdef")
	status := 0
	var verr error
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		verr = Verify(secret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, time.Now(), time.Minute)
		hdr = r.Header
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("why"))
	}))
	defer srv.Close()
	for _, c := range []struct {
		status        int
		ok, permanent bool
		retryAfter    time.Duration
	}{
		{200, true, false, 0}, {204, true, false, 0},
		{400, false, true, 0}, {401, false, true, 0}, {404, false, true, 0}, {410, false, true, 0},
		{408, false, false, 0}, {429, false, false, 7 * time.Second}, {500, false, false, 0}, {502, false, false, 0}, {503, false, false, 0},
	} {
		status = c.status
		resp, err := Post(t.Context(), srv.Client(), time.Now(), Request{URL: srv.URL, Secret: secret, Body: []byte(`{"a":1}`),
			Header: http.Header{HeaderIdempotencyKey: {"k1"}}, UserAgent: "test/1"})
		if verr != nil {
			t.Errorf("%d: signature: %v", c.status, verr)
		}
		if hdr.Get(HeaderIdempotencyKey) != "k1" || hdr.Get("Content-Type") != "application/json" || hdr.Get("User-Agent") != "test/1" {
			t.Errorf("%d: headers %v", c.status, hdr)
		}
		if resp.Status != c.status || (err == nil) != c.ok || errors.Is(err, ErrPermanent) != c.permanent || resp.RetryAfter != c.retryAfter {
			t.Errorf("%d: status %d, retry after %s, err %v; want ok %v, permanent %v, retry after %s", c.status, resp.Status, resp.RetryAfter, err, c.ok, c.permanent, c.retryAfter)
		}
	}
	srv.Close()
	resp, err := Post(t.Context(), http.DefaultClient, time.Now(), Request{URL: srv.URL, Secret: secret})
	if err == nil || errors.Is(err, ErrPermanent) || resp.Status != 0 {
		t.Errorf("closed server: status %d, err %v; want a transient error", resp.Status, err)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for _, c := range []struct {
		failed     int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{1, 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 0, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 0, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 0, 500 * time.Millisecond, time.Second},
		{60, 0, 500 * time.Millisecond, time.Second},
		{1, 700 * time.Millisecond, 700 * time.Millisecond, 700 * time.Millisecond},
		{1, time.Hour, time.Second, time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b.Delay(c.failed, c.retryAfter)
			if d < c.lo || d > c.hi {
				t.Fatalf("Delay(%d, %s) = %s, want %s..%s", c.failed, c.retryAfter, d, c.lo, c.hi)
			}
			seen[d] = true
		}
		if c.lo != c.hi && len(seen) < 10 {
			t.Errorf("Delay(%d) took only %d values in 200 draws: no jitter", c.failed, len(seen))
		}
	}
}
