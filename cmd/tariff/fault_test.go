package main

import (
	"context"
	crand "crypto/rand"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/bench/loadgen"
	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/sinks"
)

// The fault tests are sized to run in CI in a few minutes; -fault.events
// runs them larger.
var faultEvents = flag.Int("fault.events", 200_000, "messages in the crash test's stream (the outage and rebalance tests use a quarter)")

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// tariffBinary builds the tariff command once per test run, for tests that
// must kill a real process.
func tariffBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tariff-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tariff")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// faultEnv is one test's topics, database, stream and configuration.
type faultEnv struct {
	t        *testing.T
	broker   string
	name     string
	topics   loadgen.Topics
	chCfg    sinks.ClickHouseConfig
	cfg      loadgen.Config
	expected *loadgen.Expected
	gen      *loadgen.Generator
	logs     []string // the instances' log files, shown when the test fails
	// commandTopic carries admin commands (format command), co-partitioned
	// with the usage topics; alertsTopic receives the balance alerts.
	commandTopic, alertsTopic string
	// opsToken is every instance's admin token; opsAddrs the ops address
	// of each configuration (an instance restarted with the same
	// configuration serves on the same address).
	opsToken, tokenFile string
	opsAddrs            map[string]string
}

func newFaultEnv(t *testing.T, chAddr string, events int) *faultEnv {
	broker := testenv.Kafka(t)
	name := testenv.Name(t, "fault")
	e := &faultEnv{t: t, broker: broker, name: name,
		topics: loadgen.Topics{Gateway: name + ".gw", Partner: name + ".partner", Meter: name + ".meter", DeadLetter: name + ".dlq"},
		chCfg:  sinks.ClickHouseConfig{Addr: chAddr, Database: name},
	}
	e.commandTopic, e.alertsTopic = name+".cmd", name+".alerts"
	// The command topic has the usage topics' partition count: tariff
	// refuses input topics that are not co-partitioned.
	testenv.CreateTopics(t, broker, 4, e.topics.Gateway, e.topics.Partner, e.topics.Meter, e.topics.DeadLetter, e.commandTopic, e.alertsTopic)
	e.opsToken = crand.Text()
	e.tokenFile = filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(e.tokenFile, []byte(e.opsToken), 0o600); err != nil {
		t.Fatal(err)
	}
	e.opsAddrs = map[string]string{}
	e.cfg = loadgen.DefaultConfig()
	e.cfg.Seed = 42
	e.cfg.Events = events
	e.cfg.Customers = 2000
	// Event times within the last hours, as a live stream would carry:
	// within the dedup window and not in the future.
	e.cfg.Start = time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	e.cfg.Span = 2 * time.Hour
	e.cfg.Topics = e.topics
	e.cfg.Markup = "30"
	g, err := loadgen.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.gen = g
	return e
}

