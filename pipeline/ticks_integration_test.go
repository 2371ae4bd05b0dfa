package pipeline

import (
	"context"
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

// lockedSink and lockedDLQ let the partition workers share the in-memory
// fakes.
type lockedSink struct {
	mu sync.Mutex
	memSink
}

func (s *lockedSink) WriteBatch(ctx context.Context, b *sinks.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.memSink.WriteBatch(ctx, b)
}

type lockedDLQ struct {
	mu sync.Mutex
	memDLQ
}

func (d *lockedDLQ) Write(ctx context.Context, recs []sinks.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.memDLQ.Write(ctx, recs)
}

// TestTicksExpireCreditOnRealBroker: on the real broker, a grant that
// expires while its customer sends nothing. The Ticker writes ticks to
// each owned partition of a real command topic, the Runner applies them,
// and the zero alert reaches the real alerts topic, stamped with the
// expiry, no earlier than the expiry.
func TestTicksExpireCreditOnRealBroker(t *testing.T) {
	broker := testenv.Kafka(t)
	cmdTopic, alertTopic := testenv.Name(t, "cmd"), testenv.Name(t, "alerts")
	const partitions = 2
	testenv.CreateTopics(t, broker, partitions, cmdTopic, alertTopic)
	brokers := []string{broker}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	store, err := OpenStore(StoreConfig{Dir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	changelog := NewChangelog(brokers, testenv.Name(t, "changelog"), &kafka.Transport{})
	if err := changelog.Ensure(ctx, partitions, store.Window()); err != nil {
		t.Fatal(err)
	}
	alerts, err := NewAlertWriter(brokers, alertTopic, &kafka.Transport{})
	if err != nil {
		t.Fatal(err)
	}
	defer alerts.Close()
	kc := sources.Config{Brokers: brokers, GroupID: testenv.Name(t, "group"), Topics: map[string]string{cmdTopic: FormatCommand},
		MaxBatchWait: 50 * time.Millisecond, SessionTimeout: 10 * time.Second}
	group, err := sources.NewGroup(ctx, kc, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	views := &Views{}
	interval := 200 * time.Millisecond
	cfg := Config{RetryMin: 50 * time.Millisecond, RetryMax: time.Second, TickInterval: &interval}
	runner := NewRunner(cfg, kc, group, changelog, Deps{
		Formats: kc.Topics, Decoders: map[string]schemas.Decoder{}, Sink: &lockedSink{}, DLQ: &lockedDLQ{}, Store: store,
		Alerts: alerts, Views: views, Logger: zerolog.Nop(),
	}, func() Rater { return fakeRater{} })
	ticker := TickerFor(cfg, kc.Topics, brokers, &kafka.Transport{}, runner.Partitions, zerolog.Nop())
	if ticker == nil {
		t.Fatal("no ticker for a command topic")
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Add(2)
	go func() { defer wg.Done(); runErr = runner.Run(runCtx) }()
	go func() { defer wg.Done(); _ = ticker.Run(runCtx) }()
	defer func() { stop(); wg.Wait() }()

	// The grant: 5 USD from now, expiring 4 seconds later. No usage follows.
	at := time.Now().UTC().Truncate(time.Millisecond)
	expiry := at.Add(4 * time.Second)
	cmd := balance.Command{ID: "grant-1", CustomerID: "acme", Kind: balance.CommandGrant, At: at,
		Grant: &balance.Grant{ID: "pack-1", Amount: rating.MustAmount("5"), ExpiresAt: expiry}}
	v, err := json.Marshal(&cmd)
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: cmdTopic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, Transport: &kafka.Transport{}}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("acme"), Value: v}); err != nil {
		t.Fatal(err)
	}
	part := (&kafka.Hash{}).Balance(kafka.Message{Key: []byte("acme")}, 0, 1)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: alertTopic, Partition: part, MaxWait: 100 * time.Millisecond,
		Dialer: &kafka.Dialer{Timeout: 10 * time.Second}})
	defer r.Close()
	m, err := r.ReadMessage(ctx) // the alerts topic carries no billable data: no commit needed
	if err != nil {
		t.Fatalf("no alert on %s/%d: %v", alertTopic, part, err)
	}
	received := time.Now()
	var al balance.Alert
	if err := json.Unmarshal(m.Value, &al); err != nil {
		t.Fatal(err)
	}
	want := balance.Alert{Key: al.Key, CustomerID: "acme", Kind: balance.AlertZero,
		Cause: balance.Cause{Kind: balance.CauseExpiry, ID: "pack-1"}, At: expiry, Seq: 1}
	if al.Key == "" || !reflect.DeepEqual(al, want) {
		t.Fatalf("alert %+v, want %+v", al, want)
	}
	if received.Before(expiry) {
		t.Fatalf("alert received at %s, before the expiry %s", received.Format(time.RFC3339Nano), expiry.Format(time.RFC3339Nano))
	}
	t.Logf("zero alert received %s after the expiry (tick interval %s)", received.Sub(expiry).Round(time.Millisecond), interval)

	// Ticks went to every owned partition of the command topic, not only
	// to the one with the command.
	client := &kafka.Client{Addr: kafka.TCP(broker), Transport: &kafka.Transport{}}
	lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		cmdTopic: {kafka.LastOffsetOf(0), kafka.LastOffsetOf(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, po := range lo.Topics[cmdTopic] {
		if po.Partition == part && po.LastOffset < 2 {
			t.Errorf("command partition %d has %d records, want the command and ticks", po.Partition, po.LastOffset)
		} else if po.LastOffset < 1 {
			t.Errorf("partition %d of the command topic has no tick", po.Partition)
		}
	}
	if p, ok := views.Partition("acme"); !ok || p != part {
		t.Errorf("Views.Partition(acme) = %d %v, want %d", p, ok, part)
	}
	stop()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	a, ok, err := store.Account(part, "acme")
	if err != nil || !ok || a.Clock().Before(expiry) {
		t.Fatalf("stored account %v %v: clock %v, want at or after the expiry %s", ok, err, a, expiry)
	}
}
