package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/testenv"
)

// TestOpsMetricsPerSourceRealServers runs tariff on the real broker with
// two input topics and scrapes /metrics: 3 messages on topic A (one a
// resent copy), 2 on topic B (one malformed, one of a model without a
// price) must show up per source, exactly, beside batch and flush
// latencies and the unpriced_model alert, which is also read back from the
// alerts topic with its headers.
func TestOpsMetricsPerSourceRealServers(t *testing.T) {
	broker := testenv.Kafka(t)
	name := testenv.Name(t, "metrics")
	a, b, dlq, alerts := name+".a", name+".b", name+".dlq", name+".alerts"
	testenv.CreateTopics(t, broker, 1, a, b, dlq, alerts)
	dir := t.TempDir()
	cfg := &Config{}
	cfg.Kafka.Brokers = []string{broker}
	cfg.Kafka.GroupID = name
	cfg.Kafka.Topics = map[string]string{a: "gateway", b: "gateway"}
	cfg.Kafka.DeadLetterTopic = dlq
	cfg.Kafka.AlertsTopic = alerts
	cfg.ClickHouse.Enabled = "false"
	cfg.Output.File = filepath.Join(dir, "rated.jsonl")
	cfg.State.Dir = filepath.Join(dir, "state")
	cfg.Prices.Markup = "30"
	cfg.Log.Level = "warn"
	var stdout syncBuffer
	brokers, _ := startTariff(t, cfg, &stdout)
	base := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(stdout.String())
	if base == "" {
		t.Fatalf("no ops address in the banner:\n%s", stdout.String())
	}

	now := time.Now()
	unpriced := strings.Replace(strings.Replace(string(sonnet("b-2", now)), `"claude-sonnet-4-5"`, `"gpt-nonexistent-9"`, 1), `"anthropic"`, `"openai"`, 1)
	produce(t, brokers, a,
		kafka.Message{Key: []byte("acme"), Value: sonnet("a-1", now)},
		kafka.Message{Key: []byte("acme"), Value: sonnet("a-2", now)},
		kafka.Message{Key: []byte("acme"), Value: sonnet("a-1", now)}) // resent: a duplicate
	produce(t, brokers, b,
		kafka.Message{Key: []byte("acme"), Value: []byte(`{"id":`)}, // malformed
		kafka.Message{Key: []byte("acme"), Value: []byte(unpriced)})

	series := func(metric, source string, v int) string {
		return fmt.Sprintf("%s{source=%q} %d\n", metric, source, v)
	}
	want := []string{
		series("tariff_messages_total", a, 3), series("tariff_messages_total", b, 2),
		series("tariff_events_decoded_total", a, 3), series("tariff_events_decoded_total", b, 1),
		series("tariff_events_rated_total", a, 2), series("tariff_events_rated_total", b, 0),
		series("tariff_events_deduplicated_total", a, 1), series("tariff_events_deduplicated_total", b, 0),
		series("tariff_messages_dead_lettered_total", a, 0), series("tariff_messages_dead_lettered_total", b, 2),
		series("tariff_messages_unpriced_total", a, 0), series("tariff_messages_unpriced_total", b, 1),
		`tariff_alerts_emitted_total{kind="unpriced_model"} 1` + "\n",
	}
	// The counters move while a batch is handled, the batch series once it
	// is committed: wait for both.
	wantRe := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^tariff_batch_duration_seconds_count [1-9][0-9]*$`),
		regexp.MustCompile(`(?m)^tariff_flush_duration_seconds_count\{sink="file"\} [1-9][0-9]*$`),
		regexp.MustCompile(`(?m)^tariff_batches_total [1-9][0-9]*$`),
	}
	var body string
	deadline := time.Now().Add(60 * time.Second)
	for {
		var code int
		code, body = httpGet(t, base+"/metrics", "")
		var missing []string
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = append(missing, strings.TrimSpace(w))
			}
		}
		for _, re := range wantRe {
			if !re.MatchString(body) {
				missing = append(missing, re.String())
			}
		}
		if code == 200 && len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s, /metrics (%d) lacks %q:\n%s", code, missing, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Contains(body, `source="all"`) {
		t.Error(`/metrics still has source="all" series`)
	}

	// The alert on the wire: kind and key headers, and the body naming the
	// model and the event.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: alerts, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("read the alerts topic: %v", err)
	}
	headers := map[string]string{}
	for _, h := range m.Headers {
		headers[h.Key] = string(h.Value)
	}
	hour := now.UTC().Truncate(time.Hour)
	var got pipeline.UnpricedModel
	if err := json.Unmarshal(m.Value, &got); err != nil {
		t.Fatalf("alert body %s: %v", m.Value, err)
	}
	// The hour processed in, which is the hour produced in unless the
	// clock turned in between.
	if !got.Hour.Equal(hour) && !got.Hour.Equal(hour.Add(time.Hour)) {
		t.Errorf("alert hour %s, want %s", got.Hour, hour)
	}
	wantKey := "unpriced:openai/gpt-nonexistent-9:" + got.Hour.Format("2006-01-02T15Z")
	if headers[pipeline.HeaderAlertKind] != "unpriced_model" || headers[pipeline.HeaderAlertKey] != wantKey ||
		got.Model != "gpt-nonexistent-9" || got.Provider != "openai" || got.FirstEventID != "b-2" || got.Topic != b || got.Offset != 1 || got.Count != 1 {
		t.Errorf("alert headers %v, body %s; want kind unpriced_model, key %s, model gpt-nonexistent-9 of openai, first event b-2 at %s/1, count 1", headers, m.Value, wantKey, b)
	}
}
