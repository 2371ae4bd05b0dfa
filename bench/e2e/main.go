// Command e2e measures tariff end to end on the real Kafka broker and
// ClickHouse server, beside the bare tools on the same topics and table,
// and writes a Markdown report. See bench/README.md.
//
// One run has up to three parts:
//
//   - throughput: a loadgen stream is published, read by a bare kafka-go
//     consumer (the reading baseline), then by `tariff run` as fast as it
//     can; tariff's totals in ClickHouse are checked against the
//     generator's to the last digit;
//   - the bare ClickHouse writer: the same rated rows inserted with
//     clickhouse-go alone into a scratch copy of rated_lines (the writing
//     baseline);
//   - latency (-rate): a fresh stream produced at a fixed rate, with the
//     time from produce to the row being queryable in ClickHouse and from
//     produce to the zero-balance alert it causes.
//
// With -growth it runs the throughput part at each point of three series
// instead (customers, each with an account; models; partitions) and writes
// a report with SVG charts (growth.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/bench/loadgen"
	"github.com/tariff-dev/tariff/sinks"
)

// options are the command's flags.
type options struct {
	broker, clickhouse string
	events, customers  int
	partitions         int
	memLimit           string
	bin                string
	out                string
	// chBaseline runs the bare ClickHouse writer after the throughput run.
	chBaseline bool
	// rate is "" (no latency run), messages per second, or "half": half
	// of the messages per second tariff reached in the throughput run.
	rate          string
	latencyEvents int
	poll          time.Duration
	grant         string // each customer's grant in the latency run, USD
	batchMessages int    // tariff's kafka.max_batch_messages (its default)
	log           io.Writer

	// models is the loadgen model selection ("default", "all" or a
	// count); empty: loadgen's default.
	models string
	// skipConsumer leaves out the bare kafka-go consumer (the growth
	// series measure tariff alone).
	skipConsumer bool
	// balances gives every customer an account before the throughput run:
	// one grant of balanceGrant USD per customer, applied by a first
	// tariff process that reads only the command topic; the measured
	// process then starts on that state (every account loaded) with the
	// usage topics added.
	balances     bool
	balanceGrant string
	// keepDiffs records a difference from the expectation in the outcome
	// instead of failing the run (the growth series report it per point).
	keepDiffs bool

	// growth runs the growth series instead of one run (growth.go).
	growth growthOptions
	// report runs everything the performance report needs (report.go).
	report bool
}

func main() {
	var o options
	flag.StringVar(&o.broker, "brokers", "127.0.0.1:9092", "Kafka bootstrap address")
	flag.StringVar(&o.clickhouse, "clickhouse", "127.0.0.1:9000", "ClickHouse native address")
	flag.IntVar(&o.events, "events", 500_000, "messages in the throughput stream")
	flag.IntVar(&o.customers, "customers", 100_000, "customers in the streams")
	flag.IntVar(&o.partitions, "partitions", 4, "partitions of each input topic")
	flag.StringVar(&o.memLimit, "memory-limit", "", "tariff's memory_limit in bytes (0: none; empty: tariff's default, from the container's limit)")
	flag.StringVar(&o.bin, "tariff", "", "tariff binary (default: built from ./cmd/tariff)")
	flag.StringVar(&o.out, "out", "", "report file (default bench/results/e2e-<date>.md; - for standard output only)")
	flag.BoolVar(&o.chBaseline, "clickhouse-baseline", true, "also insert the same rows with a bare clickhouse-go writer")
	flag.StringVar(&o.rate, "rate", "", "latency run at this many messages per second, or \"half\" of tariff's measured rate (empty: no latency run)")
	flag.IntVar(&o.latencyEvents, "latency-events", 0, "messages in the latency run's stream (default: -events)")
	flag.DurationVar(&o.poll, "poll", 50*time.Millisecond, "how often the latency run asks ClickHouse for the highest offset written")
	flag.StringVar(&o.grant, "grant", "0.000001", "each customer's credit grant in the latency run, USD (tiny: the first event exhausts it)")
	flag.StringVar(&o.models, "models", loadgen.ModelsDefault, `models in the streams: "default" (a few dozen popular chat models), "all" (every priced chat model of the bundled price map) or a count`)
	flag.BoolVar(&o.balances, "balances", false, "give every customer an account (a grant of -balance-grant USD) before the throughput run")
	flag.StringVar(&o.balanceGrant, "balance-grant", "100", "each customer's grant with -balances, USD")
	o.growth.flags(flag.CommandLine)
	flag.BoolVar(&o.report, "report", false, "the whole performance report in one run: micro benchmarks, this end-to-end run with both baselines and a latency run (at -rate, default half), and the growth series; written to bench/results/report-<date>.md")
	flag.Parse()
	o.log = os.Stdout
	if o.report {
		if err := runReport(context.Background(), o); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		return
	}
	if o.growth.on {
		if err := runGrowth(context.Background(), o); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		return
	}
	out, err := measure(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	report := out.render()
	path := o.out
	if path == "" {
		path = filepath.Join("bench", "results", "e2e-"+time.Now().UTC().Format("2006-01-02")+".md")
	}
	if path != "-" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
	}
	fmt.Print(report)
}

