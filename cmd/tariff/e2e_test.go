package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// The payloads README's request: Claude Sonnet 4.5, 1,200 uncached input,
// 2,000 cache-write (5m), 8,000 cache-read, 450 output of which 120
// reasoning. At LiteLLM's prices it costs exactly 0.02025 USD; with a 30%
// markup the charge is exactly 0.026325.
const sonnetEvent = `{"id":"%s","time":"%s","customer_id":"acme","provider":"anthropic","model":"claude-sonnet-4-5",` +
	`"dimensions":{"team":"search"},"usage":{"input":1200,"cached_input":8000,"cache_write_5m":2000,"output":330,"reasoning":120}}`

func sonnet(id string, t time.Time) []byte {
	return []byte(fmt.Sprintf(sonnetEvent, id, t.UTC().Format(time.RFC3339Nano)))
}

// realServersConfig makes the topics (a gateway input and a dead-letter
// topic, 3 partitions) and the configuration of a test of tariff run on
// the real broker and ClickHouse, with a 30% markup; the ClickHouse
// database and the group are named name.
func realServersConfig(t *testing.T, prefix string) (cfg *Config, name, in, dlq string) {
	t.Helper()
	broker := testenv.Kafka(t)
	chAddr := testenv.ClickHouse(t)
	name = testenv.Name(t, prefix)
	in, dlq = name+".gateway", name+".dlq"
	testenv.CreateTopics(t, broker, 3, in, dlq)
	cfg = &Config{}
	cfg.Kafka.Brokers = []string{broker}
	cfg.Kafka.GroupID = name
	cfg.Kafka.Topics = map[string]string{in: "gateway"}
	cfg.Kafka.DeadLetterTopic = dlq
	cfg.ClickHouse.Enabled = "true"
	cfg.ClickHouse.Addr = chAddr
	cfg.ClickHouse.Database = name
	cfg.State.Dir = t.TempDir()
	cfg.Prices.Markup = "30"
	cfg.Log.Level = "warn"
	return cfg, name, in, dlq
}

// testClickHouse connects to the test's ClickHouse database (tariff run
// creates it) and drops the database when the test ends.
func testClickHouse(t *testing.T, cfg *Config, name string) driver.Conn {
	t.Helper()
	conn, err := sinks.OpenClickHouse(context.Background(), cfg.ClickHouse.ClickHouseConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
		conn.Close()
	})
	return conn
}

