package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline/testenv"
)

// TestGrowthTiny runs the growth harness at a tiny size on the real
// servers (two customer points with accounts, one model point, one
// partition point) and checks each point is exact and complete, that the
// measured process really held every account, and that the report and its
// charts are written. Each customer's grant is smaller than any usage, so
// a process that started without the accounts (or lost some) emits fewer
// zero-balance alerts than the stream has billed customers, and the test
// fails.
func TestGrowthTiny(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	bin := tariffBinary(t)
	dir := t.TempDir()
	o := options{
		broker: broker, clickhouse: ch, customers: 300, partitions: 2, models: "default", memLimit: "0", bin: bin,
		poll: 50 * time.Millisecond, grant: "0.000001", balanceGrant: "0.000001", log: tWriter{t},
		out:    filepath.Join(dir, "growth-test.md"),
		growth: growthOptions{on: true, events: 1000, customers: "200,800", models: "5", partitions: "1"},
	}
	start := time.Now()
	run, err := runGrowthSeries(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("measured in %s", time.Since(start).Round(time.Millisecond))
	if len(run.points) != 4 {
		t.Fatalf("%d points, want 4", len(run.points))
	}
	for _, p := range run.points {
		if p.err != nil || p.diffs != 0 {
			t.Errorf("%s=%s: %s %v %s", p.series, p.value, p.exact(), p.err, p.diffText)
			continue
		}
		if p.events <= 0 || p.wall <= 0 || p.cpu <= 0 || p.rss <= 0 {
			t.Errorf("%s=%s: events %d, wall %s, CPU %s, RSS %d: want all measured", p.series, p.value, p.events, p.wall, p.cpu, p.rss)
		}
		// A stream this small may be done in the first batch (no steady
		// part); when there is one, it is a part of the run.
		if p.steadyMsgs != 0 && (p.steadyMsgs >= p.messages || p.steadyWall >= p.wall || p.steadyCPU > p.cpu) {
			t.Errorf("%s=%s: steady part %d messages, %s, %s CPU is not inside the run (%d messages, %s, %s CPU)",
				p.series, p.value, p.steadyMsgs, p.steadyWall, p.steadyCPU, p.messages, p.wall, p.cpu)
		}
		switch p.series {
		case seriesCustomers:
			if p.acct == nil || p.acct.grants != p.customers || p.acct.wall <= 0 || p.acct.rss <= 0 {
				t.Errorf("customers=%s: account phase %+v, want %d grants applied and measured", p.value, p.acct, p.customers)
			}
			if p.billedCustomers == 0 || p.alerts != int64(p.billedCustomers) {
				t.Errorf("customers=%s: %d balance alerts for %d billed customers; want one zero alert each (every account loaded)", p.value, p.alerts, p.billedCustomers)
			}
		case seriesModels:
			// Five of the popular models and five OpenRouter slugs.
			if p.models != 10 || p.acct != nil {
				t.Errorf("models=5: %d price entries (accounts %v), want 10 and no account phase", p.models, p.acct)
			}
		case seriesPartitions:
			if p.partitions != 1 || p.models != run.points[0].models {
				t.Errorf("partitions=1: %d partitions, %d models; want 1 and the fixed selection's %d", p.partitions, p.models, run.points[0].models)
			}
		}
	}
	if err := run.write(o.out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(md)
	for _, want := range []string{
		"## Targets", "not measured: the customers series has no point at 1,000,000 customers",
		"Cost per event flat (within 20%) from 1k to 1M customers: **", "over the measured range only",
		"## Growth by customers (each with an account)", "## Growth by models", "## Growth by partitions",
		fmt.Sprintf("| 200 | %d | 2 |", run.points[0].models), fmt.Sprintf("| 800 | %d | 2 |", run.points[0].models),
		"| 5 | 300 | 10 | 2 |", fmt.Sprintf("| 300 | %d | 1 |", run.points[0].models),
		"-growth-customers 200,800 -growth-models 5 -growth-partitions 1",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, name := range []string{"customers", "models", "partitions"} {
		for _, f := range []string{"growth-test-" + name + ".svg", "growth-test-" + name + "-cpu.svg"} {
			if !strings.Contains(report, "]("+f+")") {
				t.Errorf("report does not embed %s", f)
			}
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Error(err)
				continue
			}
			if err := wellFormed(b); err != nil || !bytes.Contains(b, []byte("<circle")) {
				t.Errorf("%s: not an SVG chart with points (%v)", f, err)
			}
		}
	}
}

func wellFormed(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func TestGrowthPlanRefusesBadLists(t *testing.T) {
	for _, g := range []growthOptions{
		{events: 10, customers: "1000,x"},
		{events: 10, customers: "1000,-5"},
		{events: 10, models: "10,everything"},
		{events: 10, partitions: "all"},
		{events: 0, customers: "1000"},
		{events: 10},
	} {
		if _, err := g.plan(options{}); err == nil {
			t.Errorf("%+v: no error", g)
		}
	}
	p, err := (&growthOptions{events: 10, customers: "1000, 10000", models: "10,all", partitions: ""}).plan(options{})
	if err != nil || len(p.customers) != 2 || len(p.models) != 2 || len(p.partitions) != 0 || p.models[1] != "all" {
		t.Errorf("plan = %+v, %v", p, err)
	}
	if thousands(1000000) != "1,000,000" || thousands(999) != "999" || thousands(1000) != "1,000" {
		t.Error("thousands")
	}
}
