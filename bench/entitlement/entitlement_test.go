package main

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/bench/accounts"
	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/balance"
)

var benchCustomers = flag.Int("entitlement.customers", 1_000_000, "accounts in the views of the entitlement benchmarks")

var (
	fillOnce  sync.Once
	fillViews *pipeline.Views
	fillErr   error
)

// views returns the benchmarks' views, filled once per test binary (a
// million grant commands take a while to apply).
func views(b *testing.B) *pipeline.Views {
	b.Helper()
	fillOnce.Do(func() {
		dir, err := tempDir()
		if err != nil {
			fillErr = err
			return
		}
		start := time.Now()
		fillViews, fillErr = accounts.Fill(context.Background(), accounts.Config{Dir: dir, Customers: *benchCustomers})
		b.Logf("%d accounts filled in %s", *benchCustomers, time.Since(start).Round(time.Millisecond))
	})
	if fillErr != nil {
		b.Fatal(fillErr)
	}
	return fillViews
}

// ids are k customers to ask for, spread over all n, picked ahead so that
// the benchmark measures the lookup, not the formatting of ids. Many of
// them, so that the answers do not all come from the CPU's caches.
func ids(n, k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = accounts.CustomerID((i * 7919) % n)
	}
	return out
}

// BenchmarkViewsEntitlement is the in-memory answer itself: the map lookup
// among all accounts and View.Entitlement.
func BenchmarkViewsEntitlement(b *testing.B) {
	v := views(b)
	asked := ids(*benchCustomers, 1<<16)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if e, known := v.Entitlement(asked[i%len(asked)], now); !known || !e.Allowed {
			b.Fatalf("%s: known %v allowed %v, want both", asked[i%len(asked)], known, e.Allowed)
		}
	}
}

// BenchmarkEntitlementHandler is the whole HTTP handler of the ops server
// (routing, admin token check, lookup, JSON answer) without the network.
func BenchmarkEntitlementHandler(b *testing.B) {
	v := views(b)
	srv, token, err := newServer(v, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	asked := ids(*benchCustomers, 4096)
	reqs := make([]*http.Request, len(asked))
	for i, id := range asked {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/v1/customers/"+id+"/entitlement", nil)
		reqs[i].Header.Set("Authorization", "Bearer "+token)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, reqs[i%len(reqs)])
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// TestLoopbackSmoke runs the loopback program at a tiny size and checks
// that it asked, was answered correctly (run checks every answer) and
// reports ordered percentiles.
func TestLoopbackSmoke(t *testing.T) {
	r, err := run(context.Background(), options{customers: 2000, clients: 2, duration: 300 * time.Millisecond, warmup: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.requests < 10 {
		t.Fatalf("%d requests in %s, want at least 10", r.requests, r.elapsed)
	}
	if !(r.pct(0.5) > 0 && r.pct(0.5) <= r.pct(0.99) && r.pct(0.99) <= r.pct(0.999) && r.pct(0.999) <= r.pct(1)) {
		t.Fatalf("percentiles out of order: %s", r)
	}
	t.Log(r.String())
}

func TestFillAppliesEveryGrant(t *testing.T) {
	v, err := accounts.Fill(context.Background(), accounts.Config{Dir: t.TempDir(), Customers: 12_345, Amount: "0.5", BatchMessages: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	v.Range(func(string, balance.View) bool { n++; return true })
	if n != 12_345 {
		t.Fatalf("%d views, want 12345", n)
	}
	e, known := v.Entitlement(accounts.CustomerID(12_344), time.Now())
	if !known || !e.Allowed || e.Remaining.String() != "0.5" {
		t.Fatalf("last customer: known %v %+v, want known, allowed, 0.5 remaining", known, e)
	}
	if _, known := v.Entitlement(accounts.CustomerID(12_345), time.Now()); known {
		t.Fatal("a customer never granted is known")
	}
}

func tempDir() (string, error) { return os.MkdirTemp("", "tariff-entitlement-bench") }
