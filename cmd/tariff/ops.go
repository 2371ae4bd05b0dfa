package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/pipeline/ops"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/sinks"
)

// opsDeps is what the ops server reports on. Only Metrics is required;
// a nil part makes its endpoint say it is not available.
type opsDeps struct {
	Metrics *metrics.Tariff
	// Stats are the pipeline's counters (runner.Stats()).
	Stats *pipeline.Stats
	// Lag returns the consumer lag per partition number owned now.
	Lag func() map[int]int64
	// Store is the state store: the readiness check, pending announcements.
	Store *pipeline.Store
	// Prices is the live price state.
	Prices *prices.State
	// Sink is the sink the pipeline writes to; ClickHouse inside it is
	// checked for readiness.
	Sink sinks.Sink
	// Brokers are the Kafka bootstrap addresses in use (the embedded
	// broker's when embedded).
	Brokers      []string
	Customers    ops.Customers
	Entitlements ops.Entitlements
	// The admin API's parts (nil: its endpoints say what is missing).
	Commands   ops.Commands
	Accounts   ops.Accounts
	Deliveries ops.Deliveries
	Plans      []balance.Plan
	Log        zerolog.Logger
	// Stdout receives one line with the dashboard's address.
	Stdout io.Writer
	// Advertise, when set, receives the admin API URL to advertise to
	// the other instances once the address is bound ("" when there is
	// none: a wildcard address without ops.advertise_url).
	Advertise func(url string)
}

// newOpsMetrics returns the process's metrics. Make it first: sinks and
// stages keep their series from their constructors on.
func newOpsMetrics() *metrics.Tariff {
	return metrics.NewTariff(metrics.NewRegistry(), version)
}

// startOps starts the ops server (cfg.Ops): /metrics, /healthz, /readyz
// and the dashboard. It returns once the address is bound, so a port in
// use fails the start; the returned function stops the server (in-flight
// requests get up to 5s). With ops.listen "off" it does nothing.
//
// The pipeline's global counters (pipeline.Stats) back the series without
// labels (batches, redelivered, key mismatches, retries); the per-source
// series are the pipeline's own, through the same metrics.Tariff.
func startOps(ctx context.Context, cfg *Config, d opsDeps) (func() error, error) {
	noop := func() error { return nil }
	if !cfg.Ops.Enabled() {
		return noop, nil
	}
	m := d.Metrics
	if m == nil {
		m = newOpsMetrics()
	}
	if d.Stats != nil {
		bindStats(m, d.Stats)
	}
	if d.Prices != nil {
		bindPrices(m, d.Prices)
	}
	var checks []ops.Check
	if len(d.Brokers) > 0 {
		dialer, err := cfg.Kafka.Security.Dialer()
		if err != nil {
			return noop, err
		}
		checks = append(checks, ops.KafkaCheck(d.Brokers, dialer))
	}
	if ch := clickHouseIn(d.Sink); ch != nil {
		checks = append(checks, ops.Check{Name: "clickhouse", Fn: func(ctx context.Context) error { return ch.Conn().Ping(ctx) }})
	}
	if d.Store != nil {
		checks = append(checks, ops.BadgerCheck(d.Store.DB()))
	}
	deps := ops.Deps{Metrics: m, Checks: checks, Stats: d.Stats, Lag: d.Lag, Customers: d.Customers, Entitlements: d.Entitlements, Version: version, Logger: d.Log}
	if d.Prices != nil {
		deps.Prices, deps.RateCards = d.Prices, d.Prices
	}
	deps.Commands, deps.Accounts, deps.Deliveries, deps.Plans = d.Commands, d.Accounts, d.Deliveries, d.Plans
	srv, err := ops.New(cfg.Ops, deps)
	if err != nil {
		return noop, err
	}
	if err := srv.Listen(); err != nil {
		return noop, err
	}
	if d.Advertise != nil {
		d.Advertise(cfg.Ops.Advertise(srv.Addr()))
	}
	if d.Stdout != nil {
		fmt.Fprintf(d.Stdout, "  ops:            %s\n", opsBanner(srv, cfg))
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var serveErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr = srv.Serve(sctx)
	}()
	return func() error {
		cancel()
		wg.Wait()
		return serveErr
	}, nil
}

// opsBanner says where the dashboard is. A token made at start (loopback,
// none configured) is printed in the address once, here, on standard
// output: never logged.
func opsBanner(srv *ops.Server, cfg *Config) string {
	addr := srv.Addr()
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "::" || host == "0.0.0.0" || host == "") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	base := "http://" + addr
	switch tok := srv.GenerateToken(); {
	case tok != "":
		return fmt.Sprintf("%s/metrics, /healthz, /readyz; dashboard %s/#/prices?token=%s (token made for this run: set %s to choose one)",
			base, base, tok, cfg.Ops.AdminToken)
	case srv.Token() != "":
		return fmt.Sprintf("%s/metrics, /healthz, /readyz; dashboard %s/ (admin token from %s)", base, base, cfg.Ops.AdminToken)
	}
	return fmt.Sprintf("%s/metrics, /healthz, /readyz; dashboard closed: set %s to open it", base, cfg.Ops.AdminToken)
}

