package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/bench/accounts"
	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
	"github.com/tariff-dev/tariff/sinks"
)

const opsTestToken = "ops-test-token-0123456789"

// sharedDataPath returns a file of the shared data folder beside the
// repository; missing data skips locally and fails under CI=true.
func sharedDataPath(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "..", "shared", "data", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared data %s missing under CI: %v", name, err)
		}
		t.Skipf("SKIPPED: shared data %s not found (%v); set up ../shared/data next to the repository to run this test", name, err)
	}
	return p
}

// opsFixture is a running ops server over a known data set: the LiteLLM
// map of 2025-11-28 as the first price version, the bundled map (the
// 2026-02-21 list) in force from 2026-02-21, a default rate card with a
// 30% markup for all customers, fixed pipeline counters and lag, and three
// accounts built by the balance stage from commands: cust-0000000 with a
// $25 pack, cust-0000001 with the pack and the pro plan ($20 included),
// cust-0000002 with the pack, paused.
type opsFixture struct {
	base  string // http://127.0.0.1:port
	stats *pipeline.Stats
	store *pipeline.Store
}

func startOpsFixture(t *testing.T) *opsFixture {
	t.Helper()
	clearTariffEnv(t)
	t.Setenv("TARIFF_ADMIN_TOKEN", opsTestToken)
	cfg, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.State.Dir = t.TempDir()
	cfg.Prices.File = sharedDataPath(t, "litellm_model_prices.2025-11-28.json")
	cfg.Ops.Listen = "127.0.0.1:0"
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)

	store, err := pipeline.OpenStore(cfg.State, log)
	if err != nil {
		t.Fatal(err)
	}
	st, seeded, err := openPriceState(cfg, store, log, true)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	if seeded == "" {
		t.Fatal("the first price version was not recorded")
	}
	syncer, err := buildSyncer(cfg, st, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	res, err := syncer.SyncLists(context.Background(), []prices.List{{Name: bundled.LiteLLMSource, Data: bundled.LiteLLM}},
		prices.SyncOptions{Effective: time.Date(2026, 2, 21, 0, 0, 0, 0, time.UTC), Force: true})
	if err != nil || !res.Recorded {
		t.Fatalf("record the bundled prices: %v (recorded %v)", err, res != nil && res.Recorded)
	}
	markup, err := parseMarkup("30")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetCard("default", rating.MarkupRules{Default: markup}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		t.Fatal(err)
	}

	stats := &pipeline.Stats{}
	stats.Messages.Add(1234)
	stats.Events.Add(1230)
	stats.Rated.Add(1200)
	stats.Duplicates.Add(3)
	stats.DeadLettered.Add(7)
	stats.Unpriced.Add(2)
	stats.Batches.Add(41)
	at := time.Now().Add(-time.Hour).UTC()
	views, err := accounts.Fill(context.Background(), accounts.Config{Dir: t.TempDir(), Customers: 3, Amount: "25", At: at,
		Extra: [][]byte{
			fmt.Appendf(nil, `{"id":"plan-1","customer_id":"cust-0000001","kind":"change_plan","at":%q,"plan":{"id":"pro","version":1,"cycle":{"kind":"monthly"},"fee":"49","allowance":"20"}}`, at.Format(time.RFC3339Nano)),
			fmt.Appendf(nil, `{"id":"pause-2","customer_id":"cust-0000002","kind":"set_pause","at":%q,"pause":"pause"}`, at.Format(time.RFC3339Nano)),
		}})
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	var banner bytes.Buffer
	m := newOpsMetrics()
	stop, err := startOps(context.Background(), cfg, opsDeps{
		Metrics: m, Stats: stats, Store: store, Prices: st,
		Sink:      measureSinks(sinks.Multi{sinks.NewConsole(io.Discard, 1)}, m),
		Lag:       func() map[int]int64 { return map[int]int64{0: 5, 1: 0, 2: 12} },
		Customers: viewCustomers{views}, Entitlements: views,
		Log: log, Stdout: &banner,
	})
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop ops server: %v", err)
		}
		syncer.Close()
		store.Close()
	})
	addr := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(banner.String())
	if addr == "" || !strings.Contains(banner.String(), "admin token from environment variable TARIFF_ADMIN_TOKEN") {
		t.Fatalf("banner %q: no address, or the token's origin is not named", banner.String())
	}
	if strings.Contains(banner.String(), opsTestToken) {
		t.Fatal("the banner prints a configured admin token")
	}
	return &opsFixture{base: addr, stats: stats, store: store}
}

func httpGet(t *testing.T, url, token string) (int, string) {
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
	return res.StatusCode, string(b)
}