// outcome is everything one run measured.
type outcome struct {
	o     options
	exp   *loadgen.Expected
	st    loadgen.PublishStats
	base  result
	tput  result
	bw    *writerResult  // nil without -clickhouse-baseline
	lat   *latencyResult // nil without -rate
	db    string         // the throughput run's ClickHouse database
	chRow int64          // rows tariff wrote to rated_lines (FINAL)
	// diffs is how many (customer, price key, unit) totals differed from
	// the expectation (only with keepDiffs; otherwise measure fails), and
	// diffText the first of them.
	diffs    int
	diffText string
	// models is how many price entries the stream's model catalog
	// resolves to (OpenRouter's slugs included).
	models int
	// acct is the account-building phase (with balances); alerts is how
	// many balance alerts the measured process emitted, billedCustomers
	// how many customers the stream bills (with a grant smaller than any
	// customer's usage, each of them gets exactly one zero alert).
	acct            *accountPhase
	alerts          int64
	billedCustomers int

	chVersion string
}

func (o *options) validate() error {
	var errs []error
	if o.events <= 0 || o.customers <= 0 || o.partitions <= 0 {
		errs = append(errs, fmt.Errorf("-events %d, -customers %d, -partitions %d: expected positive counts", o.events, o.customers, o.partitions))
	}
	if o.rate != "" && o.rate != "half" {
		if r, err := strconv.ParseFloat(o.rate, 64); err != nil || r <= 0 {
			errs = append(errs, fmt.Errorf("-rate %q: expected messages per second (a positive number) or \"half\"", o.rate))
		}
	}
	if o.poll < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("-poll %s: expected at least 10ms", o.poll))
	}
	if d, err := decimal.NewFromString(o.grant); err != nil || !d.IsPositive() {
		errs = append(errs, fmt.Errorf("-grant %q: expected a positive amount in USD", o.grant))
	}
	if o.balances {
		if d, err := decimal.NewFromString(o.balanceGrant); err != nil || !d.IsPositive() {
			errs = append(errs, fmt.Errorf("-balance-grant %q: expected a positive amount in USD", o.balanceGrant))
		}
	}
	return errors.Join(errs...)
}

// streamConfig is the loadgen stream of n messages to topics.
func (o *options) streamConfig(n int, topics loadgen.Topics) loadgen.Config {
	cfg := loadgen.DefaultConfig()
	cfg.Events, cfg.Customers, cfg.Topics, cfg.Markup = n, o.customers, topics, "30"
	cfg.Formats = loadgen.MixedWeights // gateway, LiteLLM, OpenRouter, meter
	if o.models != "" {
		cfg.Models = o.models
	}
	cfg.Start = time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	return cfg
}

