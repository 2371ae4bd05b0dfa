// Command entitlement measures GET /v1/customers/{id}/entitlement over
// loopback: it fills the balance stage's views with real accounts (grant
// commands applied by a pipeline processor, see bench/accounts), starts the
// ops server on them as `tariff run` does, and has concurrent keep-alive
// clients ask for random known customers, printing latency percentiles
// and requests per second. See bench/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/bench/accounts"
	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/pipeline/ops"
)

func main() {
	customers := flag.Int("customers", 1_000_000, "accounts in the views")
	clients := flag.Int("clients", 16, "concurrent keep-alive clients")
	duration := flag.Duration("duration", 10*time.Second, "how long the clients ask")
	warmup := flag.Duration("warmup", time.Second, "asking before measuring starts (connections, caches)")
	flag.Parse()
	r, err := run(context.Background(), options{customers: *customers, clients: *clients, duration: *duration, warmup: *warmup, progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "entitlement:", err)
		os.Exit(1)
	}
	fmt.Print(r.String())
}

type options struct {
	customers, clients int
	duration, warmup   time.Duration
	progress           io.Writer
}

// result is one loopback run.
type result struct {
	opts      options
	fill      time.Duration
	requests  int
	elapsed   time.Duration
	latencies []time.Duration // sorted
}

func (r result) pct(p float64) time.Duration { return percentile(r.latencies, p) }

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET /v1/customers/{id}/entitlement over loopback: %d accounts (filled in %s), %d keep-alive clients, %s\n",
		r.opts.customers, r.fill.Round(time.Millisecond), r.opts.clients, r.elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "requests %d, %.0f req/s\n", r.requests, float64(r.requests)/r.elapsed.Seconds())
	fmt.Fprintf(&b, "latency (client: request written to body read) p50 %s p99 %s p999 %s max %s\n",
		micro(r.pct(0.50)), micro(r.pct(0.99)), micro(r.pct(0.999)), micro(r.pct(1)))
	return b.String()
}

func micro(d time.Duration) string { return fmt.Sprintf("%.1fus", float64(d)/1e3) }

// percentile returns the p-quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

const tokenEnv = "TARIFF_BENCH_ADMIN_TOKEN"

// newServer builds the ops server the way `tariff run` does, with the
// views as its entitlement source, and returns it with its admin token.
func newServer(views *pipeline.Views, listen string) (*ops.Server, string, error) {
	token := "bench-entitlement-token-0123456789"
	if err := os.Setenv(tokenEnv, token); err != nil {
		return nil, "", err
	}
	s, err := ops.New(ops.Config{Listen: listen, AdminToken: ops.Secret{Env: tokenEnv}}, ops.Deps{
		Metrics: metrics.NewTariff(metrics.NewRegistry(), "bench"), Stats: &pipeline.Stats{},
		Entitlements: views, Logger: zerolog.Nop(),
	})
	return s, token, err
}

func run(ctx context.Context, o options) (result, error) {
	if o.customers <= 0 || o.clients <= 0 || o.duration <= 0 {
		return result{}, fmt.Errorf("customers %d, clients %d, duration %s: expected positive values", o.customers, o.clients, o.duration)
	}
	dir, err := os.MkdirTemp("", "tariff-entitlement")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	if o.progress != nil {
		fmt.Fprintf(o.progress, "applying %d grant commands...\n", o.customers)
	}
	start := time.Now()
	views, err := accounts.Fill(ctx, accounts.Config{Dir: dir, Customers: o.customers})
	if err != nil {
		return result{}, err
	}
	fill := time.Since(start)

	srv, token, err := newServer(views, "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	if err := srv.Listen(); err != nil {
		return result{}, err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx) }()
	defer func() { stop(); <-served }()
	base := "http://" + srv.Addr() + "/v1/customers/"

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
		firstErr error
	)
	measureFrom := time.Now().Add(o.warmup)
	end := measureFrom.Add(o.duration)
	for c := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One connection per client, kept alive: a gateway holds a
			// pool of them to the balance stage.
			tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			lat := make([]time.Duration, 0, 1<<16)
			var v ops.EntitlementView
			for {
				id := accounts.CustomerID(rng.IntN(o.customers))
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+id+"/entitlement", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				res, err := hc.Do(req)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(res.Body)
					res.Body.Close()
					t1 := time.Now()
					if err == nil {
						err = check(res.StatusCode, body, id, &v)
					}
					if err == nil && !t0.Before(measureFrom) {
						lat = append(lat, t1.Sub(t0))
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	slices.Sort(all)
	return result{opts: o, fill: fill, requests: len(all), elapsed: o.duration, latencies: all}, nil
}

// check verifies an answer: 200, for the customer asked, known (every
// asked customer has an account) and allowed (each has credit left).
func check(code int, body []byte, id string, v *ops.EntitlementView) error {
	if code != http.StatusOK {
		return fmt.Errorf("GET entitlement of %s: status %d: %s", id, code, body)
	}
	*v = ops.EntitlementView{}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET entitlement of %s: %w: %s", id, err, body)
	}
	if v.CustomerID != id || !v.Known || !v.Allowed {
		return errors.New("GET entitlement of " + id + ": want known and allowed for this customer, got " + string(body))
	}
	return nil
}