// TestStartOps checks the wiring without a browser: metrics backed by the
// pipeline's counters and the price state, readiness of the state store,
// and the admin API behind the token.
func TestStartOps(t *testing.T) {
	f := startOpsFixture(t)
	code, body := httpGet(t, f.base+"/metrics", "")
	for _, want := range []string{
		"tariff_batches_total 41\n",
		`tariff_consumer_lag_messages{partition="2"} 12`,
		"tariff_price_versions 2\n",
		// 2026-02-21T00:00:00Z, when the bundled prices take effect.
		"tariff_price_version_effective_timestamp_seconds 1771632000\n",
		`tariff_flush_duration_seconds_count{sink="console"} 0`,
		`tariff_build_info{version="dev"`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	if strings.Contains(body, `source="all"`) {
		t.Errorf("/metrics has a source=\"all\" total beside the per-source series, which sums over source would count twice:\n%s", body)
	}
	code, body = httpGet(t, f.base+"/readyz", "")
	if code != 200 || !strings.Contains(body, `"name":"state","ok":true`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	f.store.Close()
	code, body = httpGet(t, f.base+"/readyz", "")
	if code != 503 || !strings.Contains(body, `"failed":["state"]`) || !strings.Contains(body, "closed") {
		t.Errorf("/readyz with the state store closed: %d %s", code, body)
	}
	if code, _ := httpGet(t, f.base+"/v1/prices", ""); code != 401 {
		t.Errorf("/v1/prices without token: %d, want 401", code)
	}
	code, body = httpGet(t, f.base+"/v1/prices?q=claude-sonnet-4-5&limit=1", opsTestToken)
	var v struct {
		Models []map[string]string
	}
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil || len(v.Models) != 1 {
		t.Fatalf("/v1/prices: %d %v %s", code, err, body)
	}
}

func TestStartOpsOff(t *testing.T) {
	cfg := &Config{}
	cfg.SetDefaults()
	cfg.Ops.Listen = "off"
	stop, err := startOps(context.Background(), cfg, opsDeps{})
	if err != nil || stop() != nil {
		t.Fatalf("ops off: %v", err)
	}
}

// --- the dashboard in a real browser ---

// chromium returns the path of Debian's chromium. Under CI=true it is
// installed when missing (CI runs as root) and a failure fails the test;
// locally a missing browser skips loudly.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "true" {
		t.Skip("SKIPPED: no chromium on this machine; install Debian's package (apt-get install -y chromium) to run the dashboard's browser test")
	}
	t.Log("chromium missing under CI: installing Debian's package")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", "chromium"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium still missing after apt-get install: %v", err)
	}
	return p
}

// browser runs headless chromium on url with extra flags (--dump-dom or
// --screenshot=...) after the page's scripts have run and its requests
// have been answered (virtual time), and returns its standard output.
func browser(t *testing.T, bin, url string, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--disable-extensions", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir=" + t.TempDir(), "--window-size=1366,900", "--virtual-time-budget=15000",
	}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr.String())
	}
	return stdout.String()
}

var (
	cellRe = regexp.MustCompile(`data-col="([a-z_]+)"[^>]*>([^<]*)<`)
	rowRe  = func(attr, v string) *regexp.Regexp {
		return regexp.MustCompile(`<tr ` + attr + `="` + regexp.QuoteMeta(v) + `"[^>]*>(.*?)</tr>`)
	}
)

// row returns the data-col cells of the first table row with attr=v.
func row(t *testing.T, dom, attr, v string) map[string]string {
	t.Helper()
	m := rowRe(attr, v).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no row %s=%q in the page", attr, v)
	}
	cells := map[string]string{}
	for _, c := range cellRe.FindAllStringSubmatch(m[1], -1) {
		cells[c[1]] = c[2]
	}
	return cells
}

func wantCells(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s shows %q, want %q (row %v)", what, k, got[k], w, got)
		}
	}
}