// memLimitFlag is the -memory-limit flag as given, for a command line.
func (o *options) memLimitFlag() string {
	if o.memLimit == "" {
		return ""
	}
	return " -memory-limit " + o.memLimit
}

// memLimitText says which memory_limit tariff ran with.
func (o *options) memLimitText() string {
	if o.memLimit == "" {
		return "memory_limit unset: tariff's default, 85% of the container's memory limit, none outside one"
	}
	return "memory_limit " + o.memLimit
}

func (o *options) logf(format string, a ...any) {
	if o.log != nil {
		fmt.Fprintf(o.log, format, a...)
	}
}

type result struct {
	name   string
	events int64
	wall   time.Duration
	cpu    time.Duration
	rss    int64 // KiB
	// The steady part (tariff only): from the first commit on the input
	// topics to the end, messages committed in it, its wall and CPU time.
	steadyMsgs int64
	steadyWall time.Duration
	steadyCPU  time.Duration
}

func measure(ctx context.Context, o options) (*outcome, error) {
	if o.latencyEvents == 0 {
		o.latencyEvents = o.events
	}
	if o.batchMessages == 0 {
		o.batchMessages = 5000
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.bin == "" {
		o.bin = filepath.Join(os.TempDir(), "tariff-e2e")
		if out, err := exec.Command("go", "build", "-o", o.bin, "./cmd/tariff").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build tariff: %v\n%s", err, out)
		}
	}
	name := fmt.Sprintf("e2e%d", time.Now().UnixNano()/int64(time.Millisecond))
	topics := loadgen.Topics{Gateway: name + ".gw", Partner: name + ".partner", Meter: name + ".meter", DeadLetter: name + ".dlq"}
	if err := createTopics(ctx, o.broker, o.partitions, nil, topics.Gateway, topics.Partner, topics.Meter, topics.DeadLetter); err != nil {
		return nil, err
	}
	cfg := o.streamConfig(o.events, topics)
	g, err := loadgen.New(cfg)
	if err != nil {
		return nil, err
	}
	st, err := loadgen.Publish(ctx, g, loadgen.PublishConfig{Brokers: []string{o.broker}})
	if err != nil {
		return nil, err
	}
	exp := g.Expected()
	o.logf("published %d messages (%d events) in %s\n", st.Messages, exp.Counts.Events, st.Elapsed.Round(time.Millisecond))

	// Baseline: a bare kafka-go consumer group reading the same topics.
	inputs := []string{topics.Gateway, topics.Partner, topics.Meter}
	var base result
	if !o.skipConsumer {
		base, err = bareConsumer(ctx, o.broker, name+"-bare", inputs, st.Messages)
		if err != nil {
			return nil, err
		}
		o.logf("bare kafka-go consumer: %d messages in %s\n", st.Messages, base.wall.Round(time.Millisecond))
	}

	// tariff itself.
	spec := tariffSpec{group: name, topics: topics}
	var acct *accountPhase
	if o.balances {
		a, err := buildAccounts(ctx, o, name, topics, g, cfg.Start.Add(-24*time.Hour))
		if err != nil {
			return nil, fmt.Errorf("accounts: %w", err)
		}
		defer os.RemoveAll(a.stateDir)
		acct = &a
		spec.stateDir, spec.alerts = a.stateDir, a.alertTopic
		spec.extraTopics = fmt.Sprintf("    %s: command\n", a.cmdTopic)
	}
	tr, err := startTariff(o, spec)
	if err != nil {
		return nil, err
	}
	defer tr.stop()
	// Done when the group has committed every input offset (tariff commits
	// only after the batch is durable); exactness is then checked once.
	if err := tr.waitCaughtUp(ctx, o.broker, name, inputs, 10*time.Minute); err != nil {
		return nil, err
	}
	wall := time.Since(tr.started)
	cpu := cpuTime(tr.cmd.Process.Pid)
	rss := max(tr.rss, peakRSS(tr.cmd.Process.Pid))
	chCfg := sinks.ClickHouseConfig{Addr: o.clickhouse, Database: name}
	got, err := observedDaily(ctx, chCfg)
	if err != nil {
		return nil, err
	}
	diffs, err := exp.Compare(got)
	if err != nil {
		return nil, err
	}
	if len(diffs) > 0 && !o.keepDiffs {
		return nil, fmt.Errorf("tariff's totals differ from the expectation:\n%s", loadgen.Summarize(diffs, 10))
	}
	var diffText string
	if len(diffs) > 0 {
		diffText = loadgen.Summarize(diffs, 3)
	}
	var alerts int64
	billed := map[string]bool{}
	if acct != nil {
		// Alerts are on their topic before tariff commits the batch that
		// caused them, so all of them are there now.
		if alerts, err = topicMessages(ctx, o.broker, acct.alertTopic); err != nil {
			return nil, err
		}
		for _, l := range exp.Lines {
			if l.Charge.IsPositive() {
				billed[l.CustomerID] = true
			}
		}
	}
	tr.stop()
	tput := result{name: "tariff run", events: exp.Counts.Events, wall: wall, cpu: cpu, rss: rss}
	if f := tr.first; !f.at.IsZero() && f.committed < st.Messages {
		tput.steadyMsgs = st.Messages - f.committed
		tput.steadyWall = tr.started.Add(wall).Sub(f.at)
		tput.steadyCPU = cpu - f.cpu
	}
	o.logf("tariff: %d events in %s\n", exp.Counts.Events, wall.Round(time.Millisecond))

	var bw *writerResult
	conn, err := sinks.OpenClickHouse(ctx, chCfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var chVersion string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&chVersion); err != nil {
		return nil, fmt.Errorf("clickhouse version: %w", err)
	}
	var chRows uint64
	// FINAL: a batch redelivered after a retried insert would be counted
	// twice otherwise.
	if err := conn.QueryRow(ctx, "SELECT count() FROM rated_lines FINAL").Scan(&chRows); err != nil {
		return nil, fmt.Errorf("count tariff's rated_lines: %w", err)
	}
	if o.chBaseline {
		w, err := bareWriter(ctx, conn, name, cfg, o.partitions, o.batchMessages)
		if err != nil {
			return nil, fmt.Errorf("bare clickhouse writer: %w", err)
		}
		if w.rows != int64(chRows) {
			return nil, fmt.Errorf("bare clickhouse writer: made %d rated-line rows of the stream, tariff wrote %d: they must be the same rows", w.rows, chRows)
		}
		bw = &w
		o.logf("bare clickhouse-go writer: %d rows in %d inserts, %s inserting\n", w.rows, w.inserts, w.busy.Round(time.Millisecond))
	}

	var lat *latencyResult
	if o.rate != "" {
		rate := float64(st.Messages) / tput.wall.Seconds() / 2
		if o.rate != "half" {
			rate, _ = strconv.ParseFloat(o.rate, 64)
		}
		o.logf("latency run: %d messages at %.0f messages/s\n", o.latencyEvents, rate)
		l, err := latencyRun(ctx, o, rate)
		if err != nil {
			return nil, fmt.Errorf("latency run: %w", err)
		}
		lat = &l
	}

	return &outcome{o: o, exp: exp, st: st, base: base, tput: tput, bw: bw, lat: lat, db: name, chRow: int64(chRows), chVersion: chVersion,
		diffs: len(diffs), diffText: diffText, models: len(distinct(g.Models())), acct: acct, alerts: alerts, billedCustomers: len(billed)}, nil
}

