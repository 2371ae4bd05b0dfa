package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/bench/loadgen"
	"github.com/tariff-dev/tariff/bench/svgchart"
	"github.com/tariff-dev/tariff/sinks"
)

// The growth series: the throughput run of measure() repeated while one
// dimension grows and the others stay at -customers, -models and
// -partitions. See bench/README.md.

// growthOptions are the -growth flags.
type growthOptions struct {
	on bool
	// events is the messages per point.
	events int
	// customers, models and partitions are the points of each series;
	// an empty list leaves the series out.
	customers, models, partitions string
}

func (g *growthOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&g.on, "growth", false, "run the growth series (customers, models, partitions) instead of one run; -customers, -models and -partitions are the values held fixed")
	fs.IntVar(&g.events, "growth-events", 200_000, "messages per point of the growth series")
	fs.StringVar(&g.customers, "growth-customers", "1000,10000,100000,1000000", "customer counts of the customers series, each customer with an account (empty: no such series)")
	fs.StringVar(&g.models, "growth-models", "10,50,200,all", `model counts of the models series, "all" for every priced chat model (empty: no such series)`)
	fs.StringVar(&g.partitions, "growth-partitions", "1,2,4,8,12", "partition counts of the partitions series (empty: no such series)")
}

// series names, in report order.
const (
	seriesCustomers  = "customers"
	seriesModels     = "models"
	seriesPartitions = "partitions"
)

// growthPoint is one measured point of a series.
type growthPoint struct {
	series string
	value  string // the flag value: "1000", "all"
	x      float64
	label  string // x tick label

	customers, models, partitions int
	messages, events              int64
	wall, cpu                     time.Duration
	rss                           int64 // KiB, the measured process's peak
	// The steady part: from the first commit to the end (see result).
	steadyMsgs            int64
	steadyWall, steadyCPU time.Duration
	acct                  *accountPhase
	alerts                int64
	billedCustomers       int
	diffs                 int
	diffText              string
	err                   error
}

func (p *growthPoint) eventsPerSec() float64 { return float64(p.events) / p.wall.Seconds() }
func (p *growthPoint) cpuPerMillion() float64 {
	return p.cpu.Seconds() / (float64(p.events) / 1e6)
}
func (p *growthPoint) nsPerEvent() float64 { return float64(p.cpu.Nanoseconds()) / float64(p.events) }

// hasSteady reports whether the run had a steady part to measure (a tiny
// stream can be done in the first batch).
func (p *growthPoint) hasSteady() bool {
	return p.err == nil && p.steadyMsgs > 0 && p.steadyWall > 0 && p.messages > 0
}

// steadyEvents is the events of the steady part: its share of the stream's
// messages times the stream's events (the formats are mixed evenly through
// the stream, so the share holds to a fraction of a percent).
func (p *growthPoint) steadyEvents() float64 {
	return float64(p.events) * float64(p.steadyMsgs) / float64(p.messages)
}
func (p *growthPoint) steadyEventsPerSec() float64 { return p.steadyEvents() / p.steadyWall.Seconds() }
func (p *growthPoint) steadyNsPerEvent() float64 {
	return float64(p.steadyCPU.Nanoseconds()) / p.steadyEvents()
}

// peakRSS is the highest RSS any tariff process of the point reached, the
// account-building one included, in KiB.
func (p *growthPoint) peakRSS() int64 {
	r := p.rss
	if p.acct != nil {
		r = max(r, p.acct.rss)
	}
	return r
}

// exact says how the point's totals compared with the expectation.
func (p *growthPoint) exact() string {
	switch {
	case p.err != nil:
		return "run failed"
	case p.diffs == 0:
		return "exact"
	}
	return fmt.Sprintf("%d totals differ", p.diffs)
}

