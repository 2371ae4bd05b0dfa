package loadgen

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/tariff-dev/tariff/pipeline/testenv"
)

type testLog struct{ t *testing.T }

// dropTopicsAtEnd deletes the test's topics when it ends: a publish
// benchmark leaves a gigabyte on the shared broker otherwise.
func dropTopicsAtEnd(tb testing.TB, broker string, topics ...string) {
	tb.Cleanup(func() {
		conn, err := kafka.Dial("tcp", broker)
		if err != nil {
			tb.Logf("delete topics %v: %v", topics, err)
			return
		}
		defer conn.Close()
		ctrl, err := conn.Controller()
		if err != nil {
			tb.Logf("delete topics %v: %v", topics, err)
			return
		}
		cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
		if err != nil {
			tb.Logf("delete topics %v: %v", topics, err)
			return
		}
		defer cc.Close()
		if err := cc.DeleteTopics(topics...); err != nil {
			tb.Logf("delete topics %v: %v", topics, err)
		}
	})
}

func (w testLog) Write(p []byte) (int, error) { w.t.Logf("%s", p); return len(p), nil }

// readTopic reads every message of every partition of topic.
func readTopic(t *testing.T, ctx context.Context, broker, topic string) []kafka.Message {
	t.Helper()
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatalf("read partitions of %s: %v", topic, err)
	}
	var out []kafka.Message
	for _, p := range parts {
		// A broker busy with other tests' topics answers "not leader"
		// now and then while metadata settles: retry briefly.
		var first, last int64
		for attempt := 0; ; attempt++ {
			lc, err := kafka.DialLeader(ctx, "tcp", broker, topic, p.ID)
			if err == nil {
				first, last, err = lc.ReadOffsets()
				lc.Close()
			}
			if err == nil {
				break
			}
			if attempt == 10 {
				t.Fatalf("read offsets of %s/%d: %v", topic, p.ID, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if first == last {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p.ID, MinBytes: 1, MaxBytes: 10 << 20,
			// Short long-polls: Close waits for the prefetch running past the end.
			MaxWait: 200 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			t.Fatalf("seek %s/%d: %v", topic, p.ID, err)
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d at offset after %d (of %d..%d): %v", topic, p.ID, len(out), first, last, err)
			}
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

// TestPublishToKafka publishes 10,000 messages to the real broker, reads
// every topic back, and checks the counts per topic, that a customer's
// messages share one partition number across the co-partitioned topics,
// and that the messages read back rate to exactly the expected totals.
func TestPublishToKafka(t *testing.T) {
	broker := testenv.Kafka(t)
	name := testenv.Name(t, "lg")
	topics := Topics{Gateway: name + "_gw", Partner: name + "_partner", Meter: name + "_meter", DeadLetter: name + "_dlq"}
	const partitions = 4
	testenv.CreateTopics(t, broker, partitions, topics.Gateway, topics.Partner, topics.Meter)
	dropTopicsAtEnd(t, broker, topics.Gateway, topics.Partner, topics.Meter)

	cfg := DefaultConfig()
	cfg.Seed, cfg.Events, cfg.Start, cfg.Markup = 5, 10_000, testStart, "30"
	cfg.Topics = topics
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stats, err := Publish(ctx, g, PublishConfig{Brokers: []string{broker}, Progress: testLog{t}, ProgressInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	exp := g.Expected()
	t.Logf("published %d messages (%.1f MB) in %s: %.0f msg/s", stats.Messages, float64(stats.Bytes)/1e6, stats.Elapsed, stats.Rate())
	if !exp.Complete || stats.Messages != int64(cfg.Events) {
		t.Fatalf("published %d of %d messages (complete %v)", stats.Messages, cfg.Events, exp.Complete)
	}

	var all []kafka.Message
	partOf := map[string]int{}
	for _, tp := range []string{topics.Gateway, topics.Partner, topics.Meter} {
		t0 := time.Now()
		msgs := readTopic(t, ctx, broker, tp)
		t.Logf("read %d messages of %s in %s", len(msgs), tp, time.Since(t0).Round(time.Millisecond))
		if int64(len(msgs)) != exp.Counts.MessagesByTopic[tp] || int64(len(msgs)) != stats.ByTopic[tp] {
			t.Errorf("topic %s holds %d messages, expected %d", tp, len(msgs), exp.Counts.MessagesByTopic[tp])
		}
		for _, m := range msgs {
			k := string(m.Key)
			if p, ok := partOf[k]; ok && p != m.Partition {
				t.Fatalf("customer %s is in partition %d of one topic and %d of another", k, p, m.Partition)
			}
			partOf[k] = m.Partition
		}
		all = append(all, msgs...)
	}
	i := 0
	obs, dead, accepted, dups := observe(t, topics, cfg.Markup, func() (string, []byte, bool) {
		if i == len(all) {
			return "", nil, false
		}
		i++
		return all[i-1].Topic, all[i-1].Value, true
	})
	diffs, err := exp.Compare(obs)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Fatalf("%d totals read back from Kafka differ from the expectation:\n%s", len(diffs), Summarize(diffs, 20))
	}
	c := exp.Counts
	if int64(dead) != c.Malformed || int64(accepted) != c.Events || int64(dups) != c.DuplicateEvents {
		t.Fatalf("read back: %d dead-lettered, %d accepted, %d duplicate events; expected %d, %d, %d", dead, accepted, dups, c.Malformed, c.Events, c.DuplicateEvents)
	}
	t.Log(fmt.Sprintf("read back %d messages from %d topics: %d events, %d duplicates ignored, %d dead-lettered, charge %s",
		len(all), 3, accepted, dups, dead, exp.Charge))
}