// withBalances plans the balance side of the test (with top-ups or not)
// from the stream's expectation, computed before anything is published.
func (e *faultEnv) withBalances(topUps bool) *faultBalances {
	plan, err := loadgen.Plan(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	fb := newFaultBalances(e, plan, e.cfg.Customers, topUps)
	e.t.Log("balances: " + fb.summary())
	return fb
}

// showLogs logs the end of every instance's log.
func (e *faultEnv) showLogs() {
	for _, l := range e.logs {
		data, _ := os.ReadFile(l)
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		e.t.Logf("end of %s:\n%s", filepath.Base(l), data)
	}
}

// publish sends the whole stream (at rate messages/s, 0 = as fast as the
// broker takes it) and records the expectation.
func (e *faultEnv) publish(ctx context.Context, rate float64) {
	st, err := loadgen.Publish(ctx, e.gen, loadgen.PublishConfig{Brokers: []string{e.broker}, Rate: rate})
	if err != nil {
		e.t.Errorf("publish: %v", err)
		return
	}
	e.expected = e.gen.Expected()
	e.t.Logf("published %d messages in %s (%.0f/s): %d unique events, %d duplicates (%d cross-format, %d late), %d malformed",
		st.Messages, st.Elapsed.Round(time.Millisecond), st.Rate(), e.expected.Counts.Events, e.expected.Counts.Duplicates,
		e.expected.Counts.CrossFormatDuplicates, e.expected.Counts.LateDuplicates, e.expected.Counts.Malformed)
}

// config writes the YAML configuration of an instance.
func (e *faultEnv) config(stateDir string) string {
	path := filepath.Join(e.t.TempDir(), "tariff.yaml")
	opsAddr := "127.0.0.1:" + strconv.Itoa(freePort(e.t))
	e.opsAddrs[path] = opsAddr
	y := fmt.Sprintf(`kafka:
  brokers: [%s]
  group_id: %s
  session_timeout: 6s
  topics:
    %s: gateway
    %s: auto
    %s: meter
    %s: command
  dead_letter_topic: %s
  alerts_topic: %s
clickhouse:
  enabled: "true"
  addr: %s
  database: %s
state:
  dir: %s
pipeline:
  retry_min: 100ms
  retry_max: 2s
prices:
  markup: "30"
log:
  level: warn
  format: json
ops:
  listen: %s
  admin_token:
    file: %s
`, e.broker, e.name, e.topics.Gateway, e.topics.Partner, e.topics.Meter, e.commandTopic, e.topics.DeadLetter, e.alertsTopic,
		e.chCfg.Addr, e.name, stateDir, opsAddr, e.tokenFile)
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// instance is a tariff process.
type instance struct {
	cmd     *exec.Cmd
	done    chan error
	log     string
	opsAddr string
}

func (e *faultEnv) start(config string) *instance {
	cmd := exec.Command(tariffBinary(e.t), "run", "--config", config)
	logPath := fmt.Sprintf("%s.%d.log", config, len(e.logs))
	e.logs = append(e.logs, logPath)
	logf, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	in := &instance{cmd: cmd, done: make(chan error, 1), log: logPath, opsAddr: e.opsAddrs[config]}
	go func() { in.done <- cmd.Wait(); logf.Close() }()
	e.t.Cleanup(func() { in.kill() })
	return in
}

func (in *instance) kill() {
	if in.cmd.ProcessState == nil {
		_ = in.cmd.Process.Signal(syscall.SIGKILL)
		<-in.done
	}
}

func (in *instance) stop(t *testing.T) {
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-in.done:
		if err != nil {
			data, _ := os.ReadFile(in.log)
			t.Errorf("tariff exited with %v after SIGTERM; its log:\n%s", err, data)
		}
	case <-time.After(60 * time.Second):
		t.Error("tariff did not stop within 60s of SIGTERM")
		in.kill()
	}
}

// deadLetters counts the distinct refused messages in the dead-letter topic
// (a message refused again after a crash appears twice, same position).
func (e *faultEnv) deadLetters(ctx context.Context) (int, error) {
	seen := map[string]bool{}
	for p := 0; p < 4; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{e.broker}, Topic: e.topics.DeadLetter, Partition: p, MaxWait: 100 * time.Millisecond})
		conn, err := kafka.DialLeader(ctx, "tcp", e.broker, e.topics.DeadLetter, p)
		if err != nil {
			r.Close()
			return 0, err
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			r.Close()
			return 0, err
		}
		for off := int64(0); off < last; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return 0, err
			}
			h := map[string]string{}
			for _, hd := range m.Headers {
				h[hd.Key] = string(hd.Value)
			}
			if h[sinks.HeaderDLQReason] == "" {
				r.Close()
				return 0, fmt.Errorf("dead letter at %d/%d has no reason", p, m.Offset)
			}
			seen[h[sinks.HeaderDLQTopic]+"/"+h[sinks.HeaderDLQPartition]+"/"+h[sinks.HeaderDLQOffset]] = true
			off = m.Offset
		}
		r.Close()
	}
	return len(seen), nil
}

