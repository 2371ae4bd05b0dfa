package sources

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// Group is a consumer-group member that hands out partitions, not messages:
// for each generation it says which partition numbers this instance owns,
// and the caller runs one worker per partition number across all input
// topics. Input topics are co-partitioned by customer id, so partition N of
// every input topic holds the same customers, and one worker sees all of a
// customer's usage, whichever topic it came through: that is what makes
// deduplication across topics possible.
type Group struct {
	cfg Config
	cg  *kafka.ConsumerGroup
	log zerolog.Logger
}

// NewGroup joins the group lazily (on the first Next). It fails when the
// input topics are not co-partitioned (different partition counts): a
// customer's events would then land on different workers.
func NewGroup(ctx context.Context, cfg Config, log zerolog.Logger) (*Group, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := cfg.PartitionCount(ctx); err != nil {
		return nil, err
	}
	dialer, err := cfg.Security.Dialer()
	if err != nil {
		return nil, err
	}
	log = log.With().Str("component", "group").Logger()
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:      cfg.GroupID,
		Brokers: cfg.Brokers,
		Dialer:  dialer,
		Topics:  cfg.TopicNames(),
		// Range assigns partition N of every topic to the same member when
		// the topics have equal partition counts; round-robin would not.
		GroupBalancers:        []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
		StartOffset:           kafka.FirstOffset,
		SessionTimeout:        cfg.SessionTimeout,
		RebalanceTimeout:      cfg.SessionTimeout,
		HeartbeatInterval:     cfg.SessionTimeout / 10,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Debug().Msgf(msg, args...)
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("join consumer group %s: %w", cfg.GroupID, err)
	}
	return &Group{cfg: cfg, cg: cg, log: log}, nil
}

// TopicNames returns the input topics in a stable order.
func (c *Config) TopicNames() []string {
	out := make([]string, 0, len(c.Topics))
	for t := range c.Topics {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// PartitionCount returns the partition count shared by all input topics,
// or an error naming the topics whose counts differ or that do not exist.
func (c *Config) PartitionCount(ctx context.Context) (int, error) {
	brokers, topics := c.Brokers, c.TopicNames()
	rt, err := c.Security.RoundTripper()
	if err != nil {
		return 0, err
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: rt}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return 0, fmt.Errorf("read metadata of %v from %v: %w", topics, brokers, err)
	}
	counts := map[string]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return 0, fmt.Errorf("topic %s: %w (create the input topics, co-partitioned, before starting)", t.Name, t.Error)
		}
		counts[t.Name] = len(t.Partitions)
	}
	n := -1
	var desc []string
	same := true
	for _, t := range topics {
		c, ok := counts[t]
		if !ok || c == 0 {
			return 0, fmt.Errorf("topic %s does not exist (create the input topics, co-partitioned, before starting)", t)
		}
		desc = append(desc, fmt.Sprintf("%s has %d", t, c))
		if n >= 0 && c != n {
			same = false
		}
		n = c
	}
	if !same {
		return 0, fmt.Errorf("input topics are not co-partitioned (%s partitions): every input topic needs the same partition count, with messages keyed by customer id, so that one worker sees all of a customer's usage", strings.Join(desc, ", "))
	}
	return n, nil
}

// Generation is one assignment of partitions to this member.
type Generation struct {
	gen *kafka.Generation
	// ID is the group generation; it increases with every rebalance and
	// fences state written by an older owner of a partition.
	ID int32
	// Partitions are the partition numbers this member owns, in order.
	Partitions []int
	// Committed holds, per topic and partition, the group's committed
	// offset (or kafka.FirstOffset when none).
	Committed map[string]map[int]int64
}