// parseCounts reads "1000,10000" (allowing "all" when allowAll).
func parseCounts(flagName, s string, allowAll bool) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == loadgen.ModelsAll && allowAll {
			out = append(out, f)
			continue
		}
		if n, err := strconv.Atoi(f); err != nil || n <= 0 {
			want := "positive counts"
			if allowAll {
				want += ` or "all"`
			}
			return nil, fmt.Errorf("-%s %q: %q: expected comma-separated %s", flagName, s, f, want)
		}
		out = append(out, f)
	}
	return out, nil
}

// growthPlan is the points to run, by series.
type growthPlan struct {
	customers, models, partitions []string
}

func (g *growthOptions) plan(o options) (growthPlan, error) {
	var p growthPlan
	var errs []error
	var err error
	if g.events <= 0 {
		errs = append(errs, fmt.Errorf("-growth-events %d: expected a positive message count", g.events))
	}
	if p.customers, err = parseCounts("growth-customers", g.customers, false); err != nil {
		errs = append(errs, err)
	}
	if p.models, err = parseCounts("growth-models", g.models, true); err != nil {
		errs = append(errs, err)
	}
	if p.partitions, err = parseCounts("growth-partitions", g.partitions, false); err != nil {
		errs = append(errs, err)
	}
	if len(p.customers)+len(p.models)+len(p.partitions) == 0 {
		errs = append(errs, errors.New("-growth-customers, -growth-models, -growth-partitions: all empty; expected at least one series"))
	}
	if o.out == "-" {
		errs = append(errs, errors.New(`-out "-": the growth report has chart files beside it; expected a file path`))
	}
	return p, errors.Join(errs...)
}

// growthRun is the whole series run.
type growthRun struct {
	o         options
	points    []growthPoint
	started   time.Time
	elapsed   time.Duration
	chVersion string
}

func runGrowth(ctx context.Context, o options) error {
	g, err := runGrowthSeries(ctx, o)
	if err != nil {
		return err
	}
	path := o.out
	if path == "" {
		path = filepath.Join("bench", "results", "growth-"+g.started.UTC().Format("2006-01-02")+".md")
	}
	if err := g.write(path); err != nil {
		return err
	}
	fmt.Printf("report: %s\n", path)
	return g.failures()
}

