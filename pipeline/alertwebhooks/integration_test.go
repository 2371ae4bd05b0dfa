package alertwebhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/sinks/webhook"
)

// TestAlertWebhooksRealBroker writes alerts with pipeline.AlertWriter to
// a fresh topic on the real broker. A first deliverer delivers some, then
// the receiver starts failing and the deliverer is stopped mid-way; a
// second deliverer of the same group finishes. Every alert must reach the
// receiver at least once, signed, with its original idempotency key; the
// group's committed offsets must reach the end of the topic; and the
// deliveries topic must hold the attempts, failed ones included.
func TestAlertWebhooksRealBroker(t *testing.T) {
	broker := testenv.Kafka(t)
	name := testenv.Name(t, "alerthooks")
	alertsTopic, deliveriesTopic, group := name+".alerts", name+".deliveries", name+".webhooks"
	const partitions = 3
	testenv.CreateTopics(t, broker, partitions, alertsTopic)
	testenv.CreateTopics(t, broker, 1, deliveriesTopic)

	// The alerts: 8 customers, 6 crossings each.
	var alerts []balance.Alert
	for c := range 8 {
		for seq := range uint32(6) {
			alerts = append(alerts, balance.Alert{Key: fmt.Sprintf("cust-%d-threshold-%d", c, seq+1), CustomerID: fmt.Sprintf("cust-%d", c),
				Kind: balance.AlertThreshold, Seq: seq + 1, At: time.Date(2026, 11, 20, 9, 0, int(seq), 0, time.UTC)})
		}
	}
	aw, err := pipeline.NewAlertWriter([]string{broker}, alertsTopic, &kafka.Transport{})
	if err != nil {
		t.Fatal(err)
	}
	if err := aw.WriteAlerts(t.Context(), alerts); err != nil {
		t.Fatal(err)
	}
	aw.Close()

	// The receiver accepts the first 15 deliveries, then fails with 503
	// until told to recover.
	var mu sync.Mutex
	var accepted, refused int
	failing := false
	received := map[string]int{}   // idempotency key -> 2xx answers
	lastSeq := map[string]uint32{} // customer -> last crossing accepted
	var problems []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhook.Verify([]byte(testSecret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			problems = append(problems, "signature: "+err.Error())
		}
		var a balance.Alert
		if err := json.Unmarshal(body, &a); err != nil || a.Key != r.Header.Get(webhook.HeaderIdempotencyKey) {
			problems = append(problems, fmt.Sprintf("body %s with idempotency key %q", body, r.Header.Get(webhook.HeaderIdempotencyKey)))
		}
		if accepted >= 15 && !failing {
			failing = true
		}
		if failing {
			refused++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		// Order per customer: a redelivery may repeat the last crossing,
		// never go back further or skip one.
		if a.Seq < lastSeq[a.CustomerID] || a.Seq > lastSeq[a.CustomerID]+1 {
			problems = append(problems, fmt.Sprintf("%s: crossing %d after %d", a.CustomerID, a.Seq, lastSeq[a.CustomerID]))
		}
		lastSeq[a.CustomerID] = a.Seq
		accepted++
		received[a.Key]++
	}))
	defer srv.Close()

	t.Setenv("TEST_ALERT_WEBHOOK_SECRET", testSecret)
	cfg := Config{Alerts: []Endpoint{{URL: srv.URL + "/alerts"}}, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		MaxAttempts: 100, DeliveriesTopic: deliveriesTopic}
	cfg.Alerts[0].Secret.Env = "TEST_ALERT_WEBHOOK_SECRET"
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	start := func() (*Deliverer, context.CancelFunc, chan error) {
		d, err := New(cfg, Options{Brokers: []string{broker}, AlertsTopic: alertsTopic, GroupID: group, Transport: &kafka.Transport{},
			SessionTimeout: 6 * time.Second, Deliveries: m.WebhookDeliveries, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		return d, cancel, done
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: not after %s (accepted %d, refused %d, distinct keys %d of %d)", what, timeout, accepted, refused, len(received), len(alerts))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	d1, stop1, done1 := start()
	waitFor("first deliverer fails against the receiver", 60*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return refused >= 10 })
	stop1()
	if err := <-done1; err != nil {
		t.Fatalf("first deliverer: %v", err)
	}
	d1.Close()
	var retried int
	for _, r := range d1.Recent(0) {
		if r.Outcome == OutcomeRetried && r.Status == http.StatusServiceUnavailable {
			retried++
		}
	}
	if retried == 0 {
		t.Errorf("the first deliverer's recent deliveries show no retried 503: %+v", d1.Recent(5))
	}
	mu.Lock()
	if len(received) == len(alerts) {
		t.Fatalf("all alerts were delivered before the stop: the test did not stop mid-way")
	}
	failing = false
	accepted = -1 << 30 // never fail again
	mu.Unlock()

	d2, stop2, done2 := start()
	waitFor("second deliverer delivers every alert", 90*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(received) == len(alerts) })
	// Every alert's offset is committed once its delivery is final.
	waitFor("committed offsets reach the end of the alerts topic", 20*time.Second, func() bool { return lag(t, broker, group, alertsTopic, partitions) == 0 })
	stop2()
	if err := <-done2; err != nil {
		t.Fatalf("second deliverer: %v", err)
	}
	d2.Close()

	mu.Lock()
	for _, p := range problems {
		t.Error(p)
	}
	for _, a := range alerts {
		if received[a.Key] < 1 {
			t.Errorf("alert %s never delivered", a.Key)
		}
	}
	for k := range received {
		if k == "" {
			t.Error("an alert arrived without its key")
		}
	}
	mu.Unlock()

	// The deliveries topic holds every attempt, keyed by the alert key.
	recs := readDeliveries(t, broker, deliveriesTopic)
	delivered := map[string]bool{}
	var failed503 int
	for _, r := range recs {
		if r.URL != srv.URL+"/alerts" || r.AlertKey == "" || r.Attempt < 1 {
			t.Errorf("delivery record %+v", r)
		}
		switch {
		case r.Outcome == OutcomeDelivered:
			delivered[r.AlertKey] = true
		case r.Status == http.StatusServiceUnavailable:
			failed503++
		}
	}
	if len(delivered) != len(alerts) || failed503 < 10 {
		t.Errorf("deliveries topic: %d records, delivered %d distinct alerts (want %d), %d attempts answered 503 (want at least 10)", len(recs), len(delivered), len(alerts), failed503)
	}
	t.Logf("%d alerts; %d delivery records; metrics delivered %d, retried %d, failed %d", len(alerts), len(recs),
		m.WebhookDeliveries.With("alerts", metrics.OutcomeDelivered).Value(), m.WebhookDeliveries.With("alerts", metrics.OutcomeRetried).Value(),
		m.WebhookDeliveries.With("alerts", metrics.OutcomeFailed).Value())
}