// Next blocks until the next generation; it returns an error when ctx ends
// or the group is closed, or when the assignment breaks co-partitioning.
//
// kafka-go reports the group's transient errors through Next too (a
// rebalance in progress while dead members time out, a coordinator that
// moved) and keeps rejoining by itself; those are logged and waited out,
// never returned: returning them would stop an instance that a restart
// after a crash puts in exactly that situation.
func (g *Group) Next(ctx context.Context) (*Generation, error) {
	var gen *kafka.Generation
	for {
		var err error
		gen, err = g.cg.Next(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
			return nil, err
		}
		g.log.Warn().Err(err).Msg("consumer group not ready; rejoining")
		select { // kafka-go backs off itself; this only bounds a busy loop
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	out := &Generation{gen: gen, ID: gen.ID, Committed: map[string]map[int]int64{}}
	seen := map[int]int{}
	for topic, parts := range gen.Assignments {
		m := map[int]int64{}
		for _, p := range parts {
			m[p.ID] = p.Offset
			seen[p.ID]++
		}
		out.Committed[topic] = m
	}
	for p, n := range seen {
		if n != len(g.cfg.Topics) {
			// Range assignment of equal partition counts never does this;
			// a mismatch means partitions were added to some topics only.
			return nil, fmt.Errorf("generation %d assigns partition %d of %d topics out of %d: input topics are no longer co-partitioned", gen.ID, p, n, len(g.cfg.Topics))
		}
		out.Partitions = append(out.Partitions, p)
	}
	sort.Ints(out.Partitions)
	g.log.Info().Int32("generation", gen.ID).Ints("partitions", out.Partitions).Msg("partitions assigned")
	return out, nil
}

// Start runs fn until the generation ends; ctx is cancelled then. The
// group does not join the next generation until every fn has returned.
func (gn *Generation) Start(fn func(ctx context.Context)) { gn.gen.Start(fn) }

// Commit commits next offsets of one partition number for several topics.
// It fails once the generation has ended; that is harmless, since state in
// the store says what was applied.
func (gn *Generation) Commit(partition int, next map[string]int64) error {
	offs := make(map[string]map[int]int64, len(next))
	for t, o := range next {
		offs[t] = map[int]int64{partition: o}
	}
	return gn.gen.CommitOffsets(offs)
}

// Close leaves the group.
func (g *Group) Close() error { return g.cg.Close() }

// PartitionSource reads partition N of every input topic, starting at given
// offsets, and hands out batches. One goroutine per topic fetches; Fetch
// gathers their messages.
type PartitionSource struct {
	cfg     Config
	readers []*kafka.Reader
	ch      chan fetched
	cancel  context.CancelFunc
	done    chan struct{}
}

type fetched struct {
	m   kafka.Message
	err error
}

// NewPartitionSource reads partition of each topic from start[topic]
// (kafka.FirstOffset when absent).
func NewPartitionSource(cfg Config, partition int, start map[string]int64) (*PartitionSource, error) {
	cfg.SetDefaults()
	dialer, err := cfg.Security.Dialer()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	// The fan-in buffer and each reader's queue bound the memory a
	// partition holds beyond the batch in hand: a fetched message waits in
	// one of them until the processor takes it.
	s := &PartitionSource{cfg: cfg, ch: make(chan fetched, 1024), cancel: cancel, done: make(chan struct{})}
	remaining := len(cfg.Topics)
	finished := make(chan struct{}, remaining)
	for _, topic := range cfg.TopicNames() {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:   cfg.Brokers,
			Topic:     topic,
			Partition: partition,
			Dialer:    dialer,
			MinBytes:  1,
			MaxBytes:  4 << 20,
			MaxWait:   100 * time.Millisecond,
			// Without a group the reader keeps no offsets: it starts where it
			// is told, and the caller stores what it applied.
			QueueCapacity: 512,
		})
		off, ok := start[topic]
		if !ok {
			off = kafka.FirstOffset
		}
		if err := r.SetOffset(off); err != nil {
			cancel()
			return nil, fmt.Errorf("start %s/%d at %d: %w", topic, partition, off, err)
		}
		s.readers = append(s.readers, r)
		go func() {
			defer func() { finished <- struct{}{} }()
			for {
				m, err := r.FetchMessage(ctx)
				if ctx.Err() != nil {
					return
				}
				select {
				case s.ch <- fetched{m, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					// Transient read errors are retried by the reader; back
					// off so an unreachable broker is not spun on.
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	go func() {
		for i := 0; i < remaining; i++ {
			<-finished
		}
		close(s.done)
	}()
	return s, nil
}

// Fetch fills b: it blocks for the first message, then gathers more until
// MaxBatchMessages, MaxBatchBytes or MaxBatchWait. It returns ctx's error
// only when b is empty.
func (s *PartitionSource) Fetch(ctx context.Context, b *Batch) error {
	b.Reset()
	for len(b.Messages) == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f := <-s.ch:
			if f.err != nil {
				return fmt.Errorf("fetch from kafka: %w", f.err)
			}
			b.Messages = append(b.Messages, f.m)
			b.Bytes += len(f.m.Value)
		}
	}
	t := time.NewTimer(s.cfg.MaxBatchWait)
	defer t.Stop()
	for len(b.Messages) < s.cfg.MaxBatchMessages && b.Bytes < s.cfg.MaxBatchBytes {
		select {
		case f := <-s.ch:
			if f.err != nil {
				return nil // deliver what we have; the error repeats on the next fetch
			}
			b.Messages = append(b.Messages, f.m)
			b.Bytes += len(f.m.Value)
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// Lag returns the summed lag of the partition's readers as last seen.
func (s *PartitionSource) Lag() int64 {
	var lag int64
	for _, r := range s.readers {
		if l := r.Stats().Lag; l > 0 {
			lag += l
		}
	}
	return lag
}

// Close stops the fetchers and closes the readers. Messages fetched and
// not yet handed out are dropped; they were not applied, and the next owner
// starts from the stored offsets.
func (s *PartitionSource) Close() error {
	s.cancel()
	<-s.done
	var errs []error
	for _, r := range s.readers {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}
