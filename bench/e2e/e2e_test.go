package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline/testenv"
)

// TestSmoke runs every part of the harness at a tiny size on the real
// servers and checks what each measured is complete and consistent: the
// totals were exact (measure fails otherwise), the bare writer inserted
// exactly the rows tariff wrote, every billable message of the latency
// run was seen in ClickHouse, and every customer with a billed event got
// exactly one zero-balance alert, matched to the event that caused it.
func TestSmoke(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	bin := tariffBinary(t)
	start := time.Now()
	out, err := measure(context.Background(), options{
		broker: broker, clickhouse: ch, events: 1500, customers: 150, partitions: 2, memLimit: "0", bin: bin,
		chBaseline: true, rate: "400", latencyEvents: 1000, poll: 50 * time.Millisecond, grant: "0.000001", log: tWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("measured in %s", time.Since(start).Round(time.Millisecond))
	if out.tput.events != out.exp.Counts.Events || out.tput.wall <= 0 || out.tput.cpu <= 0 || out.tput.rss <= 0 {
		t.Errorf("throughput run %+v: want %d events, a wall time, CPU time and RSS", out.tput, out.exp.Counts.Events)
	}
	if out.bw == nil || out.bw.rows == 0 || out.bw.rows != out.chRow || out.bw.busy <= 0 {
		t.Errorf("bare writer %+v: want the %d rows tariff wrote, timed", out.bw, out.chRow)
	}
	l := out.lat
	if l == nil {
		t.Fatal("no latency run")
	}
	if l.fresh == 0 || int64(len(l.queryable)) != l.fresh || l.unattributed != 0 {
		t.Errorf("queryable: %d samples of %d billable messages, %d never seen; want all seen", len(l.queryable), l.fresh, l.unattributed)
	}
	if l.customers == 0 || l.alertsMatched != int64(l.customers) || l.alertsTotal != l.alertsMatched || l.alertKinds["zero"] != int64(l.customers) {
		t.Errorf("alerts: %d total, %d matched (%v) for %d customers with a billed event; want one zero alert each", l.alertsTotal, l.alertsMatched, l.alertKinds, l.customers)
	}
	if len(l.alertAppend) != len(l.alertRecv) || percentile(l.alertAppend, 0.5) <= 0 || percentile(l.queryable, 0.5) <= 0 {
		t.Errorf("latencies not positive: queryable p50 %s, alert p50 %s", percentile(l.queryable, 0.5), percentile(l.alertAppend, 0.5))
	}
	report := out.render()
	for _, want := range []string{"## Throughput", "## Bare ClickHouse writer", "## Latency at a fixed rate", "produce -> queryable", "produce -> alert appended"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}

func TestPercentile(t *testing.T) {
	d := make([]time.Duration, 1000)
	for i := range d {
		d[i] = time.Duration(i + 1)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0, 1}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %d, want %d", c.p, got, c.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

// The tariff binary the tests run, built once for the package.
var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func tariffBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "tariff-bench-"); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "tariff")
		if out, err := exec.Command("go", "build", "-o", buildBin, "../../cmd/tariff").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build tariff: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// TestMain removes the binary built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