// failures names the points that failed or were not exact, if any.
func (g *growthRun) failures() error {
	var failed []string
	for _, p := range g.points {
		if p.err != nil || p.diffs != 0 {
			failed = append(failed, fmt.Sprintf("%s=%s: %s", p.series, p.value, p.exact()))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("growth points not exact or failed: %s", strings.Join(failed, "; "))
	}
	return nil
}

// runGrowthSeries measures every point. A point that fails is recorded
// with its error and the others still run.
func runGrowthSeries(ctx context.Context, o options) (*growthRun, error) {
	plan, err := o.growth.plan(o)
	if err != nil {
		return nil, err
	}
	base := o
	base.events, base.skipConsumer, base.chBaseline, base.rate, base.keepDiffs = o.growth.events, true, false, "", true
	base.balances = true // checks -balance-grant
	if err := base.validate(); err != nil {
		return nil, err
	}
	base.balances = false
	if o.bin == "" {
		o.bin = filepath.Join(os.TempDir(), "tariff-e2e")
		if out, err := exec.Command("go", "build", "-o", o.bin, "./cmd/tariff").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build tariff: %v\n%s", err, out)
		}
	}
	base.bin = o.bin
	run := &growthRun{o: o, started: time.Now()}
	type job struct {
		series, value string
		o             options
	}
	var jobs []job
	for _, v := range plan.customers {
		p := base
		p.customers, _ = strconv.Atoi(v)
		p.balances = true
		jobs = append(jobs, job{seriesCustomers, v, p})
	}
	for _, v := range plan.models {
		p := base
		p.models = v
		jobs = append(jobs, job{seriesModels, v, p})
	}
	for _, v := range plan.partitions {
		p := base
		p.partitions, _ = strconv.Atoi(v)
		jobs = append(jobs, job{seriesPartitions, v, p})
	}
	for i, j := range jobs {
		o.logf("growth %d/%d: %s = %s (customers %d, models %s, partitions %d, %d messages)\n",
			i+1, len(jobs), j.series, j.value, j.o.customers, j.o.models, j.o.partitions, j.o.events)
		pt := growthPoint{series: j.series, value: j.value, customers: j.o.customers, partitions: j.o.partitions}
		out, err := measure(ctx, j.o)
		if err != nil {
			pt.err = err
			o.logf("growth %s = %s failed: %v\n", j.series, j.value, err)
		} else {
			pt.models = out.models
			pt.messages, pt.events = out.st.Messages, out.tput.events
			pt.wall, pt.cpu, pt.rss = out.tput.wall, out.tput.cpu, out.tput.rss
			pt.steadyMsgs, pt.steadyWall, pt.steadyCPU = out.tput.steadyMsgs, out.tput.steadyWall, out.tput.steadyCPU
			pt.acct, pt.diffs, pt.diffText = out.acct, out.diffs, out.diffText
			pt.alerts, pt.billedCustomers = out.alerts, out.billedCustomers
			run.chVersion = out.chVersion
			steady := "no steady part"
			if pt.hasSteady() {
				steady = fmt.Sprintf("steady %.0f events/s, %.0f ns CPU per event", pt.steadyEventsPerSec(), pt.steadyNsPerEvent())
			}
			o.logf("growth %s = %s: %.0f events/s, %.0f ns CPU per event from start; %s; peak RSS %d MiB, %s\n",
				j.series, j.value, pt.eventsPerSec(), pt.nsPerEvent(), steady, pt.peakRSS()/1024, pt.exact())
			if err := dropRun(ctx, j.o, out.db); err != nil {
				o.logf("growth: cleaning up %s: %v\n", out.db, err)
			}
		}
		switch j.series {
		case seriesCustomers:
			pt.x, pt.label = float64(pt.customers), svgchart.Number(float64(pt.customers))
		case seriesModels:
			pt.x, pt.label = float64(pt.models), strconv.Itoa(pt.models)
			if j.value == loadgen.ModelsAll {
				pt.label = fmt.Sprintf("all (%d)", pt.models)
			}
		case seriesPartitions:
			pt.x, pt.label = float64(pt.partitions), j.value
		}
		run.points = append(run.points, pt)
	}
	run.elapsed = time.Since(run.started)
	return run, nil
}

// dropRun removes what one measured run left on the shared servers: its
// ClickHouse database and its topics (name.*), so a growth run with a
// million grant commands does not leave gigabytes behind.
func dropRun(ctx context.Context, o options, name string) error {
	var errs []error
	conn, err := sinks.OpenClickHouse(ctx, sinks.ClickHouseConfig{Addr: o.clickhouse})
	if err == nil {
		errs = append(errs, conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+name+"`"))
		conn.Close()
	} else {
		errs = append(errs, err)
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(o.broker), Timeout: 30 * time.Second, Transport: tr}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var topics []string
	for _, t := range md.Topics {
		if strings.HasPrefix(t.Name, name+".") {
			topics = append(topics, t.Name)
		}
	}
	if len(topics) > 0 {
		res, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
		errs = append(errs, err)
		if err == nil {
			for t, e := range res.Errors {
				if e != nil {
					errs = append(errs, fmt.Errorf("delete topic %s: %w", t, e))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Targets of the issue.
const (
	targetRSSKiB      = 512 * 1024
	targetRSSCustomer = 1_000_000
	targetCPUSpread   = 0.20
)

// machine describes this machine from /proc: CPU model, logical CPUs and
// memory.
func machine() string {
	model, cpus := "unknown CPU", 0
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				model = strings.TrimSpace(v)
			case "processor":
				cpus++
			}
		}
		f.Close()
	}
	mem := "unknown memory"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				if f := strings.Fields(l); len(f) >= 2 {
					kb, _ := strconv.ParseInt(f[1], 10, 64)
					mem = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
				}
			}
		}
	}
	return fmt.Sprintf("%s, %d logical CPUs (GOMAXPROCS %d), %s", model, cpus, runtime.GOMAXPROCS(0), mem)
}