// tariffProc is a running `tariff run`.
type tariffProc struct {
	cmd     *exec.Cmd
	dir     string
	started time.Time
	rss     int64 // highest VmHWM seen while waiting
	// first is the first moment waitCaughtUp saw the group's first
	// commit on the topics it waits for: the measured process has joined,
	// restored its state and made one batch durable. From there to the end
	// is the steady part of the run.
	first   progressMark
	exited  chan struct{}
	stopped bool
}

// tariffSpec is what one `tariff run` reads and where it keeps its state.
type tariffSpec struct {
	group  string         // consumer group, ClickHouse database and changelog prefix
	topics loadgen.Topics // usage topics and dead-letter topic
	// noUsage leaves the usage topics out of the config (the accounts
	// phase reads only the command topic).
	noUsage bool
	// extraTopics are YAML lines under kafka.topics; alerts, when not
	// empty, is the alerts topic.
	extraTopics, alerts string
	// stateDir, when not empty, is the Badger directory, kept after the
	// process stops (the caller removes it); else a fresh one is used and
	// removed.
	stateDir string
}

// startTariff writes a config for spec and starts `tariff run` on it. Its
// ops server is off: the benchmark needs no port, and a port in use would
// fail the run.
func startTariff(o options, spec tariffSpec) (*tariffProc, error) {
	dir, err := os.MkdirTemp("", "tariff-e2e")
	if err != nil {
		return nil, err
	}
	state := spec.stateDir
	if state == "" {
		state = filepath.Join(dir, "state")
	}
	topics := spec.extraTopics
	if !spec.noUsage {
		topics = fmt.Sprintf("    %s: gateway\n    %s: auto\n    %s: meter\n", spec.topics.Gateway, spec.topics.Partner, spec.topics.Meter) + topics
	}
	y := fmt.Sprintf("kafka:\n  brokers: [%s]\n  group_id: %s\n  topics:\n%s  dead_letter_topic: %s\n",
		o.broker, spec.group, topics, spec.topics.DeadLetter)
	if spec.alerts != "" {
		y += "  alerts_topic: " + spec.alerts + "\n"
	}
	y += fmt.Sprintf("clickhouse:\n  enabled: \"true\"\n  addr: %s\n  database: %s\nstate:\n  dir: %s\nprices:\n  markup: \"30\"\nlog:\n  level: warn\n  format: json\nops:\n  listen: \"off\"\n",
		o.clickhouse, spec.group, state)
	if o.memLimit != "" {
		y += "memory_limit: " + o.memLimit + "\n"
	}
	conf := filepath.Join(dir, "tariff.yaml")
	if err := os.WriteFile(conf, []byte(y), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(o.bin, "run", "--config", conf)
	logf, err := os.Create(filepath.Join(dir, "tariff.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	t := &tariffProc{cmd: cmd, dir: dir, started: time.Now(), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { _ = cmd.Wait(); logf.Close(); close(t.exited) }()
	return t, nil
}

// waitCaughtUp waits until group has committed the end offset of every
// partition of topics, sampling tariff's peak RSS meanwhile.
func (t *tariffProc) waitCaughtUp(ctx context.Context, broker, group string, topics []string, limit time.Duration) error {
	start := time.Now()
	for {
		time.Sleep(100 * time.Millisecond)
		t.rss = max(t.rss, peakRSS(t.cmd.Process.Pid))
		select {
		case <-t.exited:
			return fmt.Errorf("tariff exited; its log:\n%s", t.logTail())
		default:
		}
		committed, _, done := groupProgress(ctx, broker, group, topics)
		if committed > 0 && t.first.at.IsZero() {
			t.first = progressMark{at: time.Now(), cpu: cpuTime(t.cmd.Process.Pid), committed: committed}
		}
		if done {
			return nil
		}
		if time.Since(start) > limit {
			return fmt.Errorf("tariff did not catch up on %v in %s; its log:\n%s", topics, limit, t.logTail())
		}
	}
}

func (t *tariffProc) logTail() string {
	b, _ := os.ReadFile(filepath.Join(t.dir, "tariff.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stop ends tariff gracefully (SIGTERM, then SIGKILL after 30s) and
// removes its directory. It may be called more than once.
func (t *tariffProc) stop() {
	if t.stopped {
		return
	}
	t.stopped = true
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(30 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.exited
	}
	os.RemoveAll(t.dir)
}

func (out *outcome) render() string {
	o, exp, st, base, tr, bw, lat := out.o, out.exp, out.st, out.base, out.tput, out.bw, out.lat
	var b strings.Builder
	fmt.Fprintf(&b, "# tariff end to end, %s\n\n", time.Now().UTC().Format("2006-01-02"))
	cmd := fmt.Sprintf("go run ./bench/e2e -events %d -customers %d -partitions %d%s", o.events, o.customers, o.partitions, o.memLimitFlag())
	if o.models != "" && o.models != loadgen.ModelsDefault {
		cmd += " -models " + o.models
	}
	if o.balances {
		cmd += " -balances -balance-grant " + o.balanceGrant
	}
	if !o.chBaseline {
		cmd += " -clickhouse-baseline=false"
	}
	if o.rate != "" {
		cmd += fmt.Sprintf(" -rate %s -latency-events %d -poll %s -grant %s", o.rate, o.latencyEvents, o.poll, o.grant)
	}
	fmt.Fprintf(&b, "Machine: %d cores (GOMAXPROCS %d), the Kafka broker and ClickHouse %s on the same machine. Command: `%s`. tariff runs as its own process (`tariff run`, %s); its CPU time is the process's user+system time from /proc, its peak RSS the kernel's high-water mark (VmHWM).\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), out.chVersion, cmd, o.memLimitText())
	fmt.Fprintf(&b, "## Throughput\n\nStream: %d messages (gateway, LiteLLM, OpenRouter, meter), %d unique events, %d duplicate messages, %d malformed; published in %s.\n\n",
		st.Messages, exp.Counts.Events, exp.Counts.Duplicates, exp.Counts.Malformed, st.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "| run | wall | messages/s | events/s | CPU s | CPU s per million events | peak RSS |\n|---|---|---|---|---|---|---|\n")
	for _, r := range []result{base, tr} {
		if r.name == "" {
			continue // no bare consumer in this run
		}
		evs := "-"
		perM := "-"
		if r.events > 0 {
			evs = fmt.Sprintf("%.0f", float64(r.events)/r.wall.Seconds())
			perM = fmt.Sprintf("%.1f", r.cpu.Seconds()/(float64(r.events)/1e6))
		}
		rss := "-"
		if r.rss > 0 {
			rss = fmt.Sprintf("%d MiB", r.rss/1024)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %.1f | %s | %s |\n", r.name, r.wall.Round(time.Millisecond),
			float64(st.Messages)/r.wall.Seconds(), evs, r.cpu.Seconds(), perM, rss)
	}
	fmt.Fprintf(&b, "\ntariff's throughput is %.1f%% of the bare consumer's on the same topics. tariff's time runs from process start (group join, changelog replay) until the group has committed every input offset, which tariff does only once a batch is durable in ClickHouse, the changelog and Badger; the totals in ClickHouse were then checked equal to the generator's expectation to the last digit.\n",
		100*base.wall.Seconds()/tr.wall.Seconds())
	if tr.steadyMsgs > 0 && tr.steadyWall > 0 {
		ev := float64(tr.events) * float64(tr.steadyMsgs) / float64(st.Messages)
		fmt.Fprintf(&b, "\nSteady part (from the group's first commit, %s after process start, to the end; %d messages): %.0f events/s, %.1f CPU s per million events.\n",
			(tr.wall - tr.steadyWall).Round(time.Millisecond), tr.steadyMsgs, ev/tr.steadyWall.Seconds(), tr.steadyCPU.Seconds()/(ev/1e6))
	}
	if a := out.acct; a != nil {
		fmt.Fprintf(&b, "\nWith balances: before the run every one of the %d customers got an account, one grant of %s USD each on a command topic co-partitioned with usage (published in %s), applied by a first tariff process reading only that topic (%s, %.1f CPU s, peak RSS %d MiB). The measured process started on that state, every account loaded, with the usage topics added; its figures above include loading the accounts.\n",
			a.grants, o.balanceGrant, a.publish.Round(time.Millisecond), a.wall.Round(time.Millisecond), a.cpu.Seconds(), a.rss/1024)
	}
	if bw != nil {
		tariffRows := float64(bw.rows) / tr.wall.Seconds()
		fmt.Fprintf(&b, "\n## Bare ClickHouse writer\n\nThe same %d rated-line rows (the stream's events rated with the same prices and markup; same columns, partitions and offsets), inserted with clickhouse-go alone into `%s` (a copy of rated_lines): one insert per %d messages of one partition, %d writers at once: batches as large as tariff's at full speed. Only the inserts are timed (building the columns, prepare, send); the rows are made beforehand, a round of %d batches at a time.\n\n",
			bw.rows, bw.table, o.batchMessages, o.partitions, 2*o.partitions)
		fmt.Fprintf(&b, "| writer | rows | inserts | time inserting | rows/s |\n|---|---|---|---|---|\n")
		fmt.Fprintf(&b, "| bare clickhouse-go | %d | %d | %s | %.0f |\n", bw.rows, bw.inserts, bw.busy.Round(time.Millisecond), bw.rowsPerSec())
		fmt.Fprintf(&b, "| tariff run (whole pipeline) | %d | - | %s | %.0f |\n", bw.rows, tr.wall.Round(time.Millisecond), tariffRows)
		fmt.Fprintf(&b, "\ntariff's throughput is %.1f%% of the bare writer's in rated-line rows per second (tariff also writes usage_hourly and usage_daily, the dead-letter topic, the changelog and Badger; the bare writer writes rated_lines only).\n",
			100*tariffRows/bw.rowsPerSec())
	}
	if lat != nil {
		renderLatency(&b, lat)
	}
	return b.String()
}

func renderLatency(b *strings.Builder, l *latencyResult) {
	fmt.Fprintf(b, "\n## Latency at a fixed rate\n\nA fresh stream of %d messages (%d unique events in %d billable messages, the rest duplicates and malformed) produced at %.0f messages/s (achieved %.0f/s, %s); before it, one grant of credit per customer (%d grant commands on a command topic co-partitioned with usage), applied before the clock starts. Each grant is tiny, so a customer's first billed event exhausts it and tariff emits one zero-balance alert caused by that event.\n\n",
		l.messages, l.events, l.fresh, l.rate, float64(l.messages)/l.produceElapsed.Seconds(), l.produceElapsed.Round(time.Millisecond), l.grants)
	fmt.Fprintf(b, "Produce time is when the message was handed to the Kafka client (its record timestamp; the client's batch timeout is 1ms).\n\n")
	fmt.Fprintf(b, "| latency | samples | p50 | p99 | max |\n|---|---|---|---|---|\n")
	row := func(name string, d []time.Duration) {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s |\n", name, len(d), ms(percentile(d, 0.5)), ms(percentile(d, 0.99)), ms(percentile(d, 1)))
	}
	row("produce -> queryable in ClickHouse", l.queryable)
	row("produce -> alert appended to the alerts topic (broker's LogAppendTime)", l.alertAppend)
	row("produce -> alert received by a reader", l.alertRecv)
	fmt.Fprintf(b, "\nQueryable: ClickHouse was asked every %s for max(kafka_offset) of rated_lines per topic and partition (%d queries, the slowest %s); a message counts as queryable at the end of the first query whose maximum reached its offset (tariff inserts a batch's rows in one insert), so the figures are high by up to the interval plus the query time. %d billable messages were not seen within 30 s of tariff catching up.\n",
		l.pollEvery, l.polls, ms(l.pollMax), l.unattributed)
	fmt.Fprintf(b, "\nAlerts: %d on the topic, %d caused by an event of this stream (%s); %d customers had a billed event, each should have exactly one zero alert. The alerts topic stamps each record when the broker appends it (message.timestamp.type=LogAppendTime): that is when the alert was emitted, the moment tariff's writer had it acknowledged.\n",
		l.alertsTotal, l.alertsMatched, kinds(l.alertKinds), l.customers)
	fmt.Fprintf(b, "\ntariff during the run: %s from first produce to everything committed, %.1f CPU s in that time, %.1f CPU s per million events, peak RSS %d MiB (RSS over its whole life).\n",
		l.wall.Round(time.Millisecond), l.cpu.Seconds(), l.cpu.Seconds()/(float64(l.events)/1e6), l.rss/1024)
}

func kinds(m map[string]int64) string {
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// percentile returns the p-quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// progressMark is a sample of a run's progress.
type progressMark struct {
	at        time.Time
	cpu       time.Duration // the process's CPU time then
	committed int64         // input messages committed by then
}

// groupProgress returns how many messages of topics group has committed
// and how many the topics hold, and whether group has committed the end
// offset of every partition. Errors read as no progress.
func groupProgress(ctx context.Context, broker, group string, topics []string) (committed, end int64, done bool) {
	// An own transport, closed after: the default one caches metadata
	// for seconds (topics created just before would be unknown), and a
	// new one per call would leave its connections open.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 5 * time.Second, Transport: tr}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return 0, 0, false
	}
	parts := map[string][]int{}
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
			req.Topics[t.Name] = append(req.Topics[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	ends, err := c.ListOffsets(ctx, req)
	if err != nil {
		return 0, 0, false
	}
	got, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err != nil {
		return 0, 0, false
	}
	done = true
	for t, pos := range ends.Topics {
		for _, po := range pos {
			end += po.LastOffset
			var c int64
			for _, cp := range got.Topics[t] {
				if cp.Partition == po.Partition && cp.CommittedOffset > 0 {
					c = cp.CommittedOffset
				}
			}
			committed += min(c, po.LastOffset)
			// An empty partition has nothing to commit.
			if po.LastOffset > 0 && c < po.LastOffset {
				done = false
			}
		}
	}
	return committed, end, done
}

// createTopics creates topics with partitions each and configs, and waits
// until every partition has a leader.
func createTopics(ctx context.Context, broker string, partitions int, configs []kafka.ConfigEntry, topics ...string) error {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 10 * time.Second, Transport: tr}
	cfgs := make([]kafka.TopicConfig, len(topics))
	for i, t := range topics {
		cfgs[i] = kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs}
	}
	res, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: cfgs})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for t, err := range res.Errors {
		if err != nil {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		ready := err == nil && len(md.Topics) == len(topics)
		if ready {
			for _, t := range md.Topics {
				ready = ready && t.Error == nil && len(t.Partitions) == partitions
				for _, p := range t.Partitions {
					ready = ready && p.Error == nil && p.Leader.Host != ""
				}
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics %v have no leaders after 30s (last error: %v)", topics, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bareConsumer reads want messages with a kafka-go consumer group that does
// nothing else: the speed limit of reading these topics on this machine.
func bareConsumer(ctx context.Context, broker, group string, topics []string, want int64) (result, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, GroupID: group, GroupTopics: topics,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond, StartOffset: kafka.FirstOffset, QueueCapacity: 4096})
	defer r.Close()
	var u0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &u0)
	start := time.Now()
	var got int64
	for got < want {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, err := r.FetchMessage(cctx)
		cancel()
		if err != nil {
			return result{}, fmt.Errorf("bare consumer after %d messages: %w", got, err)
		}
		got++
	}
	var u1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &u1)
	cpu := time.Duration(u1.Utime.Nano()+u1.Stime.Nano()-u0.Utime.Nano()-u0.Stime.Nano()) * time.Nanosecond
	return result{name: "bare kafka-go consumer (reads only)", wall: time.Since(start), cpu: cpu}, nil
}

func observedDaily(ctx context.Context, cfg sinks.ClickHouseConfig) (loadgen.Totals, error) {
	conn, err := sinks.OpenClickHouse(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return loadgen.Observed(ctx, conn, "usage_daily")
}

func peakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}

// cpuTime reads utime+stime of a running process from /proc (clock ticks
// of 1/100 s on Linux).
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func distinct(keys []string) []string {
	out := slices.Clone(keys)
	slices.Sort(out)
	return slices.Compact(out)
}
