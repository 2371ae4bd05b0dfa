// Command kafkacheck proves that a Kafka broker serves the way the pipeline
// uses it: a topic can be created, a message produced with acks=all, and read
// back through a consumer group with FetchMessage + explicit CommitMessages.
// scripts/kafka.sh runs it until it passes before it reports the broker ready;
// a broker whose port is open but whose group coordinator is not yet loaded
// would otherwise make the first integration test flaky.
//
// Default mode (one reader, fixed topic and group so repeated runs do not pile
// up topics in the data dir):
//
//	kafkacheck -brokers 127.0.0.1:9092
//
// Group mode (-readers 2 -partitions 4 [-stagger 2s]): a fresh topic and
// group, two readers in one group (the second joining late with -stagger, so
// the live group rebalances), messages produced until both readers own
// partitions and every message was consumed. It checks that kafka-go's group protocol (JoinGroup,
// SyncGroup, Heartbeat, rebalance) works against this broker version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

func main() {
	var (
		brokers    = flag.String("brokers", envOr("KAFKA_BROKERS", "127.0.0.1:9092"), "comma-separated bootstrap addresses")
		timeout    = flag.Duration("timeout", 30*time.Second, "give up after this long")
		readers    = flag.Int("readers", 1, "consumer-group members; >1 runs the group-coordination check on a fresh topic")
		partitions = flag.Int("partitions", 1, "partitions of the topic created for the check")
		stagger    = flag.Duration("stagger", 0, "group mode: start reader i after i*stagger, forcing a rebalance of a live group")
		verbose    = flag.Bool("v", false, "log kafka-go errors to stderr")
	)
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	c := checker{brokers: strings.Split(*brokers, ","), verbose: *verbose, stagger: *stagger}
	var err error
	if *readers <= 1 {
		err = c.single(ctx, "_tariff_kafkacheck", "_tariff_kafkacheck", *partitions)
	} else {
		suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
		err = c.group(ctx, "_tariff_kafkacheck_group_"+suffix, "_tariff_kafkacheck_group_"+suffix, *partitions, *readers)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkacheck: %v\n", err)
		os.Exit(1)
	}
}

type checker struct {
	brokers []string
	verbose bool
	stagger time.Duration
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// ensureTopic creates topic on the controller; an existing topic is fine.
func (c checker) ensureTopic(ctx context.Context, topic string, partitions int) error {
	var d kafka.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.brokers[0])
	if err != nil {
		return fmt.Errorf("dial %s: %w", c.brokers[0], err)
	}
	defer conn.Close()
	ctl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("find controller: %w", err)
	}
	cc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ctl.Host, strconv.Itoa(ctl.Port)))
	if err != nil {
		return fmt.Errorf("dial controller %s:%d: %w", ctl.Host, ctl.Port, err)
	}
	defer cc.Close()
	err = cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

func (c checker) writer(topic string) *kafka.Writer {
	w := &kafka.Writer{
		Addr:         kafka.TCP(c.brokers...),
		Topic:        topic,
		Balancer:     &kafka.RoundRobin{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
	}
	if c.verbose {
		w.ErrorLogger = kafka.LoggerFunc(c.logf("writer"))
	}
	return w
}

func (c checker) reader(topic, group, name string) *kafka.Reader {
	cfg := kafka.ReaderConfig{
		Brokers:           c.brokers,
		Topic:             topic,
		GroupID:           group,
		StartOffset:       kafka.FirstOffset,
		CommitInterval:    0, // synchronous commits, as the pipeline does
		MinBytes:          1,
		MaxBytes:          1 << 20,
		MaxWait:           250 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  250 * time.Millisecond,
		ReadLagInterval:   -1,
	}
	if c.verbose {
		cfg.ErrorLogger = kafka.LoggerFunc(c.logf(name))
	}
	return kafka.NewReader(cfg)
}

func (c checker) logf(name string) func(string, ...any) {
	return func(f string, a ...any) { fmt.Fprintf(os.Stderr, name+": "+f+"\n", a...) }
}

// single produces one message with a unique value and reads the group's
// topic until that value comes back, committing each message on the way, so
// leftovers of an earlier failed run are consumed and do not fool the check.
func (c checker) single(ctx context.Context, topic, group string, partitions int) error {
	if err := c.ensureTopic(ctx, topic, partitions); err != nil {
		return err
	}
	want := "ping-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	w := c.writer(topic)
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(want)}); err != nil {
		w.Close()
		return fmt.Errorf("produce to %s: %w", topic, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("close writer: %w", err)
	}

	r := c.reader(topic, group, "reader")
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("fetch from %s as group %s: %w", topic, group, err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			return fmt.Errorf("commit %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
		}
		if string(m.Value) == want {
			fmt.Printf("kafkacheck: ok: produced, fetched and committed %s/%d@%d\n", m.Topic, m.Partition, m.Offset)
			return nil
		}
	}
}

