package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrPermanent marks a failure retrying cannot fix: the receiver answered
// with a 4xx other than 408 and 429 (it refuses the delivery), or the
// request could not be built.
var ErrPermanent = errors.New("refused by the receiver")

// Request is one signed POST.
type Request struct {
	URL    string
	Secret []byte
	// Body is sent as is and signed; the caller keeps ownership.
	Body []byte
	// Header holds extra headers (HeaderEvent, HeaderIdempotencyKey...).
	Header http.Header
	// UserAgent names the sender, e.g. "tariff-alert-webhook/1".
	UserAgent string
}

// Response is what one attempt got back.
type Response struct {
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// RetryAfter is a 429's or 503's Retry-After in seconds, 0 when absent.
	RetryAfter time.Duration
}

// Post makes one attempt, signed at now. It blocks until the receiver
// answers, the client's timeout passes or ctx ends. The error is nil for
// a 2xx only; it wraps ErrPermanent when the receiver refuses (a 4xx
// other than 408 and 429): 408, 429, 5xx and network errors are worth
// retrying.
func Post(ctx context.Context, client *http.Client, now time.Time, r Request) (Response, error) {
	ts := now.Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return Response{}, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if r.UserAgent != "" {
		req.Header.Set("User-Agent", r.UserAgent)
	}
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(r.Secret, ts, r.Body))
	resp, err := client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	// A short excerpt says why in the delivery log; the rest is read so
	// that the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	out := Response{Status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return out, nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
			out.RetryAfter = time.Duration(s) * time.Second
		}
		return out, fmt.Errorf("status %s: %s", resp.Status, excerpt(snippet))
	}
	return out, fmt.Errorf("status %s: %s: %w", resp.Status, excerpt(snippet), ErrPermanent)
}

func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty body)"
	}
	return strings.ToValidUTF8(s, "?")
}

// Backoff is capped exponential backoff with jitter: the wait after the
// n-th failed attempt is Min doubled n-1 times, at most Max, of which a
// random half is taken away, so that many deliveries failing together do
// not retry together.
type Backoff struct {
	Min, Max time.Duration
}

// Delay returns the wait after failed attempts (1 for the first).
// retryAfter, when the receiver asked for one, raises the wait up to Max.
func (b Backoff) Delay(failed int, retryAfter time.Duration) time.Duration {
	d := b.Min
	for i := 1; i < failed && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if half := d / 2; half > 0 {
		d = half + rand.N(half+1)
	}
	if retryAfter > d {
		d = min(retryAfter, b.Max)
	}
	return d
}
