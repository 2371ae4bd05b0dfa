package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/sinks"
)

const testToken = "test-token-0123456789"

// priceState records two small LiteLLM lists as two versions, the second
// from 2026-01-01, and a default rate card with a 30% markup.
func priceState(t *testing.T) *prices.State {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithMemTableSize(8 << 20).WithValueLogFileSize(16 << 20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	st, err := prices.Load(prices.NewStore(db), rating.MarkupRules{Default: rating.NoMarkup}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	syncer, err := prices.NewSyncer(prices.SyncConfig{}, st, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	list := func(sonnetIn, miniOut string, extra string) []byte {
		return []byte(`{
  "claude-sonnet-4-5": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": ` + sonnetIn + `, "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07},
  "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.5e-07, "output_cost_per_token": ` + miniOut + `}` + extra + `
}`)
	}
	for _, v := range []struct {
		eff  time.Time
		data []byte
	}{
		{time.Time{}, list("3e-06", "6e-07", "")},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), list("3.3e-06", "4.8e-07", `,
  "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08, "output_cost_per_token": 0}`)},
	} {
		if _, err := syncer.SyncLists(context.Background(), []prices.List{{Name: "test", Data: v.data}}, prices.SyncOptions{Effective: v.eff}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := rating.ParseMarkup("30")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetCard("default", rating.MarkupRules{Default: m}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return st
}

type fakeCustomers struct{ got CustomerQuery }

func (f *fakeCustomers) ListCustomers(ctx context.Context, q CustomerQuery) (CustomerPage, error) {
	f.got = q
	if q.Match == "fail" {
		return CustomerPage{}, errors.New("balance store unavailable")
	}
	return CustomerPage{Customers: []Customer{{ID: "acme", Plan: "pro", Balance: decimal.RequireFromString("12.3400"), Currency: "USD", Paused: true, PauseReason: "credit exhausted"}}}, nil
}

type testServer struct {
	*Server
	url   string
	stats *pipeline.Stats
	clock *fakeClock
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestServer(t *testing.T, cfg Config, deps Deps) *testServer {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if deps.Metrics == nil {
		deps.Metrics = metrics.NewTariff(metrics.NewRegistry(), "test")
	}
	if deps.Stats == nil {
		deps.Stats = &pipeline.Stats{}
	}
	deps.Now = clock.now
	deps.Logger = zerolog.New(zerolog.NewTestWriter(t))
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &testServer{Server: s, url: hs.URL, stats: deps.Stats, clock: clock}
}

func tokenConfig(t *testing.T) Config {
	t.Setenv("TARIFF_TEST_ADMIN_TOKEN", testToken)
	return Config{AdminToken: Secret{Env: "TARIFF_TEST_ADMIN_TOKEN"}}
}

// get returns status and body of a GET with the given bearer token.
func get(t *testing.T, url, token string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, _, body := get(t, url, testToken)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var fail error = errors.New("dial tcp 127.0.0.1:9000: connection refused")
	var mu sync.Mutex
	srv := newTestServer(t, tokenConfig(t), Deps{Checks: []Check{
		{Name: "kafka", Fn: func(context.Context) error { return nil }},
		{Name: "clickhouse", Fn: func(context.Context) error { mu.Lock(); defer mu.Unlock(); return fail }},
		{Name: "stuck", Fn: func(ctx context.Context) error { <-ctx.Done(); return nil }},
	}})
	srv.cfg.CheckTimeout = 100 * time.Millisecond

	code, _, body := get(t, srv.url+"/healthz", "")
	if code != 200 || !strings.Contains(string(body), `"status":"alive"`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	var ready struct {
		Status string
		Failed []string
		Checks []CheckResult
	}
	code, _, body = get(t, srv.url+"/readyz", "")
	if err := json.Unmarshal(body, &ready); err != nil {
		t.Fatal(err)
	}
	if code != 503 || ready.Status != "not ready" || strings.Join(ready.Failed, ",") != "clickhouse,stuck" {
		t.Fatalf("/readyz with ClickHouse down: %d %s", code, body)
	}
	if !strings.Contains(ready.Checks[1].Error, "connection refused") || ready.Checks[0].Error != "" {
		t.Fatalf("/readyz does not say why: %s", body)
	}
	if !strings.Contains(ready.Checks[2].Error, "no answer within the check timeout") {
		t.Fatalf("/readyz: a check that ignores its timeout is not reported as such: %s", body)
	}
	code, _, body = get(t, srv.url+"/metrics", "")
	if code != 200 || !strings.Contains(string(body), `tariff_check_up{check="clickhouse"} 0`) || !strings.Contains(string(body), `tariff_check_up{check="kafka"} 1`) {
		t.Fatalf("/metrics lacks the check results: %s", body)
	}

	srv.deps.Checks = srv.deps.Checks[:2]
	mu.Lock()
	fail = nil
	mu.Unlock()
	code, _, body = get(t, srv.url+"/readyz", "")
	if code != 200 || !strings.Contains(string(body), `"status":"ready"`) {
		t.Fatalf("/readyz with everything up: %d %s", code, body)
	}
}

func TestAdminToken(t *testing.T) {
	srv := newTestServer(t, tokenConfig(t), Deps{})
	for _, tok := range []string{"", "wrong-token-0123456789", testToken + "x"} {
		code, h, body := get(t, srv.url+"/v1/pipeline", tok)
		if code != 401 || h.Get("WWW-Authenticate") == "" || !strings.Contains(string(body), "admin token") {
			t.Errorf("token %q: %d %s; want 401", tok, code, body)
		}
	}
	if code, _, body := get(t, srv.url+"/v1/pipeline", testToken); code != 200 {
		t.Errorf("right token: %d %s", code, body)
	}
	if code, _, _ := get(t, srv.url+"/v1/nothing", testToken); code != 404 {
		t.Errorf("unknown endpoint: %d, want 404", code)
	}
	// Open endpoints and the static page need no token.
	for _, p := range []string{"/healthz", "/metrics", "/", "/assets/app.js", "/assets/app.css"} {
		code, h, _ := get(t, srv.url+p, "")
		if code != 200 {
			t.Errorf("%s: %d, want 200 without a token", p, code)
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: no content security policy", p)
		}
	}
	if code, _, _ := get(t, srv.url+"/secrets.txt", ""); code != 404 {
		t.Errorf("/secrets.txt: %d, want 404", code)
	}

	// No token configured: the API is closed and says how to open it.
	t.Setenv("TARIFF_TEST_NO_TOKEN", "")
	closed := newTestServer(t, Config{Listen: "0.0.0.0:0", AdminToken: Secret{Env: "TARIFF_TEST_NO_TOKEN"}}, Deps{})
	code, _, body := get(t, closed.url+"/v1/prices", "anything-at-all-123")
	if code != 503 || !strings.Contains(string(body), "TARIFF_TEST_NO_TOKEN") {
		t.Fatalf("no token: %d %s; want 503 naming the variable", code, body)
	}
	if tok := closed.GenerateToken(); tok != "" {
		t.Fatal("a token was made for a server listening beyond loopback")
	}
	local := newTestServer(t, Config{Listen: "127.0.0.1:0", AdminToken: Secret{Env: "TARIFF_TEST_NO_TOKEN"}}, Deps{})
	tok := local.GenerateToken()
	if len(tok) < 32 {
		t.Fatalf("loopback server made token %q", tok)
	}
	if code, _, _ := get(t, local.url+"/v1/pipeline", tok); code != 200 {
		t.Fatalf("generated token refused: %d", code)
	}
}

func TestPricesAPI(t *testing.T) {
	srv := newTestServer(t, tokenConfig(t), Deps{Prices: priceState(t)})
	var v PricesView
	getJSON(t, srv.url+"/v1/prices", &v)
	if !v.Available || v.Markup != "30%" || !strings.Contains(v.MarkupFrom, "rate card default version 1") || v.Total != 3 || len(v.Models) != 3 {
		t.Fatalf("prices: %+v", v)
	}
	if v.Version.EffectiveFrom.Year() != 2026 {
		t.Fatalf("the version in force on 2026-03-01 is not the 2026-01-01 one: %+v", v.Version)
	}
	want := map[string]PriceRow{
		"claude-sonnet-4-5": {Model: "claude-sonnet-4-5", Provider: "anthropic", Mode: "chat", Input: "3.3", Output: "15", CachedInput: "0.3",
			Markup: "30%", InputCharge: "4.29", OutputCharge: "19.5", CachedInputCharge: "0.39"},
		// No cached-input price listed: it falls back to the input price.
		"gpt-4o-mini": {Model: "gpt-4o-mini", Provider: "openai", Mode: "chat", Input: "0.15", Output: "0.48", CachedInput: "0.15",
			Markup: "30%", InputCharge: "0.195", OutputCharge: "0.624", CachedInputCharge: "0.195"},
	}
	for _, r := range v.Models {
		if w, ok := want[r.Model]; ok && r != w {
			t.Errorf("row %s:\n got %+v\nwant %+v", r.Model, r, w)
		}
	}
	getJSON(t, srv.url+"/v1/prices?provider=openai&q=MINI", &v)
	if v.Matched != 1 || len(v.Models) != 1 || v.Models[0].Model != "gpt-4o-mini" || len(v.Providers) != 2 {
		t.Fatalf("filtered prices: %+v", v)
	}
	getJSON(t, srv.url+"/v1/prices?limit=1", &v)
	if v.Matched != 3 || len(v.Models) != 1 {
		t.Fatalf("limit 1: matched %d, %d rows", v.Matched, len(v.Models))
	}
	if code, _, body := get(t, srv.url+"/v1/prices?limit=x", testToken); code != 400 || !strings.Contains(string(body), "limit") {
		t.Fatalf("bad limit: %d %s", code, body)
	}
}

func TestPriceChangesAPI(t *testing.T) {
	srv := newTestServer(t, tokenConfig(t), Deps{Prices: priceState(t)})
	var v struct {
		Available     bool
		TotalVersions int `json:"total_versions"`
		Versions      []VersionChanges
	}
	getJSON(t, srv.url+"/v1/price-changes", &v)
	if !v.Available || v.TotalVersions != 2 || len(v.Versions) != 2 {
		t.Fatalf("changes: %+v", v)
	}
	newest, first := v.Versions[0], v.Versions[1]
	if !newest.InForce || first.InForce || newest.PreviousID != first.ID || first.PreviousID != "" {
		t.Fatalf("versions out of order or in force wrongly: %+v / %+v", newest, first)
	}
	s := newest.Summary
	if s.PricesUp != 1 || s.PricesDown != 1 || s.ModelsAdded != 1 || strings.Join(newest.ModelsAdded, ",") != "text-embedding-3-small" {
		t.Fatalf("summary %+v, added %v", s, newest.ModelsAdded)
	}
	got := map[string]PriceChange{}
	for _, c := range newest.Changes {
		got[c.Model+" "+c.Unit] = c
	}
	if c := got["claude-sonnet-4-5 input"]; c.Kind != "price_up" || c.Old != "3" || c.New != "3.3" || c.ChangePercent != "10" || c.Per != "1M tokens" || c.Provider != "anthropic" {
		t.Errorf("sonnet input change: %+v", c)
	}
	if c := got["gpt-4o-mini output"]; c.Kind != "price_down" || c.Old != "0.6" || c.New != "0.48" || c.ChangePercent != "-20" {
		t.Errorf("mini output change: %+v", c)
	}
	if len(newest.Rollout) != 1 || newest.Rollout[0].Card != "default" || newest.Rollout[0].Policy != "all-customers" || newest.Rollout[0].Pinned ||
		!strings.Contains(newest.Rollout[0].AppliesTo, "every customer on card default") {
		t.Errorf("rollout: %+v", newest.Rollout)
	}
	if code, _, _ := get(t, srv.url+"/v1/price-changes?limit=0", testToken); code != 400 {
		t.Errorf("limit 0: %d, want 400", code)
	}
}

func TestPipelineAPI(t *testing.T) {
	lag := map[int]int64{2: 12, 0: 5, 1: 0}
	srv := newTestServer(t, tokenConfig(t), Deps{Lag: func() map[int]int64 { return lag }})
	srv.stats.Messages.Add(100)
	srv.stats.Rated.Add(90)
	srv.sampler.sample()
	srv.clock.add(10 * time.Second)
	srv.stats.Messages.Add(50)
	srv.stats.Rated.Add(40)
	srv.stats.DeadLettered.Add(7)
	srv.stats.Unpriced.Add(2)
	var v PipelineView
	getJSON(t, srv.url+"/v1/pipeline", &v)
	if v.Counters.Messages != 150 || v.Counters.DeadLettered != 7 || v.Counters.Unpriced != 2 {
		t.Fatalf("counters %+v", v.Counters)
	}
	// The sampler took one sample at start (counters 0) and one at 100
	// messages, both at the same instant; 10s later 150: 15 messages/s.
	if v.Rates.Messages != 15 || v.Rates.Rated != 13 || v.Rates.WindowSeconds != 10 {
		t.Fatalf("rates %+v", v.Rates)
	}
	if !v.LagReported || v.TotalLag != 17 || len(v.Lag) != 3 || v.Lag[0] != (PartitionLag{0, 5}) || v.Lag[2] != (PartitionLag{2, 12}) {
		t.Fatalf("lag %+v total %d", v.Lag, v.TotalLag)
	}
	_, _, body := get(t, srv.url+"/metrics", "")
	if !strings.Contains(string(body), `tariff_consumer_lag_messages{partition="2"} 12`) {
		t.Fatalf("/metrics lacks the lag:\n%s", body)
	}
}

func TestCustomersAPI(t *testing.T) {
	none := newTestServer(t, tokenConfig(t), Deps{})
	var v CustomersView
	getJSON(t, none.url+"/v1/customers", &v)
	if v.Available || v.Reason != NoCustomers || v.Customers == nil || len(v.Customers) != 0 {
		t.Fatalf("no provider: %+v", v)
	}
	fc := &fakeCustomers{}
	srv := newTestServer(t, tokenConfig(t), Deps{Customers: fc})
	code, _, body := get(t, srv.url+"/v1/customers?q=ac&limit=20&after=a", testToken)
	if code != 200 || fc.got != (CustomerQuery{Match: "ac", After: "a", Limit: 20}) {
		t.Fatalf("query %+v: %d %s", fc.got, code, body)
	}
	if !strings.Contains(string(body), `"balance":"12.34"`) || !strings.Contains(string(body), `"paused":true`) {
		t.Fatalf("customers: %s", body)
	}
	if code, _, body := get(t, srv.url+"/v1/customers?q=fail", testToken); code != 502 || !strings.Contains(string(body), "balance store unavailable") {
		t.Fatalf("failing provider: %d %s", code, body)
	}
	if code, _, _ := get(t, srv.url+"/v1/customers?limit=9999", testToken); code != 400 {
		t.Fatalf("limit 9999: %d, want 400", code)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Setenv("TARIFF_TEST_TOKEN", "short")
	f := func(c Config, want string) {
		t.Helper()
		c.SetDefaults()
		err := c.Validate()
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%+v: %v, want %q", c, err, want)
		}
	}
	f(Config{}, "")
	f(Config{Listen: Off}, "")
	f(Config{Listen: ":9464"}, "")
	f(Config{Listen: "localhost"}, "ops.listen")
	f(Config{CheckTimeout: -time.Second}, "ops.check_timeout")
	f(Config{AdminToken: Secret{Env: "TARIFF_TEST_TOKEN"}}, "5 bytes")
	f(Config{AdminToken: Secret{File: "/nonexistent/token"}}, "ops.admin_token.file")
	if s := (Secret{Env: "X"}).String(); strings.Contains(s, "short") || !strings.Contains(s, "X") {
		t.Errorf("Secret.String %q", s)
	}
}

func TestListenInUse(t *testing.T) {
	a := newTestServer(t, Config{Listen: "127.0.0.1:0"}, Deps{})
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	defer a.ln.Close()
	b, err := New(Config{Listen: a.Addr()}, Deps{Metrics: metrics.NewTariff(metrics.NewRegistry(), "t")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err == nil || !strings.Contains(err.Error(), "ops.listen") {
		t.Fatalf("second listen on %s: %v; want an error naming ops.listen", a.Addr(), err)
	}
}

func TestServeStops(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Metrics: metrics.NewTariff(metrics.NewRegistry(), "t"), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	code, _, _ := get(t, fmt.Sprintf("http://%s/healthz", s.Addr()), "")
	if code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestKafkaCheck(t *testing.T) {
	broker := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := KafkaCheck([]string{"127.0.0.1:1", broker}, nil).Fn(ctx); err != nil {
		t.Fatalf("one broker of two answers: %v", err)
	}
	err := KafkaCheck([]string{"127.0.0.1:1"}, nil).Fn(ctx)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("no broker answers: %v; want an error naming the address", err)
	}
}

type fakeSink struct{ err error }

func (f *fakeSink) WriteBatch(context.Context, *sinks.Batch) error { return f.err }
func (f *fakeSink) Close() error                                   { return nil }

func TestMeasureSink(t *testing.T) {
	r := metrics.NewRegistry()
	m := metrics.NewTariff(r, "t")
	fs := &fakeSink{}
	ch := MeasureClickHouse(fs, m)
	file := MeasureSink("file", &fakeSink{}, m)
	b := &sinks.Batch{Events: make([]sinks.RatedEvent, 2), Aggregates: []sinks.Aggregate{
		{Granularity: sinks.GranularityHour}, {Granularity: sinks.GranularityHour}, {Granularity: sinks.GranularityDay}}}
	for i := range b.Events {
		b.Events[i].Lines = make([]sinks.Line, 5)
	}
	if err := ch.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := file.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	fs.err = errors.New("clickhouse down")
	if err := ch.WriteBatch(context.Background(), b); err == nil {
		t.Fatal("the sink's error was swallowed")
	}
	var out strings.Builder
	_ = r.WriteText(&out)
	for _, want := range []string{
		`tariff_clickhouse_inserted_rows_total{table="rated_lines"} 10`,
		`tariff_clickhouse_inserted_rows_total{table="usage_hourly"} 2`,
		`tariff_clickhouse_inserted_rows_total{table="usage_daily"} 1`,
		`tariff_sink_write_errors_total{sink="clickhouse"} 1`,
		`tariff_sink_write_errors_total{sink="file"} 0`,
		`tariff_flush_duration_seconds_count{sink="clickhouse"} 2`,
		`tariff_flush_duration_seconds_count{sink="file"} 1`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, out.String())
		}
	}
	fs.err = nil
	if n := testing.AllocsPerRun(100, func() { _ = ch.WriteBatch(context.Background(), b) }); n != 0 {
		t.Errorf("a measured write allocates %v times", n)
	}
}
