package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sources/gateway/gatewaytest"
)

// Secrets of the test configuration (at least 16 bytes where required).
const (
	testOpenAIKey     = "sk-test-openai-0123456789abcdef"
	testAnthropicKey  = "sk-ant-test-0123456789abcdef"
	testTrustedSecret = "trusted-secret-0123456789abcdef"
	envOpenAIKey      = "TARIFF_TEST_GW_OPENAI_KEY"
	envAnthropicKey   = "TARIFF_TEST_GW_ANTHROPIC_KEY"
	envTrusted        = "TARIFF_TEST_GW_TRUSTED"
)

// testNow stamps usage events in unit tests.
var testNow = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

// fakePublisher records what it is asked to publish, or fails while err is
// set.
type fakePublisher struct {
	mu    sync.Mutex
	err   error
	calls int
	msgs  []kafka.Message
}

func (f *fakePublisher) Publish(ctx context.Context, msgs []kafka.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return f.err
	}
	for _, m := range msgs {
		// Copy: the caller owns the messages again after nil.
		m.Key, m.Value = append([]byte(nil), m.Key...), append([]byte(nil), m.Value...)
		f.msgs = append(f.msgs, m)
	}
	return nil
}

func (f *fakePublisher) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakePublisher) published() []kafka.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]kafka.Message(nil), f.msgs...)
}

// nopPublisher accepts everything at once (benchmarks).
type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, []kafka.Message) error { return nil }

// fakeEntitler answers from a table; customers not in it are allowed.
type fakeEntitler struct {
	mu        sync.Mutex
	decisions map[string]Decision
	err       error
	calls     int
}

func (f *fakeEntitler) Check(ctx context.Context, customer string) (Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return Decision{}, f.err
	}
	if d, ok := f.decisions[customer]; ok {
		return d, nil
	}
	return Decision{Allowed: true}, nil
}

// env is a gateway serving on a free port in front of two stand-in
// upstreams (an OpenAI one and an Anthropic one), with keys for the
// customers acme and globex.
type env struct {
	t         testing.TB
	g         *Gateway
	url       string
	openai    *gatewaytest.Upstream
	anthropic *gatewaytest.Upstream
	pub       *fakePublisher
	keys      map[string]string // customer -> gateway key
	keyFile   string
	cfg       Config
	stop      func()
}

func testConfig(t testing.TB, openaiURL, anthropicURL string) Config {
	t.Helper()
	t.Setenv(envOpenAIKey, testOpenAIKey)
	t.Setenv(envAnthropicKey, testAnthropicKey)
	dir := t.TempDir()
	return Config{
		Listen:  "127.0.0.1:0",
		Brokers: []string{"127.0.0.1:1"},
		Topic:   "t.gateway",
		Keys:    KeysConfig{File: filepath.Join(dir, "keys"), ReloadInterval: 50 * time.Millisecond},
		Spool:   SpoolConfig{Dir: filepath.Join(dir, "spool"), RetryMax: 50 * time.Millisecond},
		Upstreams: []Upstream{
			{Name: "openai", Kind: KindOpenAI, BaseURL: openaiURL, Key: Secret{Env: envOpenAIKey}},
			{Name: "anthropic", Kind: KindAnthropic, BaseURL: anthropicURL, Key: Secret{Env: envAnthropicKey}},
		},
		Routes: []Route{
			{Prefix: "gpt-", Upstream: "openai"},
			{Prefix: "claude-", Upstream: "anthropic"},
			{Model: "fail-500", Upstream: "openai"},
		},
		PublishTimeout: time.Second,
	}
}

func newEnv(t testing.TB, edit func(*Config), opts ...Option) *env {
	t.Helper()
	e := &env{t: t, pub: &fakePublisher{}, keys: map[string]string{}}
	e.openai = gatewaytest.New(testOpenAIKey)
	e.anthropic = gatewaytest.New(testAnthropicKey)
	t.Cleanup(e.openai.Close)
	t.Cleanup(e.anthropic.Close)
	cfg := testConfig(t, e.openai.BaseURL(), e.anthropic.BaseURL())
	if edit != nil {
		edit(&cfg)
	}
	e.keyFile = cfg.Keys.File
	for _, c := range []string{"acme", "globex"} {
		key, _, err := AddKey(cfg.Keys.File, c, testNow)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[c] = key
	}
	e.start(cfg, opts...)
	return e
}

// start builds and serves a gateway with cfg.
func (e *env) start(cfg Config, opts ...Option) {
	t := e.t
	t.Helper()
	e.cfg = cfg
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	g, err := New(cfg, e.pub, log, append([]Option{WithClock(func() time.Time { return testNow })}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, l) }()
	e.g, e.url = g, "http://"+l.Addr().String()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := g.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(e.stop)
}

// post sends body to path with the given headers (name, value pairs).
func (e *env) post(ctx context.Context, path, body string, headers ...string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	return resp
}

// call posts as customer (with its key) and returns status and body.
func (e *env) call(path, customer, body string, headers ...string) (int, string) {
	e.t.Helper()
	var h []string
	if customer != "" {
		h = []string{"Authorization", "Bearer " + e.keys[customer]}
	}
	h = append(h, headers...)
	resp := e.post(context.Background(), path, body, h...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitEvents waits until n events were published and returns them decoded,
// in publish order.
func (e *env) waitEvents(n int) ([]kafka.Message, []schemas.UsageEvent) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := e.pub.published()
		if len(msgs) >= n || time.Now().After(deadline) {
			if len(msgs) != n {
				e.t.Fatalf("%d events published, want %d", len(msgs), n)
			}
			return msgs, decodeAll(e.t, msgs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits for in-flight work (the recorder is asynchronous) and
// asserts that exactly n events were published.
func (e *env) settle(n int) {
	e.t.Helper()
	time.Sleep(50 * time.Millisecond)
	e.waitEvents(n)
}

func decodeAll(t testing.TB, msgs []kafka.Message) []schemas.UsageEvent {
	t.Helper()
	dec, err := schemas.DecoderFor(schemas.FormatGateway, schemas.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var evs []schemas.UsageEvent
	for _, m := range msgs {
		n := len(evs)
		if evs, err = dec.Decode(evs, m.Value); err != nil {
			t.Fatalf("event %s does not decode: %v", m.Value, err)
		}
		if len(evs) != n+1 {
			t.Fatalf("event %s decodes to %d events", m.Value, len(evs)-n)
		}
		if string(m.Key) != evs[n].CustomerID {
			t.Fatalf("message key %q is not the event's customer %q", m.Key, evs[n].CustomerID)
		}
		if err := evs[n].Validate(testNow.Add(time.Hour)); err != nil {
			t.Fatalf("event %s: %v", m.Value, err)
		}
	}
	return evs
}

// quantities builds an expected quantities array.
func quantities(m map[schemas.Unit]int64) [schemas.NumUnits]int64 {
	var q [schemas.NumUnits]int64
	for u, v := range m {
		q[u] = v
	}
	return q
}

func dims(ev schemas.UsageEvent) map[string]string {
	m := map[string]string{}
	for _, d := range ev.Dimensions {
		m[d.Key] = d.Value
	}
	return m
}

var errKafkaDown = errors.New("kafka: dial tcp 127.0.0.1:9092: connect: connection refused")

func httptestServer(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
