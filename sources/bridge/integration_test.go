package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/schemas"
)

// sonnet is the payloads README's request in exclusive buckets: Claude
// Sonnet 4.5, 1,200 uncached input, 8,000 cache reads, 2,000 cache writes
// (5m), 450 output of which 120 reasoning.
var sonnet = map[schemas.Unit]int64{
	schemas.UnitInput: 1200, schemas.UnitCachedInput: 8000, schemas.UnitCacheWrite5m: 2000,
	schemas.UnitOutput: 330, schemas.UnitReasoning: 120, schemas.UnitRequests: 1,
}

func quantities(m map[schemas.Unit]int64) [schemas.NumUnits]int64 {
	var q [schemas.NumUnits]int64
	for u, v := range m {
		q[u] = v
	}
	return q
}

// expected is one message the integration test must find in Kafka.
type expected struct {
	name     string
	topic    string
	key      string
	value    []byte // the exact bytes, or nil when the bridge re-assembled them
	partner  string
	format   string
	model    string
	ids      []string // event ids, in order; nil: not checked
	quantity [schemas.NumUnits]int64
	found    bool
}

// TestIntegrationPartnersToKafka posts every partner format to a bridge
// running against the real Kafka broker, consumes the topics, and decodes
// each message with the same decoder the pipeline uses.
func TestIntegrationPartnersToKafka(t *testing.T) {
	broker := testenv.Kafka(t)
	tLiteLLM, tOpenRouter, tMeter := testenv.Name(t, "litellm"), testenv.Name(t, "openrouter"), testenv.Name(t, "meter")
	testenv.CreateTopics(t, broker, 3, tLiteLLM, tOpenRouter, tMeter)

	cfg := testConfig(t)
	cfg.Brokers = []string{broker}
	cfg.Endpoints[0].Topic = tLiteLLM
	cfg.Endpoints[1].Topic = tOpenRouter
	cfg.Endpoints = append(cfg.Endpoints[:2], cfg.Endpoints[3]) // no gateway endpoint
	cfg.Endpoints[2].Topic = tMeter
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	pub := NewKafkaPublisher(cfg, log)
	b, err := New(cfg, pub, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := pub.Close(); err != nil {
			t.Errorf("close publisher: %v", err)
		}
	}()
	base := "http://" + l.Addr().String()

	postHTTP := func(path, token, body string, headers ...string) reply {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		r := decodeReply(t, resp.StatusCode, resp.Header, data)
		if r.Status != http.StatusOK {
			t.Fatalf("POST %s: status %d: %s", path, r.Status, r.Raw)
		}
		return r
	}
	var want []*expected
	add := func(e expected) { want = append(want, &e) }

	// LiteLLM, JSON array (the generic webhook's default): two customers.
	l1, l2 := liteLLMPayload(t, 1, ""), liteLLMPayload(t, 2, "customer-beta-002")
	if r := postHTTP("/v1/ingest/litellm", testToken, "[\n"+string(l1)+",\n"+string(l2)+"\n]"); r.Messages != 2 {
		t.Fatalf("litellm array: %s", r.Raw)
	}
	// LiteLLM, NDJSON (log_format: ndjson).
	l3, l4 := liteLLMPayload(t, 3, ""), liteLLMPayload(t, 4, "customer-beta-002")
	if r := postHTTP("/v1/ingest/litellm", testToken, string(l3)+"\n"+string(l4)+"\n"); r.Messages != 2 {
		t.Fatalf("litellm ndjson: %s", r.Raw)
	}
	for i, v := range [][]byte{l1, l2, l3, l4} {
		key := "customer-acme-001"
		if i%2 == 1 {
			key = "customer-beta-002"
		}
		add(expected{name: fmt.Sprintf("litellm %d", i+1), topic: tLiteLLM, key: key, value: v, partner: "litellm", format: "litellm",
			model: "claude-sonnet-4-5-20250929", ids: []string{fmt.Sprintf("litellm:chatcmpl-5f1c2a7e-3b9d-4c61-9a0e-%d", 100000000000+i+1)},
			quantity: quantities(sonnet)})
	}

	// OpenRouter: a completion response, wrapped with its customer; the
	// generation record (customer in external_user); a Broadcast trace
	// (customer in user.id); the Broadcast connection test.
	completion := `{"customer_id":"customer-acme-001","response":` + string(readTestdata(t, "openrouter_completion_usage.json")) + `}`
	generation := string(readTestdata(t, "openrouter_generation.json"))
	broadcast := string(readTestdata(t, "openrouter_broadcast_webhook_otlp.json"))
	postHTTP("/v1/ingest/openrouter", testToken, completion)
	postHTTP("/v1/ingest/openrouter", testToken, generation)
	postHTTP("/v1/ingest/openrouter", testToken, broadcast)
	if r := postHTTP("/v1/ingest/openrouter", testToken, "", headerTestConnection, "true"); !r.Test || r.Messages != 0 {
		t.Fatalf("connection test: %s", r.Raw)
	}
	genID := "openrouter:gen-1771718400-Qm3xTb7LzP0aR9vK2sWd"
	add(expected{name: "openrouter completion", topic: tOpenRouter, key: "customer-acme-001", value: []byte(completion),
		partner: "openrouter", format: "openrouter", model: "anthropic/claude-sonnet-4.5", ids: []string{genID}, quantity: quantities(sonnet)})
	add(expected{name: "openrouter generation", topic: tOpenRouter, key: "customer-acme-001", value: []byte(generation),
		partner: "openrouter", format: "openrouter", model: "anthropic/claude-sonnet-4.5", ids: []string{genID},
		// The generation record has no cache-write count: writes bill as input.
		quantity: quantities(map[schemas.Unit]int64{schemas.UnitInput: 3200, schemas.UnitCachedInput: 8000,
			schemas.UnitOutput: 330, schemas.UnitReasoning: 120, schemas.UnitRequests: 1})})
	add(expected{name: "openrouter broadcast", topic: tOpenRouter, key: "customer-acme-001", value: []byte(broadcast),
		partner: "openrouter", format: "openrouter", model: "anthropic/claude-sonnet-4.5",
		ids: []string{"openrouter:span:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"},
		// OpenRouter's example trace carries only the inclusive totals.
		quantity: quantities(map[schemas.Unit]int64{schemas.UnitInput: 11200, schemas.UnitOutput: 450, schemas.UnitRequests: 1})})
	// A Broadcast batch mixing two customers: one message each.
	mixed := `{"resourceSpans":[{"resource":{"attributes":[]},"scopeSpans":[{"scope":{"name":"openrouter"},"spans":[` +
		otlpSpan("cust-a", "a1") + "," + otlpSpan("cust-b", "b1") + "," + otlpSpan("cust-a", "a2") + `]}]}]}`
	if r := postHTTP("/v1/ingest/openrouter", testToken, mixed); r.Messages != 2 || r.Events != 3 {
		t.Fatalf("mixed broadcast: %s", r.Raw)
	}
	spanQ := quantities(map[schemas.Unit]int64{schemas.UnitInput: 100, schemas.UnitOutput: 10, schemas.UnitRequests: 1})
	var spanQ2 [schemas.NumUnits]int64
	for u := range spanQ {
		spanQ2[u] = 2 * spanQ[u]
	}
	add(expected{name: "broadcast cust-a", topic: tOpenRouter, key: "cust-a", partner: "openrouter", format: "openrouter",
		model: "anthropic/claude-sonnet-4.5", ids: []string{"openrouter:gen-a1", "openrouter:gen-a2"}, quantity: spanQ2})
	add(expected{name: "broadcast cust-b", topic: tOpenRouter, key: "cust-b", partner: "openrouter", format: "openrouter",
		model: "anthropic/claude-sonnet-4.5", ids: []string{"openrouter:gen-b1"}, quantity: spanQ})

	// Meter records, signed: six billable records (the latency meter is not).
	meter := readTestdata(t, "amberflo_meter_record.json")
	if r := postHTTP("/v1/ingest/meter", testMeterToken, string(meter), sign(testHMACSecret, time.Now(), string(meter))...); r.Accepted != 7 || r.Messages != 6 {
		t.Fatalf("meter: %s", r.Raw)
	}
	var recs []json.RawMessage
	if err := json.Unmarshal(meter, &recs); err != nil {
		t.Fatal(err)
	}
	meterIdx := 0
	var meterSum [schemas.NumUnits]int64
	for _, rec := range recs {
		if bytes.Contains(rec, []byte(`"llm_api_call_ms"`)) {
			continue
		}
		meterIdx++
		add(expected{name: fmt.Sprintf("meter %d", meterIdx), topic: tMeter, key: "customer-acme-001", value: rec,
			partner: "meter", format: "meter", model: "claude-sonnet-4-5-20250929", quantity: [schemas.NumUnits]int64{}})
	}

	// Consume everything and match it.
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     []string{broker},
		GroupID:     testenv.Name(t, "group"),
		GroupTopics: []string{tLiteLLM, tOpenRouter, tMeter},
		StartOffset: kafka.FirstOffset,
		MaxWait:     100 * time.Millisecond,
	})
	defer r.Close()
	decoders := map[string]schemas.Decoder{}
	for _, f := range []string{"litellm", "openrouter", "meter"} {
		decoders[f], _ = schemas.DecoderFor(f, schemas.DecodeOptions{})
	}
	partitionOf := map[string]int{} // topic/key → partition
	rctx, rcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer rcancel()
	for got := 0; got < len(want); got++ {
		m, err := r.FetchMessage(rctx)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", got, len(want), err)
		}
		hdr := map[string]string{}
		for _, h := range m.Headers {
			hdr[h.Key] = string(h.Value)
		}
		tk := m.Topic + "/" + string(m.Key)
		if p, ok := partitionOf[tk]; ok && p != m.Partition {
			t.Errorf("key %s in partitions %d and %d: a customer must stay in one partition", tk, p, m.Partition)
		}
		partitionOf[tk] = m.Partition
		evs, err := decoders[hdr[HeaderFormat]].Decode(nil, m.Value)
		if err != nil {
			t.Fatalf("%s@%d/%d does not decode: %v", m.Topic, m.Partition, m.Offset, err)
		}
		var e *expected
		for _, w := range want {
			if !w.found && w.topic == m.Topic && w.key == string(m.Key) && (w.value == nil || bytes.Equal(w.value, m.Value)) {
				e = w
				break
			}
		}
		if e == nil {
			t.Fatalf("unexpected message %s@%d/%d key %q: %.200s", m.Topic, m.Partition, m.Offset, m.Key, m.Value)
		}
		e.found = true
		if hdr[HeaderPartner] != e.partner || hdr[HeaderFormat] != e.format {
			t.Errorf("%s: headers %v", e.name, hdr)
		}
		var q [schemas.NumUnits]int64
		var ids []string
		for _, ev := range evs {
			if ev.CustomerID != e.key {
				t.Errorf("%s: message keyed %q holds an event of customer %q", e.name, e.key, ev.CustomerID)
			}
			if ev.Model != e.model {
				t.Errorf("%s: model %q, want %q", e.name, ev.Model, e.model)
			}
			for u, v := range ev.Quantities {
				q[u] += v
			}
			ids = append(ids, ev.ID)
		}
		if e.format == "meter" {
			if len(evs) != 1 {
				t.Errorf("%s: %d events, want 1", e.name, len(evs))
			}
			for u, v := range q {
				meterSum[u] += v
			}
			continue
		}
		if q != e.quantity {
			t.Errorf("%s: quantities %v, want %v", e.name, q, e.quantity)
		}
		if e.ids != nil && fmt.Sprint(ids) != fmt.Sprint(e.ids) {
			t.Errorf("%s: event ids %v, want %v", e.name, ids, e.ids)
		}
	}
	// The meter records of one request add up to the same request.
	if meterSum != quantities(sonnet) {
		t.Errorf("meter records sum to %v, want %v", meterSum, quantities(sonnet))
	}
	// Nothing else arrives (the connection test published nothing).
	extra, ecancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer ecancel()
	if m, err := r.FetchMessage(extra); err == nil {
		t.Errorf("unexpected extra message %s@%d/%d: %.200s", m.Topic, m.Partition, m.Offset, m.Value)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("fetch: %v", err)
	}
	if got := b.Stats.Messages.Load(); got != int64(len(want)) {
		t.Errorf("Stats.Messages = %d, want %d", got, len(want))
	}
}

// TestKafkaDown points the real kafka-go publisher at an address where
// nothing listens (no broker needed): the request must get 503 with
// Retry-After within publish_timeout.
func TestKafkaDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	cfg := testConfig(t)
	cfg.Brokers = []string{dead}
	cfg.PublishTimeout = 2 * time.Second
	pub := NewKafkaPublisher(cfg, zerolog.Nop())
	defer pub.Close()
	b, err := New(cfg, pub, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := post(t, b.Handler(), "/v1/ingest/litellm", string(liteLLMPayload(t, 0, "")))
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "30" {
		t.Fatalf("status %d Retry-After %q: %s", r.Status, r.Header.Get("Retry-After"), r.Raw)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("503 took %s, publish_timeout is 2s", took)
	}
}
