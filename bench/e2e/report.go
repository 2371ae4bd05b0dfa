package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The performance report (-report): the micro benchmarks, the end-to-end
// run with both bare baselines and the latency run at half of tariff's
// rate, and the growth series, in one Markdown file with its charts and a
// table of the targets up front.

// microBench is one micro benchmark of the report: a stage of the path an
// event takes, the benchmark that measures it and how many events one of
// its operations handles.
type microBench struct {
	stage, pkg, name string
	eventsPerOp      int
	about            string
}

var microBenches = []microBench{
	{"decode: gateway", "./schemas", "DecodeGateway", 1, "one gateway event (4 usage fields, 2 dimensions)"},
	{"decode: LiteLLM", "./schemas", "DecodeLiteLLM", 1, "one StandardLoggingPayload (6.5 kB, as LiteLLM posts it)"},
	{"decode: OpenRouter", "./schemas", "DecodeOpenRouterCompletion", 1, "one chat completion response with usage and cost"},
	{"decode: meter", "./schemas", "DecodeMeter", 6, "one Amberflo-shaped message of 7 records, 6 billable events"},
	{"rating", "./rating", "Rate", 1, "one 4-token-type event against the full LiteLLM price map, markup applied"},
	{"deduplication, new event", "./pipeline", "DedupNew", 1, "the Bloom filter's no, among 200,000 stored keys"},
	{"deduplication, duplicate", "./pipeline", "DedupSeen", 1, "the filter's maybe and the Badger lookup that finds the key"},
	{"state update: balance", "./pipeline/balance", "ApplyUsage", 1, "one rated event drawn from a hybrid plan's account"},
	{"state update: Badger commit", "./pipeline", "StateApply", 1, "an event's idempotency key and half an aggregate, in batches of 2,000"},
	{"ClickHouse batch encode", "./sinks", "ClickHouseBatchEncode", 1, "an event's 3 rated_lines rows built and appended to a clickhouse-go insert"},
	{"whole partition path", "./pipeline", "ProcessBatch", 1, "decode, validate, dedup, rate, aggregate, changelog record, Badger commit; no I/O"},
}

// microResult is what one benchmark printed.
type microResult struct {
	microBench
	nsOp, allocsOp, bytesOp float64
}

func (r microResult) nsEvent() float64     { return r.nsOp / float64(r.eventsPerOp) }
func (r microResult) allocsEvent() float64 { return r.allocsOp / float64(r.eventsPerOp) }

// benchLine matches a line of `go test -bench -benchmem` output.
var benchLine = regexp.MustCompile(`^Benchmark(\w+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op.*?\s([\d.]+) B/op\s+([\d.]+) allocs/op`)

// runMicro runs the micro benchmarks with go test (the ClickHouse one
// against o.clickhouse) and returns their figures in microBenches order.
func runMicro(o options) ([]microResult, error) {
	var names, pkgs []string
	seen := map[string]bool{}
	for _, m := range microBenches {
		names = append(names, m.name)
		if !seen[m.pkg] {
			seen[m.pkg] = true
			pkgs = append(pkgs, m.pkg)
		}
	}
	args := append([]string{"test", "-run", "^$", "-bench", "^Benchmark(" + strings.Join(names, "|") + ")$", "-benchmem", "-count", "1"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "TARIFF_TEST_CLICKHOUSE="+o.clickhouse)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	got := map[string]microResult{}
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: github.com/tariff-dev/tariff/"); ok {
			pkg = "./" + p
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var r microResult
		r.nsOp, _ = strconv.ParseFloat(m[2], 64)
		r.bytesOp, _ = strconv.ParseFloat(m[3], 64)
		r.allocsOp, _ = strconv.ParseFloat(m[4], 64)
		got[pkg+" "+m[1]] = r
	}
	var res []microResult
	for _, mb := range microBenches {
		r, ok := got[mb.pkg+" "+mb.name]
		if !ok {
			return nil, fmt.Errorf("benchmark %s of %s printed no result:\n%s", mb.name, mb.pkg, out)
		}
		r.microBench = mb
		res = append(res, r)
	}
	return res, nil
}

func microFigure(res []microResult, name string) (microResult, bool) {
	for _, r := range res {
		if r.name == name {
			return r, true
		}
	}
	return microResult{}, false
}

