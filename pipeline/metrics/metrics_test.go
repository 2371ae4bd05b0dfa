package metrics

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func text(t *testing.T, r *Registry) string {
	t.Helper()
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("t_events_total", "Events\nby source, with a \\ backslash.", "source")
	c.With("gateway").Add(3)
	c.With(`we"ird\` + "\n").Inc()
	c.WithFunc(func() float64 { return 7 }, "all")
	g := r.NewGaugeVec("t_lag", "Lag.", "partition")
	g.With("10").Set(4)
	g.With("2").Set(1.5)
	g.With("2").Add(-0.5)
	g.Collect(func(emit func(float64, ...string)) { emit(9, "1") })
	h := r.NewHistogramVec("t_seconds", "Latency.", []float64{0.1, 1}, "sink")
	hs := h.With("clickhouse")
	hs.Observe(0.05)
	hs.Observe(0.1) // an upper bound is inclusive
	hs.Observe(0.5)
	hs.Observe(3)
	r.NewGaugeVec("t_unused", "No series: not written.", "x")
	r.NewCounter("t_plain_total", "Plain.").Inc()

	want := `# HELP t_events_total Events\nby source, with a \\ backslash.
# TYPE t_events_total counter
t_events_total{source="all"} 7
t_events_total{source="gateway"} 3
t_events_total{source="we\"ird\\\n"} 1
# HELP t_lag Lag.
# TYPE t_lag gauge
t_lag{partition="2"} 1
t_lag{partition="10"} 4
t_lag{partition="1"} 9
# HELP t_plain_total Plain.
# TYPE t_plain_total counter
t_plain_total 1
# HELP t_seconds Latency.
# TYPE t_seconds histogram
t_seconds_bucket{sink="clickhouse",le="0.1"} 2
t_seconds_bucket{sink="clickhouse",le="1"} 3
t_seconds_bucket{sink="clickhouse",le="+Inf"} 4
t_seconds_sum{sink="clickhouse"} 3.65
t_seconds_count{sink="clickhouse"} 4
`
	if got := text(t, r); got != want {
		t.Fatalf("exposition:\n%s\nwant:\n%s", got, want)
	}
	checkFormat(t, text(t, r))
}

// checkFormat checks every line against the text format's grammar, as a
// scraper parses it.
func checkFormat(t *testing.T, s string) {
	t.Helper()
	comment := regexp.MustCompile(`^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram))$`)
	sample := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? ([-+]?[0-9.eE+-]+|\+Inf|-Inf|NaN)$`)
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		l := sc.Text()
		if !comment.MatchString(l) && !sample.MatchString(l) {
			t.Errorf("not valid exposition format: %q", l)
		}
	}
}

func TestTariffSet(t *testing.T) {
	r := NewRegistry()
	m := NewTariff(r, "v1.2.3")
	src := m.Source("tariff.usage.gateway")
	if m.Source("tariff.usage.gateway") != src {
		t.Fatal("Source made a second set of series for the same topic")
	}
	src.Rated.Add(5)
	m.Batches.With().Inc()
	m.BatchSeconds.Observe(0.02)
	m.FlushSeconds.With("clickhouse").Observe(0.2)
	m.ClickHouseRows.With("rated_lines").Add(10)
	m.WebhookDeliveries.With("prices", OutcomeDelivered).Inc()
	m.PriceSyncs.With(SyncUnchanged).Inc()
	m.ConsumerLag.Collect(func(emit func(float64, ...string)) { emit(12, "0") })
	out := text(t, r)
	checkFormat(t, out)
	for _, want := range []string{
		`tariff_events_rated_total{source="tariff.usage.gateway"} 5`,
		`tariff_messages_total{source="tariff.usage.gateway"} 0`,
		`tariff_batches_total 1`,
		`tariff_batch_duration_seconds_bucket{le="0.025"} 1`,
		`tariff_flush_duration_seconds_count{sink="clickhouse"} 1`,
		`tariff_clickhouse_inserted_rows_total{table="rated_lines"} 10`,
		`tariff_webhook_deliveries_total{webhook="prices",outcome="delivered"} 1`,
		`tariff_price_syncs_total{result="unchanged"} 1`,
		`tariff_consumer_lag_messages{partition="0"} 12`,
		`tariff_build_info{version="v1.2.3",go_version="go`,
		"process_start_time_seconds ",
		"go_goroutines ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q:\n%s", want, out)
		}
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.NewCounter("x_total", "X.").Inc()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Header.Get("Content-Type") != ContentType || !strings.Contains(string(body), "x_total 1\n") {
		t.Fatalf("GET: %s %q\n%s", res.Status, res.Header.Get("Content-Type"), body)
	}
	res, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %s, want 405", res.Status)
	}
}