// waitExact polls until ClickHouse's line items and daily aggregates equal
// the expectation and every malformed message is dead-lettered, or fails
// with the remaining differences.
func (e *faultEnv) waitExact(timeout time.Duration) {
	e.t.Helper()
	if e.expected == nil {
		e.t.Fatal("the stream was not published")
	}
	ctx := context.Background()
	conn, err := sinks.OpenClickHouse(ctx, e.chCfg)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	deadline := start.Add(timeout)
	var last string
	for {
		last = ""
		for _, table := range []string{"rated_lines", "usage_daily", "usage_hourly"} {
			got, err := loadgen.Observed(ctx, conn, table)
			if err == nil {
				var diffs []loadgen.Difference
				diffs, err = e.expected.Compare(got)
				if err == nil && len(diffs) > 0 {
					last += fmt.Sprintf("%s: %d differences:\n%s\n", table, len(diffs), loadgen.Summarize(diffs, 5))
				}
			}
			if err != nil {
				last += table + ": " + err.Error() + "\n"
			}
		}
		dead, err := e.deadLetters(ctx)
		if err != nil {
			last += "dead letters: " + err.Error() + "\n"
		} else if int64(dead) != e.expected.Counts.Malformed {
			last += fmt.Sprintf("dead letters: %d distinct, want %d\n", dead, e.expected.Counts.Malformed)
		}
		if last == "" {
			e.t.Logf("totals exact after %s", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			e.showLogs()
			e.t.Fatalf("not exact after %s:\n%s", timeout, last)
		}
		time.Sleep(2 * time.Second)
	}
}

// TestCrashSIGKILL kills tariff with SIGKILL at random moments while it
// works through a stream with duplicates (near, hours later, and through
// another topic) and malformed messages, restarting it each time; the
// totals in ClickHouse must then equal the generator's independent
// calculation to the last digit, and every malformed message must be in the
// dead-letter topic.
//
// Half the customers hold a credit grant with a low-balance threshold,
// applied before the usage; after the usage some are topped up, and tariff
// is killed once more while it applies the top-ups. The balances the
// entitlement API answers must equal the test's own calculation
// (fault_balance_test.go) after the usage and after the top-ups, and the
// alerts topic must hold each expected crossing under one key, and
// nothing else.
func TestCrashSIGKILL(t *testing.T) {
	chAddr := testenv.ClickHouse(t)
	e := newFaultEnv(t, chAddr, *faultEvents)
	fb := e.withBalances(true)
	tariffBinary(t)
	config := e.config(t.TempDir())
	// Commands and usage are ordered per topic only: the grants must be
	// applied before the first usage message is produced.
	in := e.start(config)
	fb.sendGrants()
	fb.checkBalances([]*instance{in}, stageGranted)
	e.publish(context.Background(), 0)
	fb.checkPublished()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := 0; i < 5; i++ {
		if i > 0 {
			in = e.start(config)
		}
		d := time.Duration(1500+rng.IntN(3000)) * time.Millisecond
		time.Sleep(d)
		in.kill()
		t.Logf("killed run %d after %s", i+1, d)
	}
	in = e.start(config)
	e.waitExact(4 * time.Minute)
	// ClickHouse is written before the state, and a top-up applied before
	// a customer's last usage would change which alerts are due: a clean
	// stop finishes the batches in hand, so every event ClickHouse holds is
	// in the balances too. The next instance must answer from the state it
	// finds.
	stopping := time.Now()
	in.stop(t)
	t.Logf("stopped cleanly in %s", time.Since(stopping).Round(time.Millisecond))
	in = e.start(config)
	fb.checkBalances([]*instance{in}, stageUsed)

	// Kill when the first alerts of the top-ups are out: some partitions'
	// batches are then between the alert write and the state commit, or
	// not applied at all.
	before := e.alertsEnd()
	sent := time.Now()
	fb.sendTopUps()
	for e.alertsEnd() == before && time.Since(sent) < 10*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	in.kill()
	t.Logf("killed %s after sending the top-ups, with %s", time.Since(sent).Round(time.Millisecond), fb.recoveriesOut())
	in = e.start(config)
	fb.checkBalances([]*instance{in}, stageToppedUp)
	fb.checkAlerts(stageToppedUp)
	in.stop(t)
}

// TestClickHouseOutage stops the ClickHouse server for 30 seconds mid-stream
// (a private server, so other tests keep theirs); tariff must hold the
// batch, retry, and end with the exact totals.
func TestClickHouseOutage(t *testing.T) {
	testenv.Kafka(t)
	testenv.ClickHouse(t) // the shared server proves ClickHouse is installed here
	ch := startPrivateClickHouse(t)
	e := newFaultEnv(t, ch.addr, *faultEvents/4)
	tariffBinary(t)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); e.publish(context.Background(), 5000) }()
	in := e.start(e.config(t.TempDir()))
	time.Sleep(4 * time.Second)
	ch.run(t, "stop")
	t.Log("ClickHouse stopped")
	time.Sleep(30 * time.Second)
	ch.run(t, "start")
	t.Log("ClickHouse started")
	<-pubDone
	e.waitExact(3 * time.Minute)
	in.stop(t)
}

