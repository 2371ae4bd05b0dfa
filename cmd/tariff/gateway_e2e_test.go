package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources/gateway"
	"github.com/tariff-dev/tariff/sources/gateway/gatewaytest"
)

// faultDialer dials Kafka for the gateway's publisher, and can take Kafka
// away as a broker outage looks from the client: while down, every dial is
// refused and every connection it made fails like a connection the broker
// dropped (reads see EOF, writes a reset). The shared broker itself is never
// touched.
type faultDialer struct {
	mu    sync.Mutex
	down  bool
	conns []*faultConn
}

func (d *faultDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	down := d.down
	d.mu.Unlock()
	if down {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	fc := &faultConn{Conn: c}
	d.mu.Lock()
	d.conns = append(d.conns, fc)
	d.mu.Unlock()
	return fc, nil
}

func (d *faultDialer) setDown(down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = down
	if down {
		for _, c := range d.conns {
			c.broken.Store(true)
			_ = c.Conn.SetDeadline(time.Now()) // wake blocked reads
		}
		d.conns = nil
	}
}

type faultConn struct {
	net.Conn
	broken atomic.Bool
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if c.broken.Load() {
		return 0, io.EOF
	}
	return n, err
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return c.Conn.Write(p)
}

// gatewayCall is one request the test makes through the gateway.
type gatewayCall struct {
	customer, path, model string
	stream                bool
}

func (c gatewayCall) body() string {
	switch c.path {
	case "/v1/responses":
		return fmt.Sprintf(`{"model":%q,"stream":%v,"input":"Summarize the quarterly report"}`, c.model, c.stream)
	case "/v1/messages":
		return fmt.Sprintf(`{"model":%q,"stream":%v,"max_tokens":1024,"messages":[{"role":"user","content":"Summarize the quarterly report"}]}`, c.model, c.stream)
	}
	return fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"Summarize the quarterly report"}]}`, c.model, c.stream)
}

// TestGatewayEndToEndRealServers runs the gateway in front of stand-in
// OpenAI and Anthropic upstreams and the whole pipeline on the real broker
// and ClickHouse: requests for several customers and models, streamed and
// not, on all three APIs, end as rated rows with exactly the tokens the
// stand-ins reported. In the middle Kafka goes away for the gateway: the
// callers are answered as usual, the events wait in the spool, and once
// Kafka is back nothing is missing and nothing is doubled.
func TestGatewayEndToEndRealServers(t *testing.T) {
	cfg, name, topic, dlq := realServersConfig(t, "gw")
	broker := cfg.Kafka.Brokers[0]
	_, stopTariff := startTariff(t, cfg, io.Discard)

	const openaiKey, anthropicKey = "sk-e2e-openai-0123456789", "sk-ant-e2e-0123456789"
	openai, anthropic := gatewaytest.New(openaiKey), gatewaytest.New(anthropicKey)
	defer openai.Close()
	defer anthropic.Close()
	t.Setenv("TARIFF_E2E_OPENAI_KEY", openaiKey)
	t.Setenv("TARIFF_E2E_ANTHROPIC_KEY", anthropicKey)
	dir := t.TempDir()
	gcfg := gateway.Config{
		Brokers:        []string{broker},
		Topic:          topic,
		PublishTimeout: 2 * time.Second,
		Keys:           gateway.KeysConfig{File: filepath.Join(dir, "keys")},
		Spool:          gateway.SpoolConfig{Dir: filepath.Join(dir, "spool"), RetryMax: 250 * time.Millisecond},
		Upstreams: []gateway.Upstream{
			{Name: "openai", Kind: gateway.KindOpenAI, BaseURL: openai.BaseURL(), Key: gateway.Secret{Env: "TARIFF_E2E_OPENAI_KEY"}},
			{Name: "anthropic", Kind: gateway.KindAnthropic, BaseURL: anthropic.BaseURL(), Key: gateway.Secret{Env: "TARIFF_E2E_ANTHROPIC_KEY"}},
		},
		Routes: []gateway.Route{{Prefix: "gpt-", Upstream: "openai"}, {Prefix: "claude-", Upstream: "anthropic"}},
	}
	customers := []string{"acme", "globex", "initech"}
	keys := map[string]string{}
	for _, c := range customers {
		k, _, err := gateway.AddKey(gcfg.Keys.File, c, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		keys[c] = k
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	fd := &faultDialer{}
	pub := gateway.NewKafkaPublisher(gcfg, log, gateway.KafkaOptions{Dial: fd.Dial})
	defer pub.Close()
	g, err := gateway.New(gcfg, pub, log)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, l) }()
	stopGateway := func() {
		if cancel != nil {
			cancel()
			cancel = nil
			if err := <-served; err != nil {
				t.Errorf("gateway: %v", err)
			}
		}
	}
	defer stopGateway()
	url := "http://" + l.Addr().String()

	// Every API, streamed and not, several models, each customer.
	var calls []gatewayCall
	for i, c := range customers {
		for _, stream := range []bool{false, true} {
			calls = append(calls,
				gatewayCall{c, "/v1/chat/completions", []string{"gpt-4o", "gpt-4o-mini"}[i%2], stream},
				gatewayCall{c, "/v1/responses", "gpt-5", stream},
				gatewayCall{c, "/v1/messages", []string{"claude-sonnet-4-5", "claude-haiku-4-5"}[i%2], stream},
			)
		}
	}
	owner := map[string]string{} // response id -> customer
	run := func(phase string) {
		t.Helper()
		for _, c := range calls {
			req, _ := http.NewRequest(http.MethodPost, url+c.path, strings.NewReader(c.body()))
			req.Header.Set("Content-Type", "application/json")
			if c.path == "/v1/messages" {
				req.Header.Set("x-api-key", keys[c.customer])
			} else {
				req.Header.Set("Authorization", "Bearer "+keys[c.customer])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s: %s: %v", phase, c.path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %s %s: status %d: %s", phase, c.path, c.model, resp.StatusCode, body)
			}
			up := openai
			if c.path == "/v1/messages" {
				up = anthropic
			}
			// Requests are sequential: the stand-in's last report is this one.
			reps := up.Reports()
			rep := reps[len(reps)-1]
			if !bytes.Contains(body, []byte(rep.ID)) {
				t.Fatalf("%s: the answer to %s does not carry the upstream's id %s", phase, c.path, rep.ID)
			}
			owner[rep.ID] = c.customer
		}
	}

	// waitStat waits until cond holds for the gateway's stats.
	waitStat := func(what string, cond func(gateway.StatsSnapshot) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond(g.Stats()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, g.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	n := int64(len(calls))

	run("kafka up")
	waitStat("the first round published directly", func(s gateway.StatsSnapshot) bool { return s.Published == n })
	// Kafka goes away for the gateway. Callers must not notice.
	fd.setDown(true)
	before := g.Stats()
	run("kafka down")
	waitStat("the outage's events in the spool", func(s gateway.StatsSnapshot) bool { return s.SpoolDepth == n })
	if st := g.Stats(); st.Published != before.Published {
		t.Fatalf("%d events published while Kafka was down", st.Published-before.Published)
	}
	// Kafka is back: the spool drains; later requests go straight through.
	fd.setDown(false)
	waitStat("the spool to drain", func(s gateway.StatsSnapshot) bool { return s.SpoolDepth == 0 })
	run("kafka back")
	waitStat("the last round published", func(s gateway.StatsSnapshot) bool { return s.Published+s.Drained == 3*n })
	stopGateway()
	st := g.Stats()
	total := 3 * len(calls)
	// Every event went out exactly one way: published at once, or spooled
	// and drained later. (A publish whose acknowledgement was lost is
	// spooled and sent again; the pipeline deduplicates by id, below.)
	if st.Events != int64(total) || st.Published+st.Spooled != int64(total) || st.Drained != st.Spooled || st.Spooled < n ||
		st.Lost != 0 || st.InvalidEvents != 0 || st.SpoolDepth != 0 {
		t.Fatalf("gateway stats: %+v; want %d events, each published or spooled and drained, at least %d spooled, none lost", st, total, n)
	}
	t.Logf("gateway: %d events, %d published at once, %d spooled during the outage and published after it (%d failed attempts)",
		st.Events, st.Published, st.Drained, st.PublishErrors)

	// What the stand-ins reported, per customer, model and unit.
	want := map[string]int64{}
	ids := map[string]bool{}
	for _, rep := range append(openai.Reports(), anthropic.Reports()...) {
		ids[rep.ID] = true
		q := rep.Expected()
		for u, n := range q {
			if n > 0 {
				want[fmt.Sprintf("%s %s %s", owner[rep.ID], rep.Model, schemas.Unit(u))] += n
			}
		}
	}
	if len(ids) != total {
		t.Fatalf("the stand-ins answered %d responses, want %d", len(ids), total)
	}

	conn := testClickHouse(t, cfg, name)
	var events uint64
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := conn.QueryRow(context.Background(), `SELECT uniqExact(event_id) FROM rated_lines FINAL`).Scan(&events); err != nil {
			t.Fatal(err)
		}
		if events >= uint64(total) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if events != uint64(total) {
		logDeadLetters(t, broker, dlq)
		t.Fatalf("rated_lines holds %d events, want %d", events, total)
	}
	rows, err := conn.Query(context.Background(), `SELECT customer_id, model, unit, sum(quantity), count()
		FROM rated_lines FINAL GROUP BY customer_id, model, unit`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for rows.Next() {
		var customer, model, unit string
		var qty int64
		var n uint64
		if err := rows.Scan(&customer, &model, &unit, &qty, &n); err != nil {
			t.Fatal(err)
		}
		got[customer+" "+model+" "+unit] = qty
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	var diff []string
	for k, w := range want {
		if got[k] != w {
			diff = append(diff, fmt.Sprintf("%s: rated %d, reported %d", k, got[k], w))
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			diff = append(diff, fmt.Sprintf("%s: rated %d, never reported", k, n))
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Fatalf("rated tokens differ from what the stand-ins reported:\n%s", strings.Join(diff, "\n"))
	}
	// Every event is the upstream's response, by id.
	idRows, err := conn.Query(context.Background(), `SELECT DISTINCT event_id FROM rated_lines FINAL`)
	if err != nil {
		t.Fatal(err)
	}
	for idRows.Next() {
		var id string
		if err := idRows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if !ids[id] {
			t.Errorf("rated event %s is no response of the stand-ins", id)
		}
	}
	idRows.Close()
	var charge string
	if err := conn.QueryRow(context.Background(), `SELECT toString(sum(charge)) FROM rated_lines FINAL`).Scan(&charge); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events, %d (customer, model, unit) totals equal to the stand-ins' reports; charge %s USD", total, len(want), charge)
	stopTariff()
}

// logDeadLetters logs what the pipeline refused, to explain a shortfall.
func logDeadLetters(t *testing.T, broker, topic string) {
	for p := 0; p < 3; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			m, err := r.ReadMessage(ctx)
			cancel()
			if err != nil {
				break
			}
			h := map[string]string{}
			for _, hd := range m.Headers {
				h[hd.Key] = string(hd.Value)
			}
			t.Logf("dead letter: %s reason %s", m.Value, h[sinks.HeaderDLQReason])
		}
		r.Close()
	}
}