// runReport runs every part and writes the report.
func runReport(ctx context.Context, o options) error {
	started := time.Now()
	if o.bin == "" {
		o.bin = filepath.Join(os.TempDir(), "tariff-e2e")
		if out, err := exec.Command("go", "build", "-o", o.bin, "./cmd/tariff").CombinedOutput(); err != nil {
			return fmt.Errorf("build tariff: %v\n%s", err, out)
		}
	}
	o.logf("micro benchmarks...\n")
	micro, err := runMicro(o)
	if err != nil {
		return err
	}
	eo := o
	if eo.rate == "" {
		eo.rate = "half"
	}
	eo.chBaseline = true
	out, err := measure(ctx, eo)
	if err != nil {
		return err
	}
	g, err := runGrowthSeries(ctx, o)
	if err != nil {
		return err
	}

	path := o.out
	if path == "" {
		path = filepath.Join("bench", "results", "report-"+started.UTC().Format("2006-01-02")+".md")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	growthMD, err := g.render(dir, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# tariff performance report, %s\n\n", started.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s; the Kafka broker and ClickHouse %s on the same machine. The whole run took %s.\n\n", machine(), out.chVersion, time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "Command: `%s`%s\n\n", o.reportCommand(), revision())
	b.WriteString(renderTargets(micro, out, g))
	b.WriteString(renderMicro(micro))
	b.WriteString("## End to end\n\n")
	b.WriteString(demote(dropTitle(out.render())))
	b.WriteString("\n## Growth\n\n")
	b.WriteString(demote(dropTitle(growthMD)))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("report: %s\n", path)
	return g.failures()
}

// reportCommand is the command line that reruns this report.
func (o *options) reportCommand() string {
	cmd := fmt.Sprintf("go run ./bench/e2e -report -events %d -customers %d -partitions %d%s", o.events, o.customers, o.partitions, o.memLimitFlag())
	g := o.growth
	cmd += fmt.Sprintf(" -growth-events %d -growth-customers %s -growth-models %s -growth-partitions %s", g.events, quoteList(g.customers), quoteList(g.models), quoteList(g.partitions))
	return cmd
}

// renderTargets is the table of issue targets with the figures measured.
func renderTargets(micro []microResult, out *outcome, g *growthRun) string {
	var b strings.Builder
	b.WriteString("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	rate := float64(out.tput.events) / out.tput.wall.Seconds()
	fmt.Fprintf(&b, "| end to end, exactly once: at least 100,000 events/s sustained | %.0f events/s (whole run), exact totals | %s |\n", rate, verdict(rate >= 100_000))
	if out.base.name != "" && out.base.wall > 0 {
		ratio := (float64(out.st.Messages) / out.tput.wall.Seconds()) / (float64(out.st.Messages) / out.base.wall.Seconds())
		fmt.Fprintf(&b, "| at least half of the bare kafka-go consumer's rate on the same topics | %.1f%% of it (messages/s) | %s |\n", 100*ratio, verdict(ratio >= 0.5))
	}
	if out.bw != nil && out.bw.busy > 0 && out.chRow > 0 {
		fmt.Fprintf(&b, "| (for scale) the bare clickhouse-go writer, rated_lines rows only | %.0f rows/s, that is %.0f events/s at this stream's %.2f rows per event | - |\n",
			out.bw.rowsPerSec(), out.bw.rowsPerSec()*float64(out.tput.events)/float64(out.chRow), float64(out.chRow)/float64(out.tput.events))
	}
	if d, ok := microFigure(micro, "DecodeGateway"); ok {
		if r, ok := microFigure(micro, "Rate"); ok {
			perCore := 1e9 / (d.nsEvent() + r.nsEvent())
			fmt.Fprintf(&b, "| rating plus decode of gateway events: at least 1,000,000 events/s per core | %.0f events/s per core (%.0f + %.0f ns, one goroutine) | %s |\n", perCore, d.nsEvent(), r.nsEvent(), verdict(perCore >= 1e6))
		}
	}
	rss, cpu := g.verdicts()
	fmt.Fprintf(&b, "| peak RSS at most 512 MiB with 1,000,000 customers with balances | %s | %s |\n", strings.NewReplacer("**met**: ", "", "**not met**: ", "").Replace(rss), verdictOf(rss))
	fmt.Fprintf(&b, "| cost per event flat (within 20%%) from 1k to 1M customers | %s | %s |\n", strings.NewReplacer("**met**: ", "", "**not met**: ", "").Replace(cpu), verdictOf(cpu))
	if lat := out.lat; lat != nil && len(lat.queryable) > 0 {
		p99 := percentile(lat.queryable, 0.99)
		fmt.Fprintf(&b, "| p99 produce to queryable in ClickHouse under 2 s at half of the maximum | %.0f ms at %.0f messages/s | %s |\n", float64(p99)/1e6, lat.rate, verdict(p99 < 2*time.Second))
	}
	b.WriteString("\n")
	return b.String()
}

func verdictOf(s string) string {
	switch {
	case strings.HasPrefix(s, "**met**"):
		return "met"
	case strings.HasPrefix(s, "**not met**"):
		return "**not met**"
	}
	return "not measured"
}

// renderMicro is the micro benchmarks' table.
func renderMicro(res []microResult) string {
	var b strings.Builder
	b.WriteString("## Micro figures\n\nEach from `go test -bench` (one goroutine, so per core), per event: an operation of the decoders handles a whole message, divided here by its events.\n\n")
	b.WriteString("| stage | benchmark | ns per event | allocations per event | bytes per event | one operation |\n|---|---|---|---|---|---|\n")
	for _, r := range res {
		fmt.Fprintf(&b, "| %s | `%s` %s | %.0f | %.1f | %.0f | %s |\n", r.stage, r.pkg, r.name, r.nsEvent(), r.allocsEvent(), r.bytesOp/float64(r.eventsPerOp), r.about)
	}
	b.WriteString("\nRerun: `go test -run '^$' -bench . -benchmem ./schemas/ ./rating/ ./pipeline/ ./pipeline/balance/ ./sinks/` (the ClickHouse one needs `TARIFF_TEST_CLICKHOUSE=127.0.0.1:9000`).\n\n")
	return b.String()
}

// dropTitle removes a report's first line, its level-1 title.
func dropTitle(md string) string {
	if strings.HasPrefix(md, "# ") {
		if i := strings.IndexByte(md, '\n'); i >= 0 {
			return strings.TrimLeft(md[i+1:], "\n")
		}
	}
	return md
}

// demote moves every heading one level down, for a report inside another.
func demote(md string) string {
	lines := strings.Split(md, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "#") {
			lines[i] = "#" + l
		}
	}
	return strings.Join(lines, "\n")
}