func TestMisuseIsABug(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if p := recover(); p == nil || !strings.HasPrefix(p.(string), "BUG: ") {
				t.Errorf("%s: recovered %v, want a BUG panic", name, p)
			}
		}()
		f()
	}
	r := NewRegistry()
	v := r.NewCounterVec("a_total", "A.", "x")
	mustPanic("duplicate", func() { r.NewCounterVec("a_total", "A.") })
	mustPanic("bad name", func() { r.NewGauge("a-b", "A.") })
	mustPanic("bad label", func() { r.NewGaugeVec("b", "B.", "__x") })
	mustPanic("le on histogram", func() { r.NewHistogramVec("c", "C.", []float64{1}, "le") })
	mustPanic("unsorted buckets", func() { r.NewHistogram("d", "D.", []float64{2, 1}) })
	mustPanic("label count", func() { v.With("1", "2") })
}

// TestConcurrent updates series while scraping; run with -race.
func TestConcurrent(t *testing.T) {
	r := NewRegistry()
	v := r.NewCounterVec("c_total", "C.", "w")
	h := r.NewHistogram("h_seconds", "H.", DefaultSeconds)
	g := r.NewGauge("g", "G.")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := v.With(string(rune('a' + w)))
			for i := 0; i < 10000; i++ {
				c.Inc()
				h.Observe(0.003)
				g.Add(1)
			}
		}()
	}
	for i := 0; i < 20; i++ {
		_ = r.WriteText(io.Discard)
	}
	wg.Wait()
	if h.Count() != 40000 || g.Value() != 40000 || v.With("a").Value() != 10000 {
		t.Fatalf("count %d gauge %v counter %d; want 40000, 40000, 10000", h.Count(), g.Value(), v.With("a").Value())
	}
	if !strings.Contains(text(t, r), `h_seconds_bucket{le="0.005"} 40000`) {
		t.Fatal("histogram bucket lost observations")
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	r := NewRegistry()
	m := NewTariff(r, "test")
	src := m.Source("in")
	sink := m.FlushSeconds.With("clickhouse")
	n := testing.AllocsPerRun(1000, func() {
		src.Rated.Add(2)
		src.Messages.Inc()
		m.BatchSeconds.ObserveSeconds(1_500_000)
		sink.Observe(0.3)
	})
	if n != 0 {
		t.Fatalf("updating kept series allocates %v times per call; want 0", n)
	}
}

func BenchmarkCounterInc(b *testing.B) {
	c := NewRegistry().NewCounterVec("x_total", "X.", "source").With("in")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewRegistry().NewHistogram("x_seconds", "X.", DefaultSeconds)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(float64(i%1000) / 1000)
	}
}

func BenchmarkWriteText(b *testing.B) {
	r := NewRegistry()
	m := NewTariff(r, "bench")
	for _, s := range []string{"a", "b", "c"} {
		m.Source(s).Rated.Inc()
	}
	m.ConsumerLag.Collect(func(emit func(float64, ...string)) {
		for p := 0; p < 12; p++ {
			emit(float64(p), string(rune('0'+p)))
		}
	})
	var buf strings.Builder
	_ = r.WriteText(&buf)
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.WriteText(io.Discard)
	}
}
