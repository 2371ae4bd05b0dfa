package prices

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// TestMidStreamPriceChange streams usage through the real Kafka broker
// into a rater while a sync records the real 2025-11-28 → 2026-02-21
// LiteLLM change, and checks under both rollout policies that events
// before the new version's effective time are rated with the old price,
// events after it with the new one as the policy says, and that every
// change event lands on the changes topic.
//
// The numbers: azure_ai/grok-4 went from 5.5 to 3 USD per 1M input tokens
// and from 27.5 to 15 per 1M output tokens. An event of 1,000,000 input
// and 100,000 output tokens costs 8.25 before and 4.5 after; with the
// card's 30% the charge is 10.725 before and 5.85 after.
func TestMidStreamPriceChange(t *testing.T) {
	broker := testenv.Kafka(t)
	oldList := sharedData(t, "litellm_model_prices.2025-11-28.json")
	newList := sharedData(t, "litellm_model_prices.json")
	for _, ro := range []rating.Rollout{rating.RolloutNewCustomersOnly, rating.RolloutAllCustomers} {
		t.Run(RolloutName(ro), func(t *testing.T) { midStream(t, broker, ro, oldList, newList) })
	}
}

type streamed struct {
	cost, charge, priceVersion string
	card                       int
}

func midStream(t *testing.T, broker string, rollout rating.Rollout, oldList, newList []byte) {
	usage, changes := testenv.Name(t, "usage"), testenv.Name(t, "changes")
	testenv.CreateTopics(t, broker, 1, usage)
	testenv.CreateTopics(t, broker, 3, changes)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	t1 := mustTime("2026-02-21T12:00:00Z") // the sync's "now": the new version's effective time
	st := newState(t, openDB(t, ""))
	kn, err := NewKafkaNotifier([]string{broker}, changes, &kafka.Transport{}) // own metadata cache: the topic is seconds old
	if err != nil {
		t.Fatal(err)
	}
	s := newSyncer(t, st, kn)
	defer s.Close()
	syncAt(t, s, time.Time{}, oldList)
	if _, err := st.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("30")}, rollout, t1.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.SetClock(func() time.Time { return t1 })

	// The stream: a producer, and one goroutine that owns the reader and
	// rates every message it fetches, as the pipeline does.
	// A transport of its own: kafka-go's shared default caches topic
	// metadata for seconds, and may have cached "no such topic" from a
	// lookup made before this test created it.
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: usage, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	var seq atomic.Int64
	produce := func(customer string, at time.Time) string {
		id := fmt.Sprintf("ev-%d", seq.Add(1))
		msg := fmt.Sprintf(`{"id":%q,"time":%q,"customer_id":%q,"provider":"azure_ai","model":"grok-4","usage":{"input":1000000,"output":100000}}`,
			id, at.Format(time.RFC3339Nano), customer)
		// A topic just created may not be in every broker's metadata yet:
		// retry the first writes briefly.
		var err error
		for attempt := 0; attempt < 100; attempt++ {
			if err = w.WriteMessages(ctx, kafka.Message{Key: []byte(customer), Value: []byte(msg)}); err == nil {
				return id
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("produce %s: %v", id, err)
		return id
	}
	var mu sync.Mutex
	rated := map[string]streamed{}
	ratedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(rated) }
	dec, err := schemas.DecoderFor("gateway", schemas.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: usage, Partition: 0, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	consumerDone := make(chan error, 1)
	go func() {
		rater := st.NewRater()
		var evs []schemas.UsageEvent
		var out sinks.RatedEvent
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				consumerDone <- err
				return
			}
			if evs, err = dec.Decode(evs[:0], m.Value); err != nil {
				consumerDone <- err
				return
			}
			if err := rater.Rate(&evs[0], &out); err != nil {
				consumerDone <- fmt.Errorf("rate %s: %w", evs[0].ID, err)
				return
			}
			mu.Lock()
			rated[out.Event.ID] = streamed{out.Cost.String(), out.Charge.String(), out.PriceVersion, int(out.RateCardVersion)}
			mu.Unlock()
		}
	}()
	waitRated := func(n int) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for ratedCount() < n {
			select {
			case <-deadline:
				t.Fatalf("%d of %d events rated after 60s", ratedCount(), n)
			case err := <-consumerDone:
				t.Fatalf("consumer stopped: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	before := []string{
		produce("old-co", t1.Add(-3*time.Hour)),
		produce("old-co", t1.Add(-2*time.Hour)),
		produce("old-co", t1.Add(-time.Hour)),
	}
	waitRated(len(before))

	// The sync runs while events keep streaming in (all from before t1,
	// late or not): each must be rated whole with the old price, whichever
	// catalog it meets.
	stopLate := make(chan struct{})
	lateDone := make(chan []string)
	go func() {
		var ids []string
		for {
			select {
			case <-stopLate:
				lateDone <- ids
				return
			case <-time.After(5 * time.Millisecond):
				ids = append(ids, produce("old-co", t1.Add(-time.Minute)))
			}
		}
	}()
	res, err := s.SyncLists(ctx, []List{{Name: "litellm_model_prices.json", Data: newList}}, SyncOptions{})
	close(stopLate)
	late := <-lateDone
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recorded || !res.Version.EffectiveFrom.Equal(t1) || len(res.Undelivered) != 0 {
		t.Fatalf("sync: recorded %v, effective %s, undelivered %v", res.Recorded, res.Version.EffectiveFrom, res.Undelivered)
	}
	oldID, newID := res.Previous.ID, res.Version.ID
	before = append(before, late...)

	afterOld := []string{produce("old-co", t1), produce("old-co", t1.Add(time.Hour))}
	afterNew := []string{produce("new-co", t1.Add(2*time.Hour)), produce("new-co", t1.Add(3*time.Hour))}
	before = append(before, produce("old-co", t1.Add(-time.Second))) // late, after the sync
	waitRated(len(before) + len(afterOld) + len(afterNew))

	oldPrice := streamed{"8.25", "10.725", oldID, 1}
	newPrice := streamed{"4.5", "5.85", newID, 1}
	wantOld, wantNew := newPrice, newPrice
	if rollout == rating.RolloutNewCustomersOnly {
		// The existing customer keeps card version 1 and its prices; the
		// customer who joined after t1 is on version 2, pinned to the new.
		wantOld = oldPrice
		wantNew = streamed{"4.5", "5.85", newID, 2}
	}
	mu.Lock()
	check := func(what string, ids []string, want streamed) {
		t.Helper()
		for _, id := range ids {
			if got := rated[id]; got != want {
				t.Errorf("%s %s: %+v, want %+v", what, id, got, want)
			}
		}
	}
	check("before t1", before, oldPrice)
	check("existing customer after t1", afterOld, wantOld)
	check("new customer after t1", afterNew, wantNew)
	mu.Unlock()
	t.Logf("%d events rated, %d of them while the sync ran", len(before)+len(afterOld)+len(afterNew), len(late))

	// Every change is on the changes topic, once, keyed by model.
	cr := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: changes, GroupID: testenv.Name(t, "g"),
		StartOffset: kafka.FirstOffset, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond})
	defer cr.Close()
	seen := map[string]bool{}
	var grok *ChangeEvent
	for len(seen) < len(res.Changes) {
		m, err := cr.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read changes topic after %d of %d events: %v", len(seen), len(res.Changes), err)
		}
		var e ChangeEvent
		if err := json.Unmarshal(m.Value, &e); err != nil {
			t.Fatal(err)
		}
		if seen[e.ID] {
			t.Errorf("change %s delivered twice", e.ID)
		}
		seen[e.ID] = true
		if string(m.Key) != e.Model || e.VersionID != newID || e.PreviousVersionID != oldID || !e.EffectiveFrom.Equal(t1) {
			t.Errorf("change event: key %q, %+v", m.Key, e)
		}
		if e.Model == "azure_ai/grok-4" && e.UnitName == "input" && e.Condition == "" {
			grok = &e
		}
	}
	if grok == nil || grok.Kind != rating.ChangePriceDown || grok.OldPerMillion != "5.5" || grok.NewPerMillion != "3" || grok.Provider != "azure_ai" {
		t.Errorf("azure_ai/grok-4 input change event: %+v", grok)
	}
	if p, _ := st.Store().Pending(); len(p) != 0 {
		t.Errorf("announcements still queued: %d", len(p))
	}
	t.Logf("%d change events on %s", len(seen), changes)
}