// artifactDir is where screenshots are kept: TARIFF_TEST_ARTIFACTS, else
// the test's temporary directory.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("TARIFF_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestDashboardInBrowser loads every dashboard page in headless Chromium
// against a running ops server with real prices, and checks the numbers a
// person sees.
func TestDashboardInBrowser(t *testing.T) {
	bin := chromium(t)
	f := startOpsFixture(t)
	page := func(hash string) string {
		return f.base + "/" + hash
	}
	withToken := func(hash string) string {
		sep := "?"
		if strings.Contains(hash, "?") {
			sep = "&"
		}
		return page(hash + sep + "token=" + opsTestToken)
	}

	t.Run("prices", func(t *testing.T) {
		dom := browser(t, bin, withToken("#/prices?q=claude-sonnet-4-5"), "--dump-dom")
		if !strings.Contains(dom, `data-state="ready"`) {
			t.Fatalf("the page did not finish loading:\n%s", dom)
		}
		// LiteLLM: Claude Sonnet 4.5 costs 3 / 15 / 0.3 USD per 1M input,
		// output and cached tokens; with 30% that is 3.9 / 19.5 / 0.39.
		wantCells(t, "claude-sonnet-4-5", row(t, dom, "data-model", "claude-sonnet-4-5"), map[string]string{
			"input": "3", "output": "15", "cached_input": "0.3", "markup": "30%",
			"input_charge": "3.9", "output_charge": "19.5", "cached_input_charge": "0.39",
		})
		if !regexp.MustCompile(`id="markup">30%<`).MatchString(dom) || !strings.Contains(dom, "rate card default version 1") {
			t.Error("the page does not state the 30% markup and its rate card")
		}
		if strings.Contains(dom, opsTestToken) {
			t.Error("the token is still in the page")
		}
		// The version in force is the bundled list, from 2026-02-21.
		if !strings.Contains(dom, "2026-02-21 00:00 UTC") {
			t.Error("the page does not say the prices are in force from 2026-02-21")
		}

		dom = browser(t, bin, withToken("#/prices?provider=anthropic&q=opus-4-5"), "--dump-dom")
		providers := regexp.MustCompile(`<tr data-model="[^"]*" data-provider="([^"]*)"`).FindAllStringSubmatch(dom, -1)
		if len(providers) == 0 {
			t.Fatal("filtering by provider anthropic and opus-4-5 shows no model")
		}
		for _, p := range providers {
			if p[1] != "anthropic" {
				t.Errorf("provider filter shows a model of %s", p[1])
			}
		}
		wantCells(t, "claude-opus-4-5", row(t, dom, "data-model", "claude-opus-4-5"), map[string]string{
			"input": "5", "output": "25", "input_charge": "6.5", "output_charge": "32.5",
		})
		if !regexp.MustCompile(`<option value="anthropic" selected="">anthropic \(\d+\)</option>`).MatchString(dom) {
			t.Error("the provider filter does not show anthropic selected")
		}
	})

	t.Run("changes", func(t *testing.T) {
		dom := browser(t, bin, withToken("#/changes"), "--dump-dom")
		// Between the two snapshots Gemini 2.5 Pro's cached input fell from
		// 0.3125 to 0.125 per 1M (-60%) and Opus 4.5 on Bedrock (us.) rose
		// from 5 to 5.5 (+10%).
		wantCells(t, "gemini/gemini-2.5-pro cached input", row(t, dom, "data-model", "gemini/gemini-2.5-pro"), map[string]string{
			"old": "0.3125", "new": "0.125", "change": "-60%",
		})
		wantCells(t, "us.anthropic.claude-opus-4-5 input", row(t, dom, "data-model", "us.anthropic.claude-opus-4-5-20251101-v1:0"), map[string]string{
			"old": "5", "new": "5.5", "change": "+10%",
		})
		if !strings.Contains(dom, `data-policy="all-customers"`) || !strings.Contains(dom, "every customer on card default") {
			t.Error("the rollout policy of the change is not shown")
		}
		if !strings.Contains(dom, "25 up") || !strings.Contains(dom, "62 down") || !strings.Contains(dom, "816 models added") {
			t.Error("the change summary (25 up, 62 down, 816 models added) is not shown")
		}
		if n := strings.Count(dom, `class="card version"`); n != 2 {
			t.Errorf("%d versions shown, want 2", n)
		}
	})

	t.Run("pipeline", func(t *testing.T) {
		dom := browser(t, bin, withToken("#/pipeline"), "--dump-dom")
		tile := func(id string) string {
			m := regexp.MustCompile(`id="` + id + `"><div class="label">[^<]*</div><div class="value">([^<]*)</div>`).FindStringSubmatch(dom)
			if m == nil {
				t.Fatalf("no tile %s in the page", id)
			}
			return m[1]
		}
		if got := tile("t-dead"); got != "7" {
			t.Errorf("dead-lettered shows %q, want 7", got)
		}
		if got := tile("t-lag"); got != "17" {
			t.Errorf("consumer lag shows %q, want 17", got)
		}
		if got := tile("t-dup"); got != "3" {
			t.Errorf("duplicates shows %q, want 3", got)
		}
		if !strings.Contains(dom, "1,234 in total") || !strings.Contains(dom, "2 of them unpriced") {
			t.Error("the totals (1,234 messages, 2 unpriced) are not shown")
		}
		if !regexp.MustCompile(`<tr data-partition="2"><td>2</td><td class="num">12</td></tr>`).MatchString(dom) {
			t.Error("the lag of partition 2 (12) is not shown")
		}
		if !regexp.MustCompile(`data-check="state" class="ok"`).MatchString(dom) {
			t.Error("the state store's readiness is not shown as ok")
		}
	})

	t.Run("customers", func(t *testing.T) {
		dom := browser(t, bin, withToken("#/customers"), "--dump-dom")
		for _, want := range []string{
			`<tr data-customer="cust-0000000" class=""><td>cust-0000000</td><td>pay as you go</td><td class="num" data-col="balance">25 USD</td>`,
			`<tr data-customer="cust-0000001" class=""><td>cust-0000001</td><td>pro v1</td><td class="num" data-col="balance">45 USD</td>`,
			`<tr data-customer="cust-0000002" class="paused"><td>cust-0000002</td><td>pay as you go</td><td class="num" data-col="balance">25 USD</td>`,
		} {
			if !strings.Contains(dom, want) {
				t.Errorf("the customers page lacks %s", want)
			}
		}
		if t.Failed() {
			t.Logf("page:\n%s", dom)
		}
		dom = browser(t, bin, withToken("#/customers?q=0000001"), "--dump-dom")
		if !strings.Contains(dom, `data-customer="cust-0000001"`) || strings.Contains(dom, `data-customer="cust-0000000"`) {
			t.Error("the customer search does not narrow the list")
		}
	})

	t.Run("token", func(t *testing.T) {
		dom := browser(t, bin, page("#/prices"), "--dump-dom")
		if !strings.Contains(dom, `id="token-form"`) || strings.Contains(dom, `data-model="`) {
			t.Error("without a token the page does not ask for one, or shows prices")
		}
		dom = browser(t, bin, page("#/prices?token=wrong-token-0123456789"), "--dump-dom")
		if !strings.Contains(dom, `id="token-form"`) || !strings.Contains(dom, "missing or wrong admin token") {
			t.Error("a wrong token is not refused with a message")
		}
	})

	t.Run("screenshots", func(t *testing.T) {
		dir := artifactDir(t)
		for _, p := range []struct{ name, hash string }{
			{"dashboard-prices", "#/prices?provider=anthropic&q=claude"},
			{"dashboard-changes", "#/changes"},
			{"dashboard-pipeline", "#/pipeline"},
			{"dashboard-customers", "#/customers"},
		} {
			path := filepath.Join(dir, p.name+".png")
			browser(t, bin, withToken(p.hash), "--screenshot="+path)
			st, err := os.Stat(path)
			if err != nil || st.Size() < 10_000 {
				t.Fatalf("screenshot %s: %v (size %d)", path, err, sizeOf(st))
			}
			t.Logf("screenshot: %s", path)
		}
	})
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

// TestOpsReadinessRealServers: /readyz reflects the real broker, the real
// ClickHouse server the sink writes to, and the state store.
func TestOpsReadinessRealServers(t *testing.T) {
	broker := testenv.Kafka(t)
	chAddr := testenv.ClickHouse(t)
	clearTariffEnv(t)
	cfg, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Ops.Listen = "127.0.0.1:0"
	cfg.State.Dir = t.TempDir()
	cfg.ClickHouse.Addr = chAddr
	cfg.ClickHouse.Database = testenv.Name(t, "ops")
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	ctx := context.Background()
	if err := sinks.Migrate(ctx, cfg.ClickHouse.ClickHouseConfig, log); err != nil {
		t.Fatal(err)
	}
	ch, err := sinks.NewClickHouse(ctx, cfg.ClickHouse.ClickHouseConfig, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if conn, err := sinks.OpenClickHouse(ctx, cfg.ClickHouse.ClickHouseConfig); err == nil {
			_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.ClickHouse.Database)
			conn.Close()
		}
	})
	store, err := pipeline.OpenStore(cfg.State, log)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var banner bytes.Buffer
	m := newOpsMetrics()
	stop, err := startOps(ctx, cfg, opsDeps{Metrics: m, Store: store, Sink: measureSinks(sinks.Multi{ch}, m),
		Brokers: []string{broker}, Log: log, Stdout: &banner})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	base := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(banner.String())
	code, body := httpGet(t, base+"/readyz", "")
	for _, c := range []string{"kafka", "clickhouse", "state"} {
		if !strings.Contains(body, `"name":"`+c+`","ok":true`) {
			t.Errorf("/readyz (%d) does not report %s ok: %s", code, c, body)
		}
	}
	if code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	ch.Close()
	code, body = httpGet(t, base+"/readyz", "")
	if code != 503 || !strings.Contains(body, `"failed":["clickhouse"]`) {
		t.Fatalf("/readyz with the ClickHouse connection closed: %d %s", code, body)
	}
}