// startTariff runs runTariff in the background and returns the broker it
// consumes from and a stop function that waits for a clean exit.
func startTariff(t *testing.T, cfg *Config, stdout io.Writer) (brokers []string, stop func()) {
	t.Helper()
	cfg.Ops.Listen = "127.0.0.1:0" // tests run side by side
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runTariff(ctx, cfg, runOptions{stdout: stdout, stderr: testWriter{t}, ready: func(b []string, _ string) { ready <- b }})
	}()
	select {
	case brokers = <-ready:
	case err := <-done:
		t.Fatalf("tariff stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("tariff not ready after 60s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("tariff exited with %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Error("tariff did not stop within 60s")
			}
		})
	}
	t.Cleanup(stop)
	return brokers, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func produce(t *testing.T, brokers []string, topic string, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Transport: &kafka.Transport{}} // own metadata cache: the topic may be seconds old
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// TestEndToEndRealServers is the whole chain on the real broker and the real
// ClickHouse server: a usage event produced to Kafka is consumed, rated and
// read back from ClickHouse to the last digit; a malformed message lands in
// the dead-letter topic with its reason; a redelivered copy is not billed.
func TestEndToEndRealServers(t *testing.T) {
	cfg, name, in, dlq := realServersConfig(t, "e2e")
	brokers, stop := startTariff(t, cfg, io.Discard)

	at := time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)
	produce(t, brokers, in,
		kafka.Message{Key: []byte("acme"), Value: sonnet("e2e-1", at)},
		kafka.Message{Key: []byte("acme"), Value: []byte(`{"id":"e2e-bad","customer_id":"acme","model":"gpt-4o","usage":{"input":-1}}`)},
		kafka.Message{Key: []byte("acme"), Value: sonnet("e2e-1", at)}, // the same event again
		kafka.Message{Key: []byte("acme"), Value: sonnet("e2e-2", at.Add(time.Hour))},
	)

	conn := testClickHouse(t, cfg, name)
	var rows uint64
	var cost, charge string
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := conn.QueryRow(context.Background(), `SELECT count(), toString(sum(cost)), toString(sum(charge))
			FROM rated_lines FINAL WHERE customer_id = 'acme'`).Scan(&rows, &cost, &charge)
		if err != nil {
			t.Fatal(err)
		}
		if rows >= 10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rows != 10 {
		t.Fatalf("rated_lines has %d rows for acme, want 10 (2 events x 5 unit types)", rows)
	}
	wantCost, wantCharge := decimal.RequireFromString("0.0405"), decimal.RequireFromString("0.05265")
	if !decimal.RequireFromString(cost).Equal(wantCost) || !decimal.RequireFromString(charge).Equal(wantCharge) {
		t.Fatalf("cost %s charge %s, want exactly %s and %s", cost, charge, wantCost, wantCharge)
	}

	// The pre-aggregated tables agree with the line items to the last digit.
	for _, table := range []string{"usage_hourly", "usage_daily"} {
		var events uint64
		if err := conn.QueryRow(context.Background(), "SELECT sum(events) FROM "+table+" FINAL WHERE customer_id = 'acme' AND unit = 'input'").
			Scan(&events); err != nil {
			t.Fatal(err)
		}
		if events != 2 {
			t.Fatalf("%s counts %d events of unit input, want 2", table, events)
		}
		var allCharge string
		if err := conn.QueryRow(context.Background(), "SELECT toString(sum(charge)) FROM "+table+" FINAL WHERE customer_id = 'acme'").Scan(&allCharge); err != nil {
			t.Fatal(err)
		}
		if !decimal.RequireFromString(allCharge).Equal(wantCharge) {
			t.Fatalf("%s charge %s, want %s as in rated_lines", table, allCharge, wantCharge)
		}
	}

	checkAnalystQueries(t, conn, map[string][]string{
		"customer_line_items":   nil, // checked by row count below
		"margin_by_model":       {"anthropic claude-sonnet-4-5 0.0405 0.05265 0.01215"},
		"spend_by_customer_day": {"acme 2026-11-20 0.0405 0.05265 0.01215"},
		"top_customers":         {"acme 0.05265 0.01215"},
		// acme spent nothing on 2026-11-19 and 0.05265 on 2026-11-20.
		"top_movers": {"acme 0 0.05265 0.05265"},
		"usage_by_model_day": {
			"2026-11-20 anthropic claude-sonnet-4-5 cache_write_5m 4000 2 0.0195",
			"2026-11-20 anthropic claude-sonnet-4-5 cached_input 16000 2 0.00624",
			"2026-11-20 anthropic claude-sonnet-4-5 input 2400 2 0.00936",
			"2026-11-20 anthropic claude-sonnet-4-5 output 660 2 0.01287",
			"2026-11-20 anthropic claude-sonnet-4-5 reasoning 240 2 0.00468",
		},
	}, map[string]int{"customer_line_items": 10})

	found := false
	for p := 0; p < 3 && !found; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: dlq, Partition: p, MaxWait: 100 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		m, err := r.ReadMessage(ctx)
		cancel()
		r.Close()
		if err != nil {
			continue
		}
		h := map[string]string{}
		for _, hd := range m.Headers {
			h[hd.Key] = string(hd.Value)
		}
		if !bytes.Contains(m.Value, []byte("e2e-bad")) {
			t.Fatalf("dead letter value %q is not the refused message", m.Value)
		}
		if h[sinks.HeaderDLQTopic] != in || !strings.Contains(h[sinks.HeaderDLQReason], "usage.input") {
			t.Fatalf("dead letter headers %v: want source topic %s and a reason naming usage.input", h, in)
		}
		found = true
	}
	if !found {
		t.Fatal("the malformed message is not in the dead-letter topic")
	}
	stop()
}