// TestRebalance runs two instances in one group, adds a third mid-stream,
// then kills one with SIGKILL: the partitions move, their state with them,
// and the totals stay exact. Half the customers hold grants (as in
// TestCrashSIGKILL, without top-ups): the balances the surviving instances
// answer and the alerts must equal the test's own calculation.
func TestRebalance(t *testing.T) {
	chAddr := testenv.ClickHouse(t)
	e := newFaultEnv(t, chAddr, *faultEvents/4)
	fb := e.withBalances(false)
	tariffBinary(t)
	a := e.start(e.config(t.TempDir()))
	b := e.start(e.config(t.TempDir()))
	fb.sendGrants()
	fb.checkBalances([]*instance{a, b}, stageGranted)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); e.publish(context.Background(), 4000) }()
	time.Sleep(5 * time.Second)
	c := e.start(e.config(t.TempDir()))
	t.Log("third instance joined")
	time.Sleep(6 * time.Second)
	a.kill()
	t.Log("first instance killed")
	<-pubDone
	fb.checkPublished()
	e.waitExact(3 * time.Minute)
	// Polled until equal: once every balance is final, every crossing's
	// alert is in the topic (alerts are written before the state).
	fb.checkBalances([]*instance{b, c}, stageUsed)
	fb.checkAlerts(stageUsed)
	b.stop(t)
	c.stop(t)
}

// privateClickHouse is a ClickHouse server of one test's own, started with
// the same script as the shared one, on free ports.
type privateClickHouse struct {
	dir, addr string
	env       []string
}

func startPrivateClickHouse(t *testing.T) *privateClickHouse {
	dir := t.TempDir()
	tcp, http := freePort(t), freePort(t)
	ch := &privateClickHouse{dir: dir, addr: "127.0.0.1:" + strconv.Itoa(tcp), env: append(os.Environ(),
		"CLICKHOUSE_DIR="+dir, "CLICKHOUSE_PORT="+strconv.Itoa(tcp), "CLICKHOUSE_HTTP_PORT="+strconv.Itoa(http))}
	ch.run(t, "start")
	t.Cleanup(func() { ch.run(t, "stop") })
	return ch
}

func (c *privateClickHouse) run(t *testing.T, verb string) {
	cmd := exec.Command("bash", "../../scripts/clickhouse.sh", verb)
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clickhouse.sh %s: %v\n%s", verb, err, out)
	}
}