// lag returns how many alerts the group has not committed, over all
// partitions (-1 when unknown).
func lag(t *testing.T, broker, group, topic string, partitions int) int64 {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 5 * time.Second, Transport: tr}
	ids := make([]int, partitions)
	reqs := make([]kafka.OffsetRequest, partitions)
	for p := range partitions {
		ids[p], reqs[p] = p, kafka.LastOffsetOf(p)
	}
	committed, err := client.OffsetFetch(t.Context(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return -1
	}
	ends, err := client.ListOffsets(t.Context(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return -1
	}
	end := map[int]int64{}
	for _, po := range ends.Topics[topic] {
		end[po.Partition] = po.LastOffset
	}
	var total int64
	for _, p := range committed.Topics[topic] {
		if p.CommittedOffset < 0 {
			total += end[p.Partition]
		} else {
			total += end[p.Partition] - p.CommittedOffset
		}
	}
	return total
}

func readDeliveries(t *testing.T, broker, topic string) []Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	last, err := conn.ReadLastOffset()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond,
		Dialer: &kafka.Dialer{Timeout: 5 * time.Second}})
	defer r.Close()
	var out []Delivery
	for int64(len(out)) < last {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read %s after %d of %d records: %v", topic, len(out), last, err)
		}
		var d Delivery
		if err := json.Unmarshal(msg.Value, &d); err != nil || string(msg.Key) != d.AlertKey {
			t.Errorf("delivery record key %q value %s: %v", msg.Key, msg.Value, err)
		}
		out = append(out, d)
	}
	return out
}