// group runs n readers in one group on a fresh topic. A producer writes a
// round of one message per partition every 100ms until every reader has
// received messages and every partition was read, then stops; the check
// passes once every produced value was fetched and committed. Duplicates
// (re-delivery across a rebalance) are reported, not failed: the pipeline is
// at-least-once by design.
func (c checker) group(ctx context.Context, topic, group string, partitions, n int) error {
	if partitions < n {
		return fmt.Errorf("partitions = %d, want at least readers = %d so every reader can own one", partitions, n)
	}
	if err := c.ensureTopic(ctx, topic, partitions); err != nil {
		return err
	}

	var (
		mu       sync.Mutex
		seen     = map[string]int{}       // value -> times fetched
		owned    = make([]map[int]int, n) // reader -> partition -> messages
		produced int
		stopProd = make(chan struct{})
	)
	for i := range owned {
		owned[i] = map[int]int{}
	}
	allOwned := func() bool {
		parts := map[int]bool{}
		for _, o := range owned {
			if len(o) == 0 {
				return false
			}
			for p := range o {
				parts[p] = true
			}
		}
		return len(parts) == partitions
	}

	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	errc := make(chan error, n+1)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			select {
			case <-time.After(time.Duration(i) * c.stagger):
			case <-rctx.Done():
				return
			}
			r := c.reader(topic, group, fmt.Sprintf("reader%d", i))
			defer r.Close()
			for {
				m, err := r.FetchMessage(rctx)
				if err != nil {
					if rctx.Err() == nil {
						errc <- fmt.Errorf("reader%d fetch: %w", i, err)
					}
					return
				}
				if err := r.CommitMessages(rctx, m); err != nil {
					if rctx.Err() == nil {
						errc <- fmt.Errorf("reader%d commit %d@%d: %w", i, m.Partition, m.Offset, err)
					}
					return
				}
				mu.Lock()
				seen[string(m.Value)]++
				owned[i][m.Partition]++
				mu.Unlock()
			}
		}(i)
	}

	w := c.writer(topic)
	defer w.Close()
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for round := 0; ; round++ {
			select {
			case <-stopProd:
				errc <- nil
				return
			case <-rctx.Done():
				return
			case <-tick.C:
			}
			msgs := make([]kafka.Message, partitions)
			for p := range msgs {
				msgs[p] = kafka.Message{Value: []byte(fmt.Sprintf("r%d-m%d", round, p))}
			}
			if err := w.WriteMessages(rctx, msgs...); err != nil {
				if rctx.Err() == nil {
					errc <- fmt.Errorf("produce round %d: %w", round, err)
				}
				return
			}
			mu.Lock()
			produced += len(msgs)
			mu.Unlock()
		}
	}()

	start := time.Now()
	stopped := false
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case err := <-errc:
			if err != nil {
				return err
			}
			continue // producer stopped cleanly
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			return fmt.Errorf("timed out: produced %d, distinct fetched %d, per-reader partitions %v", produced, len(seen), owned)
		case <-poll.C:
		}
		mu.Lock()
		if !stopped && allOwned() {
			close(stopProd)
			stopped = true
		}
		done := stopped && produced > 0 && len(seen) == produced
		var dups int
		for _, k := range seen {
			dups += k - 1
		}
		summary := describe(owned)
		total := produced
		mu.Unlock()
		if done {
			rcancel()
			wg.Wait()
			fmt.Printf("kafkacheck: ok: group %s, %d readers on %d partitions, %d messages fetched+committed, %d duplicates, %s, in %s\n",
				group, n, partitions, total, dups, summary, time.Since(start).Round(time.Millisecond))
			return nil
		}
	}
}

func describe(owned []map[int]int) string {
	parts := make([]string, len(owned))
	for i, o := range owned {
		ps := make([]int, 0, len(o))
		for p := range o {
			ps = append(ps, p)
		}
		sort.Ints(ps)
		parts[i] = fmt.Sprintf("reader%d partitions %v", i, ps)
	}
	return strings.Join(parts, "; ")
}