// bindStats backs the pipeline series without labels with the global
// counters. The per-source families are not bound here: the pipeline
// counts them per input topic itself (pipeline.Deps.Metrics), and a total
// beside them would be counted twice by any sum over source.
func bindStats(m *metrics.Tariff, st *pipeline.Stats) {
	f := func(c interface{ Load() int64 }) func() float64 { return func() float64 { return float64(c.Load()) } }
	m.Batches.WithFunc(f(&st.Batches))
	m.Redelivered.WithFunc(f(&st.Redelivered))
	m.KeyMismatch.WithFunc(f(&st.KeyMismatch))
	m.Retries.WithFunc(f(&st.Retries))
}

// bindPrices exports the price state: versions recorded, when the one in
// force took effect, and announcements still queued for delivery.
func bindPrices(m *metrics.Tariff, st *prices.State) {
	r := m.Registry
	r.NewGaugeFunc("tariff_price_versions", "Price versions recorded in the state store.", func() float64 {
		return float64(len(st.Catalog().Book.Versions()))
	})
	r.NewGaugeFunc("tariff_price_version_effective_timestamp_seconds", "When the newest price version takes effect, in seconds since the Unix epoch (0: in force for all history).", func() float64 {
		v := st.Catalog().Book.Latest()
		if v == nil || v.EffectiveFrom.IsZero() {
			return 0
		}
		return float64(v.EffectiveFrom.Unix())
	})
	r.NewGaugeFunc("tariff_price_announcements_pending", "Price-change announcements (webhooks, changes topic) not delivered yet; retried at each sync.", func() float64 {
		p, err := st.Store().Pending()
		if err != nil {
			return -1
		}
		return float64(len(p))
	})
}

// clickHouseIn finds the ClickHouse sink inside s (a sinks.Multi, possibly
// measured), or nil when rated usage does not go to ClickHouse.
func clickHouseIn(s sinks.Sink) *sinks.ClickHouse {
	switch x := s.(type) {
	case *sinks.ClickHouse:
		return x
	case sinks.Multi:
		for _, e := range x {
			if ch := clickHouseIn(e); ch != nil {
				return ch
			}
		}
	case interface{ Unwrap() sinks.Sink }:
		return clickHouseIn(x.Unwrap())
	}
	return nil
}

// measureSinks wraps each sink in s with its latency, rows and errors
// (ops.MeasureSink), named by kind: clickhouse, file, console.
func measureSinks(s sinks.Sink, m *metrics.Tariff) sinks.Sink {
	switch x := s.(type) {
	case sinks.Multi:
		out := make(sinks.Multi, len(x))
		for i, e := range x {
			out[i] = measureSinks(e, m)
		}
		return out
	case *ops.MeasuredSink:
		return x
	case *sinks.ClickHouse:
		return ops.MeasureClickHouse(x, m)
	}
	return ops.MeasureSink(sinkName(s), s, m)
}

func sinkName(s sinks.Sink) string {
	if _, ok := s.(*sinks.File); ok {
		return "file"
	}
	n := strings.ToLower(fmt.Sprintf("%T", s))
	n = n[strings.LastIndexAny(n, ".*")+1:]
	if n == "" {
		return "sink"
	}
	return n
}

// viewCustomers lists the balance stage's committed accounts for the
// dashboard's customers page.
type viewCustomers struct{ views *pipeline.Views }

func (c viewCustomers) ListCustomers(_ context.Context, q ops.CustomerQuery) (ops.CustomerPage, error) {
	match := strings.ToLower(q.Match)
	var ids []string
	c.views.Range(func(id string, _ balance.View) bool {
		if id > q.After && (match == "" || strings.Contains(strings.ToLower(id), match)) {
			ids = append(ids, id)
		}
		return true
	})
	sort.Strings(ids)
	page := ops.CustomerPage{Customers: []ops.Customer{}}
	now := time.Now()
	for i, id := range ids {
		if i == q.Limit {
			page.Next = ids[i-1]
			break
		}
		v, ok := c.views.Get(id)
		if !ok {
			continue // its partition moved away since Range
		}
		e := v.Entitlement(now)
		plan := "pay as you go"
		if pid, pv := v.Plan(); pid != "" {
			plan = fmt.Sprintf("%s v%d", pid, pv)
		}
		cu := ops.Customer{ID: id, Plan: plan, Balance: e.Remaining.Decimal(), Currency: "USD", Paused: e.Paused, UpdatedAt: v.Clock()}
		if e.Paused {
			cu.PauseReason = fmt.Sprint(e.Reason)
		}
		page.Customers = append(page.Customers, cu)
	}
	return page, nil
}
