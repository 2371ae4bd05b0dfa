package prices

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
	"github.com/tariff-dev/tariff/sinks"
)

// TestSharedPricesOnBroker: two instances, each with its own Badger
// store, share one price-state topic on the real broker. A rate card set
// through one is in force in the other within a second, and a price
// version recorded by one's sync is rated identically by the other.
func TestSharedPricesOnBroker(t *testing.T) {
	broker := testenv.Kafka(t)
	topic := testenv.Name(t, "prices")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	instance := func() (*State, *Follower) {
		// A transport of its own: the topic is seconds old, and the shared
		// default caches metadata.
		kl, err := NewKafkaLog([]string{broker}, topic, &kafka.Transport{})
		if err != nil {
			t.Fatal(err)
		}
		if err := kl.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		st := newState(t, openDB(t, ""))
		f, err := NewFollower(kl, topic, st, FollowerOptions{}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Start(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		runCtx, stop := context.WithCancel(ctx)
		go func() { done <- f.Run(runCtx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("follower: %v", err)
			}
		})
		return st, f
	}
	a, fa := instance()
	b, fb := instance()

	// The topic as Ensure made it: compacted, messages of a full price
	// list allowed.
	client := &kafka.Client{Addr: kafka.TCP(broker), Transport: &kafka.Transport{}, Timeout: 10 * time.Second}
	dc, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy", "max.message.bytes"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range dc.Resources {
		for _, e := range r.ConfigEntries {
			got[e.ConfigName] = e.ConfigValue
		}
	}
	if got["cleanup.policy"] != "compact" || got["max.message.bytes"] != "67108864" {
		t.Errorf("price-state topic configs %v, expected cleanup.policy=compact, max.message.bytes=67108864", got)
	}

	within := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in force in the other instance within 1s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// The first version, then a card, through a.
	sa := newSyncer(t, a)
	syncAt(t, sa, time.Time{}, listA)
	first := a.Catalog().Book.Versions()[0].ID
	within("first price version", func() bool {
		vs := b.Catalog().Book.Versions()
		return len(vs) == 1 && vs[0].ID == first
	})
	if _, err := a.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("30")}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		t.Fatal(err)
	}
	within("rate card default", func() bool {
		c := b.Catalog()
		return c.DefaultCard == "default" && c.Cards["default"] != nil
	})
	// A card edit through b reaches a the same way.
	if _, err := b.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("40")}, rating.RolloutAllCustomers, mustTime("2026-01-01T00:00:00Z")); err != nil {
		t.Fatal(err)
	}
	within("rate card default version 2", func() bool {
		c := a.Catalog().Cards["default"]
		return c != nil && len(c.Versions) == 2
	})

	// A sync recorded by a, "now" = t1: b rates an event after t1 exactly
	// as a does.
	t1 := mustTime("2026-03-01T12:00:00Z")
	sa.SetClock(func() time.Time { return t1 })
	res := syncAt(t, sa, time.Time{}, listB)
	if !res.Recorded {
		t.Fatal("the sync recorded nothing")
	}
	within("price version "+res.Version.ID, func() bool {
		return b.Catalog().Book.VersionAt(t1) != nil && b.Catalog().Book.VersionAt(t1).ID == res.Version.ID
	})
	at := t1.Add(time.Minute)
	var ra, rb sinks.RatedEvent
	if err := a.NewRater().Rate(ev("e1", "cust", "m1", at, 1_000_000, 1_000_000), &ra); err != nil {
		t.Fatal(err)
	}
	if err := b.NewRater().Rate(ev("e1", "cust", "m1", at, 1_000_000, 1_000_000), &rb); err != nil {
		t.Fatal(err)
	}
	if ra.Charge.String() != rb.Charge.String() || ra.Cost.String() != rb.Cost.String() || ra.PriceVersion != rb.PriceVersion {
		t.Errorf("a: charge %s cost %s version %s; b: charge %s cost %s version %s", ra.Charge, ra.Cost, ra.PriceVersion, rb.Charge, rb.Cost, rb.PriceVersion)
	}
	// listB's m1: 2 + 2 USD for 1M + 1M tokens, card version 2's 40%.
	if ra.Charge.String() != "5.6" || ra.PriceVersion != res.Version.ID {
		t.Errorf("charge %s with %s, expected 5.6 with %s", ra.Charge, ra.PriceVersion, res.Version.ID)
	}
	if fa.Refused()+fb.Refused() != 0 {
		t.Errorf("refused %d, %d writes: expected none", fa.Refused(), fb.Refused())
	}

	// A third instance started now (a new one, or one the group scaled
	// up) catches up with the whole history before it rates.
	c, _ := instance()
	if got, want := ids(c.Catalog().Book.Versions()), ids(a.Catalog().Book.Versions()); len(got) != 2 || got[1] != want[1] {
		t.Errorf("new instance has versions %v, expected %v", got, want)
	}
}

// TestSharedFullPriceListOnBroker: an instance upgraded from before
// sharing, holding the full bundled LiteLLM map (a record of megabytes),
// seeds the empty topic, and a new instance rates with the same version.
func TestSharedFullPriceListOnBroker(t *testing.T) {
	broker := testenv.Kafka(t)
	topic := testenv.Name(t, "prices")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	old := newState(t, openDB(t, ""))
	syncAt(t, newSyncer(t, old), time.Time{}, bundled.LiteLLM)
	data, err := rating.MarshalVersion(old.Catalog().Book.Versions()[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one price version of the bundled map: %d bytes", len(data))

	join := func(st *State) *Follower {
		kl, err := NewKafkaLog([]string{broker}, topic, &kafka.Transport{})
		if err != nil {
			t.Fatal(err)
		}
		if err := kl.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		f, err := NewFollower(kl, topic, st, FollowerOptions{}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return f
	}
	join(old)
	fresh := newState(t, openDB(t, ""))
	join(fresh)
	if got, want := ids(fresh.Catalog().Book.Versions()), ids(old.Catalog().Book.Versions()); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("new instance has versions %v, expected %v", got, want)
	}
}