func (g *growthRun) command() string {
	o := g.o
	return fmt.Sprintf("go run ./bench/e2e -growth -growth-events %d -growth-customers %s -growth-models %s -growth-partitions %s -customers %d -models %s -partitions %d -balance-grant %s%s",
		o.growth.events, quoteList(o.growth.customers), quoteList(o.growth.models), quoteList(o.growth.partitions), o.customers, o.models, o.partitions, o.balanceGrant, o.memLimitFlag())
}

func quoteList(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func (g *growthRun) series(name string) []growthPoint {
	var out []growthPoint
	for _, p := range g.points {
		if p.series == name {
			out = append(out, p)
		}
	}
	return out
}

// verdicts are the two target lines.
func (g *growthRun) verdicts() (rss, cpu string) {
	cs := g.series(seriesCustomers)
	rss = "not measured: the customers series has no point at 1,000,000 customers"
	for _, p := range cs {
		if p.customers == targetRSSCustomer && p.err == nil {
			v := "**met**"
			if p.peakRSS() > targetRSSKiB {
				v = "**not met**"
			}
			rss = fmt.Sprintf("%s: peak RSS %d MiB with %s customers, each with an account (target at most 512 MiB)", v, p.peakRSS()/1024, thousands(p.customers))
		}
	}
	var ok []growthPoint
	steady := true
	for _, p := range cs {
		if p.err == nil {
			ok = append(ok, p)
			steady = steady && p.hasSteady()
		}
	}
	if len(ok) < 2 {
		return rss, "not measured: fewer than two customer points succeeded"
	}
	// The steady figure when every point has one: process start (joining,
	// loading a million accounts) is a cost per start, not per event.
	perEvent, which := (*growthPoint).steadyNsPerEvent, "steady-state CPU per event"
	if !steady {
		perEvent, which = (*growthPoint).nsPerEvent, "CPU per event from process start (some points had no steady part)"
	}
	first := ok[0]
	worst, at := 0.0, ok[0]
	for _, p := range ok[1:] {
		if d := math.Abs(perEvent(&p)/perEvent(&first) - 1); d > worst {
			worst, at = d, p
		}
	}
	v := "**met**"
	if worst > targetCPUSpread {
		v = "**not met**"
	}
	last := ok[len(ok)-1]
	rangeNote := ""
	if first.customers != 1000 || last.customers != targetRSSCustomer {
		rangeNote = " (over the measured range only; the target spans 1k to 1M customers)"
	}
	cpu = fmt.Sprintf("%s: %s from %s to %s customers differs by at most %.1f%% from the %s-customer figure (%.0f ns); the largest difference is at %s customers, %.0f ns (target within 20%%)%s",
		v, which, svgchart.Number(float64(first.customers)), svgchart.Number(float64(last.customers)), 100*worst,
		svgchart.Number(float64(first.customers)), perEvent(&first), svgchart.Number(float64(at.customers)), perEvent(&at), rangeNote)
	return rss, cpu
}

// write writes the Markdown report to path and the charts beside it.
func (g *growthRun) write(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	report, err := g.render(dir, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(report), 0o644)
}

// render returns the Markdown report, writing its charts into dir with
// names starting with stem.
func (g *growthRun) render(dir, stem string) (string, error) {
	var b strings.Builder
	o := g.o
	fmt.Fprintf(&b, "# tariff growth, %s\n\n", g.started.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s; the Kafka broker and ClickHouse %s on the same machine. The whole run took %s.\n\n", machine(), g.chVersion, g.elapsed.Round(time.Second))
	fmt.Fprintf(&b, "Command: `%s`%s\n\n", g.command(), revision())
	rss, cpu := g.verdicts()
	fmt.Fprintf(&b, "## Targets\n\n- Peak RSS of the tariff process at most 512 MiB with 1,000,000 customers with balances: %s.\n- Cost per event flat (within 20%%) from 1k to 1M customers: %s.\n\n", rss, cpu)
	fmt.Fprintf(&b, "Each point is the throughput run of `go run ./bench/e2e` on fresh topics and a fresh ClickHouse database: a loadgen stream of %d messages (gateway, LiteLLM, OpenRouter and meter; 2%% duplicates, 0.5%% malformed) published first, then `tariff run` (its defaults, %s) reading it as fast as it can. events/s counts unique events from process start (group join, changelog replay, account loading) until the group has committed every input offset; CPU is the process's user+system time from /proc over the same span. The steady figures leave process start out: they run from the first moment the group was seen to have committed anything (polled every 100 ms; the process had joined, loaded its state and made a batch durable) to the end, over the events of the messages committed in that span. Peak RSS is the kernel's high-water mark (VmHWM) over the process's whole life. Exact: ClickHouse's usage_daily totals per customer, price entry and unit equal to the generator's independent decimal expectation.\n\n",
		o.growth.events, o.memLimitText())
	fmt.Fprintf(&b, "Models: `-models N` takes the first N of loadgen's popular chat models (then the rest of the bundled price map in key order) for gateway, LiteLLM and meter messages, and the first N of OpenRouter's slugs for OpenRouter messages; `all` takes every priced chat model of the map. \"price entries\" is how many distinct entries of the price map those resolve to, the x axis of the models charts.\n\n")
	fmt.Fprintf(&b, "Held fixed: %d customers, models %q, %d partitions. In the customers series every customer has an account first: one grant of %s USD per customer on a command topic, applied by a first tariff process that reads only that topic; the measured process starts on that state with every account loaded. Peak RSS there is the larger of the two processes'; balance alerts are the alerts the measured process emitted (customers whose usage crossed a threshold of their grant).\n\n",
		o.customers, o.models, o.partitions, o.balanceGrant)
	titles := map[string]string{seriesCustomers: "Growth by customers (each with an account)", seriesModels: "Growth by models", seriesPartitions: "Growth by partitions"}
	for _, name := range []string{seriesCustomers, seriesModels, seriesPartitions} {
		pts := g.series(name)
		if len(pts) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n", titles[name])
		acctCols := name == seriesCustomers
		if name == seriesModels {
			b.WriteString("| -models ")
		}
		b.WriteString("| customers | price entries | partitions | messages | events | wall | events/s | CPU s per million events | ns CPU per event | steady events/s | steady ns CPU per event | peak RSS |")
		if acctCols {
			b.WriteString(" accounts applied in | RSS applying | balance alerts |")
		}
		b.WriteString(" exact |\n|")
		n := 13
		if acctCols {
			n += 3
		}
		if name == seriesModels {
			n++
		}
		b.WriteString(strings.Repeat("---|", n) + "\n")
		var okPts []growthPoint
		for _, p := range pts {
			if p.err != nil {
				if name == seriesModels {
					fmt.Fprintf(&b, "| %s ", p.value)
				}
				fmt.Fprintf(&b, "| %d | - | %d | - | - | - | - | - | - | - | - | - |", p.customers, p.partitions)
				if acctCols {
					b.WriteString(" - | - | - |")
				}
				fmt.Fprintf(&b, " run failed: %s |\n", oneLine(p.err.Error()))
				continue
			}
			okPts = append(okPts, p)
			if name == seriesModels {
				fmt.Fprintf(&b, "| %s ", p.value)
			}
			steadyRate, steadyCPU := "-", "-"
			if p.hasSteady() {
				steadyRate, steadyCPU = fmt.Sprintf("%.0f", p.steadyEventsPerSec()), fmt.Sprintf("%.0f", p.steadyNsPerEvent())
			}
			fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %s | %.0f | %.1f | %.0f | %s | %s | %d MiB |", p.customers, p.models, p.partitions,
				p.messages, p.events, p.wall.Round(time.Millisecond), p.eventsPerSec(), p.cpuPerMillion(), p.nsPerEvent(), steadyRate, steadyCPU, p.rss/1024)
			if acctCols {
				if p.acct != nil {
					fmt.Fprintf(&b, " %s | %d MiB | %d |", p.acct.wall.Round(time.Millisecond), p.acct.rss/1024, p.alerts)
				} else {
					b.WriteString(" - | - | - |")
				}
			}
			fmt.Fprintf(&b, " %s |\n", p.exact())
		}
		for _, p := range okPts {
			if p.diffs > 0 {
				fmt.Fprintf(&b, "\n%s = %s: first differences:\n\n```\n%s\n```\n", name, p.value, p.diffText)
			}
		}
		if len(okPts) == 0 {
			b.WriteString("\nNo point of this series succeeded: no chart.\n\n")
			continue
		}
		// Throughput: the steady figure when every point has one (what
		// the process sustains), else from process start.
		steady := true
		for _, p := range okPts {
			steady = steady && p.hasSteady()
		}
		tp := svgchart.Series{Name: "events/s from start", Axis: svgchart.AxisLeft}
		if steady {
			tp.Name = "events/s, steady"
		}
		mem := svgchart.Series{Name: "peak RSS (MiB)", Axis: svgchart.AxisRight}
		cpuStart := svgchart.Series{Name: "CPU ns per event from start", Axis: svgchart.AxisLeft}
		cpuSteady := svgchart.Series{Name: "CPU ns per event, steady", Axis: svgchart.AxisLeft}
		for _, p := range okPts {
			rate := p.eventsPerSec()
			if steady {
				rate = p.steadyEventsPerSec()
			}
			tp.Points = append(tp.Points, svgchart.Point{X: p.x, Y: math.Round(rate), Label: p.label})
			mem.Points = append(mem.Points, svgchart.Point{X: p.x, Y: float64(p.peakRSS()) / 1024, Label: p.label})
			cpuStart.Points = append(cpuStart.Points, svgchart.Point{X: p.x, Y: math.Round(p.nsPerEvent()), Label: p.label})
			if p.hasSteady() {
				cpuSteady.Points = append(cpuSteady.Points, svgchart.Point{X: p.x, Y: math.Round(p.steadyNsPerEvent()), Label: p.label})
			}
		}
		cpuSeries := []svgchart.Series{cpuStart}
		if len(cpuSteady.Points) > 0 {
			cpuSeries = append(cpuSeries, cpuSteady)
		}
		xlabel := map[string]string{seriesCustomers: "customers (log scale)", seriesModels: "price entries in the stream (log scale)", seriesPartitions: "partitions per input topic"}[name]
		logX := name != seriesPartitions
		charts := []struct {
			file, alt string
			c         svgchart.Chart
		}{
			{stem + "-" + name + ".svg", "throughput and peak RSS by " + name,
				svgchart.Chart{Title: titles[name] + ": throughput and peak RSS", XLabel: xlabel, XLog: logX, YLeft: "events/s", YRight: "peak RSS (MiB)", Series: []svgchart.Series{tp, mem}}},
			{stem + "-" + name + "-cpu.svg", "CPU per event by " + name,
				svgchart.Chart{Title: titles[name] + ": CPU per event", XLabel: xlabel, XLog: logX, YLeft: "CPU ns per event", Series: cpuSeries}},
		}
		b.WriteString("\n")
		for _, c := range charts {
			f, err := os.Create(filepath.Join(dir, c.file))
			if err != nil {
				return "", err
			}
			err = c.c.Write(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "![%s](%s)\n\n", c.alt, c.file)
		}
	}
	fmt.Fprintf(&b, "## How to rerun\n\n`%s`\n\nWith the defaults (200,000 messages per point, 13 points) the run is sized to take under a quarter of an hour on a 2-core machine; for a larger run add `-growth-events 2000000` (each point then runs for minutes, which shrinks the share of process start in the figures).\n", g.command())
	return b.String(), nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// thousands prints 1000000 as 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// revision names the source the run measured: ", at commit abc1234" (and
// whether the tree had uncommitted changes), or "" outside a git checkout.
func revision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	r := ", at commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		r += " with uncommitted changes"
	}
	return r
}
