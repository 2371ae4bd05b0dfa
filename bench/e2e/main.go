// Command e2e measures tariff end to end on the real Kafka broker and
// ClickHouse server, beside the bare tools on the same topics, and writes
// a Markdown report. See bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/bench/loadgen"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

func main() {
	broker := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap address")
	chAddr := flag.String("clickhouse", "127.0.0.1:9000", "ClickHouse native address")
	events := flag.Int("events", 500_000, "messages in the stream")
	customers := flag.Int("customers", 100_000, "customers in the stream")
	partitions := flag.Int("partitions", 4, "partitions of each input topic")
	memLimit := flag.String("memory-limit", "469762048", "tariff's memory_limit in bytes (0: none)")
	bin := flag.String("tariff", "", "tariff binary (default: built from ./cmd/tariff)")
	out := flag.String("out", "", "report file (default bench/results/e2e-<date>.md)")
	flag.Parse()
	if err := run(*broker, *chAddr, *events, *customers, *partitions, *memLimit, *bin, *out); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
}

type result struct {
	name   string
	events int64
	wall   time.Duration
	cpu    time.Duration
	rss    int64 // KiB
}

func run(broker, chAddr string, n, customers, partitions int, memLimit, bin, out string) error {
	ctx := context.Background()
	if bin == "" {
		bin = filepath.Join(os.TempDir(), "tariff-e2e")
		if o, err := exec.Command("go", "build", "-o", bin, "./cmd/tariff").CombinedOutput(); err != nil {
			return fmt.Errorf("build tariff: %v\n%s", err, o)
		}
	}
	name := fmt.Sprintf("e2e%d", time.Now().Unix())
	topics := loadgen.Topics{Gateway: name + ".gw", Partner: name + ".partner", Meter: name + ".meter", DeadLetter: name + ".dlq"}
	if err := createTopics(ctx, broker, partitions, topics.Gateway, topics.Partner, topics.Meter, topics.DeadLetter); err != nil {
		return err
	}
	cfg := loadgen.DefaultConfig()
	cfg.Events, cfg.Customers, cfg.Topics, cfg.Markup = n, customers, topics, "30"
	cfg.Start = time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	g, err := loadgen.New(cfg)
	if err != nil {
		return err
	}
	st, err := loadgen.Publish(ctx, g, loadgen.PublishConfig{Brokers: []string{broker}})
	if err != nil {
		return err
	}
	exp := g.Expected()
	fmt.Printf("published %d messages (%d events) in %s\n", st.Messages, exp.Counts.Events, st.Elapsed.Round(time.Millisecond))

	// Baseline: a bare kafka-go consumer group reading the same topics.
	base, err := bareConsumer(ctx, broker, name+"-bare", []string{topics.Gateway, topics.Partner, topics.Meter}, st.Messages)
	if err != nil {
		return err
	}
	fmt.Printf("bare kafka-go consumer: %d messages in %s\n", st.Messages, base.wall.Round(time.Millisecond))

	// tariff itself.
	dir, err := os.MkdirTemp("", "tariff-e2e")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "tariff.yaml")
	y := fmt.Sprintf("kafka:\n  brokers: [%s]\n  group_id: %s\n  topics:\n    %s: gateway\n    %s: auto\n    %s: meter\n  dead_letter_topic: %s\n"+
		"clickhouse:\n  enabled: \"true\"\n  addr: %s\n  database: %s\nstate:\n  dir: %s\nprices:\n  markup: \"30\"\nlog:\n  level: warn\n  format: json\nmemory_limit: %s\n",
		broker, name, topics.Gateway, topics.Partner, topics.Meter, topics.DeadLetter, chAddr, name, filepath.Join(dir, "state"), memLimit)
	if err := os.WriteFile(conf, []byte(y), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(bin, "run", "--config", conf)
	logf, _ := os.Create(filepath.Join(dir, "tariff.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	chCfg := sinks.ClickHouseConfig{Addr: chAddr, Database: name}
	inputs := []string{topics.Gateway, topics.Partner, topics.Meter}
	var rss int64
	// Done when the group has committed every input offset (tariff commits
	// only after the batch is durable); exactness is then checked once.
	for {
		time.Sleep(200 * time.Millisecond)
		rss = max(rss, peakRSS(cmd.Process.Pid))
		if caughtUp(ctx, broker, name, inputs) {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return fmt.Errorf("tariff did not catch up in 10 minutes")
		}
	}
	wall := time.Since(start)
	cpu := cpuTime(cmd.Process.Pid)
	rss = max(rss, peakRSS(cmd.Process.Pid))
	got, err := observedDaily(ctx, chCfg)
	if err != nil {
		return err
	}
	diffs, err := exp.Compare(got)
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		return fmt.Errorf("tariff's totals differ from the expectation:\n%s", loadgen.Summarize(diffs, 10))
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	tr := result{name: "tariff run", events: exp.Counts.Events, wall: wall, cpu: cpu, rss: rss}

	report := renderReport(n, customers, partitions, memLimit, exp, st, base, tr)
	if out == "" {
		out = filepath.Join("bench", "results", "e2e-"+time.Now().UTC().Format("2006-01-02")+".md")
	}
	if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Print(report)
	return nil
}

func renderReport(n, customers, partitions int, memLimit string, exp *loadgen.Expected, st loadgen.PublishStats, base, tr result) string {
	var b strings.Builder
	host, _ := os.Hostname()
	_ = host
	fmt.Fprintf(&b, "# tariff end to end, %s\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %d cores (GOMAXPROCS %d), Kafka 3.9 and ClickHouse 18.16 on the same machine. Command: `go run ./bench/e2e -events %d -customers %d -partitions %d -memory-limit %s`.\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), n, customers, partitions, memLimit)
	fmt.Fprintf(&b, "Stream: %d messages (gateway, LiteLLM, meter), %d unique events, %d duplicate messages, %d malformed; published in %s.\n\n",
		st.Messages, exp.Counts.Events, exp.Counts.Duplicates, exp.Counts.Malformed, st.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "| run | wall | messages/s | events/s | CPU s | CPU s per million events | peak RSS |\n|---|---|---|---|---|---|---|\n")
	for _, r := range []result{base, tr} {
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
	fmt.Fprintf(&b, "\ntariff's throughput is %.0f%% of the bare consumer's on the same topics. tariff's time runs from process start (group join, changelog replay) until the group has committed every input offset, which tariff does only once a batch is durable in ClickHouse, the changelog and Badger; the totals in ClickHouse were then checked equal to the generator's expectation to the last digit.\n",
		100*base.wall.Seconds()/tr.wall.Seconds())
	return b.String()
}

// caughtUp reports whether group has committed the end offset of every
// partition of topics.
func caughtUp(ctx context.Context, broker, group string, topics []string) bool {
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 5 * time.Second}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return false
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
		return false
	}
	committed, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err != nil {
		return false
	}
	for t, pos := range ends.Topics {
		for _, po := range pos {
			ok := false
			for _, cp := range committed.Topics[t] {
				if cp.Partition == po.Partition && cp.CommittedOffset >= po.LastOffset {
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

func createTopics(ctx context.Context, broker string, partitions int, topics ...string) error {
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 10 * time.Second}
	cfgs := make([]kafka.TopicConfig, len(topics))
	for i, t := range topics {
		cfgs[i] = kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: 1}
	}
	if _, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: cfgs}); err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	time.Sleep(2 * time.Second) // let the partitions' logs come up before producing
	return nil
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
	rows, err := conn.Query(ctx, "SELECT customer_id, price_key, unit, sum(quantity), toString(sum(cost)), toString(sum(charge)) FROM usage_daily FINAL GROUP BY customer_id, price_key, unit")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := loadgen.Totals{}
	for rows.Next() {
		var cust, key, unit, cost, charge string
		var qty int64
		if err := rows.Scan(&cust, &key, &unit, &qty, &cost, &charge); err != nil {
			return nil, err
		}
		u, _ := schemas.ParseUnit(unit)
		out.Add(loadgen.Key{CustomerID: cust, PriceKey: key, Unit: u}, qty, decimal.RequireFromString(cost), decimal.RequireFromString(charge))
	}
	return out, rows.Err()
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
