package pipeline

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/testenv"
)

// TestPartitionOfMatchesHashBalancer: the partition the admin API forwards
// by is the one kafka-go's Hash balancer picks, for many keys and counts.
func TestPartitionOfMatchesHashBalancer(t *testing.T) {
	keys := []string{"", "a", "acme", "globex", "ünïcode", "customer with spaces", string(make([]byte, 300))}
	for i := range 5000 {
		keys = append(keys, fmt.Sprintf("cust-%d", i), fmt.Sprintf("%x", i*7919))
	}
	spread := map[int]bool{}
	for n := 1; n <= 64; n++ {
		parts := make([]int, n)
		for i := range parts {
			parts[i] = i
		}
		h := &kafka.Hash{}
		for _, k := range keys {
			if k == "" {
				continue // no key: kafka-go round-robins; customers always have an id
			}
			want := h.Balance(kafka.Message{Key: []byte(k)}, parts...)
			if got := PartitionOf(k, n); got != want {
				t.Fatalf("PartitionOf(%q, %d) = %d, kafka.Hash puts it on %d", k, n, got, want)
			}
			if n == 16 {
				spread[want] = true
			}
		}
	}
	if len(spread) != 16 {
		t.Fatalf("keys reached %d of 16 partitions: the test keys do not exercise the modulo", len(spread))
	}
}

// TestPartitionOfMatchesWriter: where a kafka-go writer with the Hash
// balancer actually puts keys on a real topic.
func TestPartitionOfMatchesWriter(t *testing.T) {
	broker := testenv.Kafka(t)
	topic := testenv.Name(t, "owners-hash")
	const n = 5
	testenv.CreateTopics(t, broker, n, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.Hash{}, Transport: &kafka.Transport{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	var msgs []kafka.Message
	for i := range 200 {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("customer-%d", i)), Value: []byte("x")})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for p := range n {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		end, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		for range end {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := PartitionOf(string(m.Key), n); got != p {
				t.Errorf("key %s is on partition %d, PartitionOf says %d", m.Key, p, got)
			}
			seen++
		}
		r.Close()
	}
	if seen != len(msgs) {
		t.Fatalf("read %d messages back, wrote %d", seen, len(msgs))
	}
}

func testOwners(t *testing.T, partitions int) *Owners {
	t.Helper()
	o, err := NewOwners([]string{"127.0.0.1:1"}, "g.owners", nil, partitions, "me", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestOwnersFencing: the highest generation wins; a late claim of an older
// generation is ignored unless it comes long after (a group started over).
func TestOwnersFencing(t *testing.T) {
	o := testOwners(t, 4)
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	apply := func(gen int32, inst string, at time.Time) {
		o.mu.Lock()
		o.applyLocked(Owner{Partition: 1, Generation: gen, Instance: inst, URL: "http://" + inst, at: at})
		o.mu.Unlock()
	}
	check := func(want string) {
		t.Helper()
		if ow, ok := o.Owner(1); !ok || ow.Instance != want {
			t.Fatalf("owner of partition 1: %+v (%v), want %s", ow, ok, want)
		}
	}
	apply(5, "a", t0)
	check("a")
	apply(7, "b", t0.Add(time.Second))
	check("b")
	apply(6, "a", t0.Add(2*time.Second)) // a zombie's late claim
	check("b")
	apply(7, "b", t0.Add(3*time.Second)) // the same claim again
	check("b")
	apply(2, "c", t0.Add(3*time.Second+ownerResetAfter/2)) // still fenced
	check("b")
	apply(2, "c", t0.Add(3*time.Second+ownerResetAfter)) // the group started over
	check("c")
}

// TestOwnersLocate: local partitions answer here, others name their owner
// or say why none can be asked.
func TestOwnersLocate(t *testing.T) {
	const n = 4
	o := testOwners(t, n)
	o.SetURL("http://me:1")
	keyOn := func(p int) string {
		for i := 0; ; i++ {
			if k := fmt.Sprint("c", i); PartitionOf(k, n) == p {
				return k
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // claim's publish gives up at once: no broker here
	o.claim(ctx, 0, 3)
	if ow, local, err := o.Locate(keyOn(0)); err != nil || !local || ow.Partition != 0 {
		t.Fatalf("own partition: %+v %v %v, want local", ow, local, err)
	}
	o.mu.Lock()
	o.applyLocked(Owner{Partition: 1, Generation: 3, Instance: "other", URL: "http://other:1"})
	o.applyLocked(Owner{Partition: 2, Generation: 3, Instance: "wild"})
	o.mu.Unlock()
	if ow, local, err := o.Locate(keyOn(1)); err != nil || local || ow.URL != "http://other:1" {
		t.Fatalf("other's partition: %+v %v %v, want other's URL", ow, local, err)
	}
	if _, _, err := o.Locate(keyOn(2)); !errors.Is(err, ErrNoURL) {
		t.Fatalf("owner without URL: %v, want ErrNoURL", err)
	}
	if _, _, err := o.Locate(keyOn(3)); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("unclaimed partition: %v, want ErrNoOwner", err)
	}
	o.release(0)
	if _, local, err := o.Locate(keyOn(0)); local || !errors.Is(err, ErrMoving) {
		t.Fatalf("released partition: local=%v %v, want ErrMoving", local, err)
	}
}

// TestOwnersTopic: claims published by two instances reach each other's
// maps through the real topic.
func TestOwnersTopic(t *testing.T) {
	broker := testenv.Kafka(t)
	topic := OwnersTopic(testenv.Name(t, "owners"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mk := func(id string) *Owners {
		o, err := NewOwners([]string{broker}, topic, &kafka.Transport{}, 4, id, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if err := o.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		o.SetURL("http://" + id)
		return o
	}
	a, b := mk("a"), mk("b")
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go a.Run(rctx)
	go b.Run(rctx)
	a.claim(rctx, 0, 1)
	a.claim(rctx, 1, 1)
	b.claim(rctx, 2, 1)
	b.claim(rctx, 3, 1)
	b.claim(rctx, 1, 2) // moved to b in generation 2
	want := map[int]string{0: "http://a", 1: "http://b", 2: "http://b", 3: "http://b"}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		done := true
		for _, o := range []*Owners{a, b} {
			for p, u := range want {
				if ow, ok := o.Owner(p); !ok || ow.URL != u {
					done = false
				}
			}
		}
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, o := range []*Owners{a, b} {
		for p, u := range want {
			if ow, ok := o.Owner(p); !ok || ow.URL != u {
				t.Errorf("%s sees partition %d owned by %+v (%v), want %s", o.Instance(), p, ow, ok, u)
			}
		}
	}
}
