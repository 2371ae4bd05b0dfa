package bridge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// Secrets of the test endpoints (at least 16 bytes each).
const (
	testToken      = "tok-litellm-0123456789abcdef"
	testMeterToken = "tok-meter-0123456789abcdef"
	testHMACSecret = "hmac-secret-0123456789abcdef"
	testEnvToken   = "TARIFF_TEST_BRIDGE_TOKEN"
	testEnvMeter   = "TARIFF_TEST_BRIDGE_METER_TOKEN"
)

// testNow is the fixed clock of unit tests: shortly after the payloads'
// usage (2026-02-22T00:00:00Z), so no event is in the future.
var testNow = time.Date(2026, 2, 22, 1, 0, 0, 0, time.UTC)

// fakePublisher records what it is asked to publish, or fails.
type fakePublisher struct {
	mu    sync.Mutex
	err   error
	delay time.Duration
	calls int
	msgs  []kafka.Message
}

func (f *fakePublisher) Publish(ctx context.Context, msgs []kafka.Message) error {
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return f.err
	}
	f.msgs = append(f.msgs, msgs...)
	return nil
}

func (f *fakePublisher) published() []kafka.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]kafka.Message(nil), f.msgs...)
}

// nopPublisher accepts everything at once (benchmarks).
type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, []kafka.Message) error { return nil }

// testConfig has one endpoint per format; the meter endpoint requires an
// HMAC signature whose secret comes from a file.
func testConfig(t testing.TB) Config {
	t.Helper()
	t.Setenv(testEnvToken, testToken)
	t.Setenv(testEnvMeter, testMeterToken)
	secretFile := filepath.Join(t.TempDir(), "hmac.secret")
	if err := os.WriteFile(secretFile, []byte(testHMACSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := Secret{Env: testEnvToken}
	return Config{
		Brokers: []string{"127.0.0.1:1"},
		Endpoints: []Endpoint{
			{Name: "litellm", Path: "/v1/ingest/litellm", Format: "litellm", Topic: "t.litellm", Token: tok},
			{Name: "openrouter", Path: "/v1/ingest/openrouter", Format: "openrouter", Topic: "t.openrouter", Token: tok},
			{Name: "gateway", Path: "/v1/ingest/gateway", Format: "gateway", Topic: "t.gateway", Token: tok},
			{Name: "meter", Path: "/v1/ingest/meter", Format: "meter", Topic: "t.meter", Token: Secret{Env: testEnvMeter},
				HMAC: &HMACConfig{Secret: Secret{File: secretFile}}},
		},
	}
}

func newTestBridge(t testing.TB, pub Publisher, edit func(*Config)) *Bridge {
	t.Helper()
	cfg := testConfig(t)
	if edit != nil {
		edit(&cfg)
	}
	b, err := New(cfg, pub, zerolog.Nop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.now = func() time.Time { return testNow }
	return b
}

// reply is a decoded answer.
type reply struct {
	Status   int
	Header   http.Header
	Raw      string
	Accepted int    `json:"accepted"`
	Messages int    `json:"messages"`
	Events   int    `json:"events"`
	Test     bool   `json:"test_connection"`
	Error    string `json:"error"`
	Record   *int   `json:"record"`
	Span     *int   `json:"span"`
	Field    string `json:"field"`
	Reason   string `json:"reason"`
	Decoder  string `json:"decoder"`
}

// post sends body to path with the bearer token and extra headers
// ("" value: delete the header).
func post(t testing.TB, h http.Handler, path, body string, headers ...string) reply {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	tok := testToken
	if path == "/v1/ingest/meter" {
		tok = testMeterToken
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return decodeReply(t, rec.Code, rec.Header(), rec.Body.Bytes())
}

func decodeReply(t testing.TB, status int, h http.Header, body []byte) reply {
	t.Helper()
	r := reply{Status: status, Header: h, Raw: string(body)}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d: Content-Type %q, want application/json; body %s", status, ct, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("status %d: answer is not JSON: %v: %s", status, err, body)
	}
	return r
}

// sign returns the signature headers for body at time ts.
func sign(secret string, ts time.Time, body string) []string {
	t := strconv.FormatInt(ts.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "." + body))
	return []string{DefaultTimestampHeader, t, DefaultSignatureHeader, hex.EncodeToString(mac.Sum(nil))}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	// The shared payload examples, as copied next to the decoders.
	b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compactJSON(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// liteLLMPayload returns the shared StandardLoggingPayload, compacted, with
// its response id and customer replaced (n > 0), so that several distinct
// records can be posted together.
func liteLLMPayload(t testing.TB, n int, customer string) []byte {
	t.Helper()
	b := compactJSON(t, readTestdata(t, "litellm_standard_logging_payload.json"))
	if n > 0 {
		b = bytes.ReplaceAll(b, []byte("chatcmpl-5f1c2a7e-3b9d-4c61-9a0e-7d2b8e4f1a90"), []byte("chatcmpl-5f1c2a7e-3b9d-4c61-9a0e-"+strconv.Itoa(100000000000+n)))
	}
	if customer != "" {
		b = bytes.ReplaceAll(b, []byte("customer-acme-001"), []byte(customer))
	}
	return b
}

func jsonArray(recs ...[]byte) string {
	return "[" + string(bytes.Join(recs, []byte(","))) + "]"
}