// TestEmbeddedDefault runs what `tariff run` runs with no configuration,
// on a free port: an event published with a standard Kafka client comes
// out rated in the local file.
func TestEmbeddedDefault(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{}
	cfg.Embedded.Port = freePort(t)
	cfg.Embedded.DataDir = filepath.Join(dir, "broker")
	cfg.State.Dir = filepath.Join(dir, "state")
	cfg.Output.File = filepath.Join(dir, "rated.jsonl")
	cfg.ClickHouse.Enabled = "false"
	cfg.Prices.Markup = "30"
	cfg.Log.Level = "warn"
	var console syncBuffer
	brokers, stop := startTariff(t, cfg, &console)

	produce(t, brokers, TopicGateway, kafka.Message{Key: []byte("acme"), Value: sonnet("emb-1", time.Now())})

	var got sinks.RatedJSON
	deadline := time.Now().Add(30 * time.Second)
	for got.EventID == "" && time.Now().Before(deadline) {
		if f, err := os.Open(cfg.Output.File); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
					t.Fatalf("rated file line %q: %v", sc.Text(), err)
				}
			}
			f.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if got.EventID != "emb-1" || got.Cost != "0.02025" || got.Charge != "0.026325" || len(got.Lines) != 5 {
		t.Fatalf("rated file has %+v; want emb-1 with cost 0.02025, charge 0.026325, 5 lines", got)
	}
	out := console.String()
	if !strings.Contains(out, "embedded default") || !strings.Contains(out, "NOT durable") || !strings.Contains(out, "acme") {
		t.Fatalf("console output lacks the banner or the rated line:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// checkAnalystQueries runs every documented query in schemas/queries and
// compares its rows, each formatted as space-separated values, with want;
// for the queries in counts only the row count is checked.
func checkAnalystQueries(t *testing.T, conn driver.Conn, want map[string][]string, counts map[string]int) {
	t.Helper()
	queries, err := schemas.AnalystQueries()
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) != len(want) {
		t.Fatalf("%d documented queries, the test knows %d: add the new one here", len(queries), len(want))
	}
	for _, q := range queries {
		rows, err := conn.Query(context.Background(), q.SQL)
		if err != nil {
			t.Fatalf("query %s: %v", q.Name, err)
		}
		var got []string
		for rows.Next() {
			vals := make([]any, len(rows.ColumnTypes()))
			for i, ct := range rows.ColumnTypes() {
				vals[i] = reflect.New(ct.ScanType()).Interface()
			}
			if err := rows.Scan(vals...); err != nil {
				t.Fatalf("query %s: %v", q.Name, err)
			}
			parts := make([]string, len(vals))
			for i, v := range vals {
				switch x := reflect.ValueOf(v).Elem().Interface().(type) {
				case time.Time:
					parts[i] = x.UTC().Format("2006-01-02")
				default:
					parts[i] = fmt.Sprint(x)
				}
			}
			got = append(got, strings.Join(parts, " "))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("query %s: %v", q.Name, err)
		}
		rows.Close()
		if n, ok := counts[q.Name]; ok {
			if len(got) != n {
				t.Errorf("query %s returned %d rows, want %d:\n%s", q.Name, len(got), n, strings.Join(got, "\n"))
			}
			continue
		}
		if strings.Join(got, "\n") != strings.Join(want[q.Name], "\n") {
			t.Errorf("query %s returned\n%s\nwant\n%s", q.Name, strings.Join(got, "\n"), strings.Join(want[q.Name], "\n"))
		}
	}
}
