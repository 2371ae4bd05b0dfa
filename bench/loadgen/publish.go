package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/ops/progress"
)

// PublishConfig configures Publish. Zero fields take the defaults noted.
type PublishConfig struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// Rate is the target in messages per second; 0 publishes as fast as
	// the broker acknowledges.
	Rate float64
	// BatchSize is the most messages per produce request per partition.
	// Default 1000.
	BatchSize int
	// BatchBytes bounds a produce request per partition. Default 1 MiB
	// (the broker's default message.max.bytes is just above it).
	BatchBytes int64
	// BatchTimeout is how long a partial batch waits for more messages.
	// Default 5ms.
	BatchTimeout time.Duration
	// MaxInFlightBytes bounds the bytes handed to the writer and not yet
	// acknowledged: the generator waits beyond it. Default 64 MiB.
	MaxInFlightBytes int64
	// Compression of produce batches. Default none (a local broker gains
	// nothing from it).
	Compression kafka.Compression
	// Progress receives progress reports; nil for none. On a terminal it
	// is one line redrawn in place, otherwise a plain line per interval.
	Progress io.Writer
	// ProgressInterval is the time between reports. Default 250ms on a
	// terminal, 5s otherwise.
	ProgressInterval time.Duration
}

func (c *PublishConfig) withDefaults() {
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 1 << 20
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = 5 * time.Millisecond
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = 64 << 20
	}
}

// Validate reports every bad field.
func (c *PublishConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("Brokers: empty: expected at least one bootstrap address"))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("Rate: %v: expected messages per second, or 0 for as fast as possible", c.Rate))
	}
	if c.BatchSize < 0 || c.BatchBytes < 0 || c.BatchTimeout < 0 || c.MaxInFlightBytes < 0 {
		errs = append(errs, fmt.Errorf("batching: size %d, bytes %d, timeout %s, in flight %d: expected non-negative values", c.BatchSize, c.BatchBytes, c.BatchTimeout, c.MaxInFlightBytes))
	}
	return errors.Join(errs...)
}

// PublishStats says what Publish got acknowledged.
type PublishStats struct {
	Messages int64
	Bytes    int64 // key and value bytes
	Elapsed  time.Duration
	ByTopic  map[string]int64
}

// Rate is acknowledged messages per second.
func (s PublishStats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Messages) / s.Elapsed.Seconds()
}

// Publish produces the rest of g's stream to Kafka: keyed by customer id,
// hash-partitioned (kafka-go's Hash balancer, the same for every topic, so
// the input topics stay co-partitioned when they have the same partition
// count), acks=all, batched. It returns once every message is acknowledged,
// or at the first failure. Topics must exist (see EnsureTopics).
//
// Delivery is at least once: a produce request retried after a timeout may
// land twice. That is one more duplicate for tariff to ignore, and it
// leaves the expected totals unchanged; a twice-landed malformed message
// is dead-lettered twice.
//
// g must not be used concurrently while Publish runs. Its Expected() is
// complete after Publish returns nil.
func Publish(ctx context.Context, g *Generator, cfg PublishConfig) (PublishStats, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return PublishStats{}, fmt.Errorf("loadgen publish config: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		ackMsgs, ackBytes atomic.Int64
		acked             = make(chan struct{}, 1)
		failOnce          sync.Once
	)
	// An own transport: kafka-go's default one is shared by every writer in
	// the process and caches metadata for 6s, so a topic created just
	// before (by a test, or by EnsureTopics) would be "unknown" to it.
	transport := &kafka.Transport{MetadataTTL: time.Second}
	defer transport.CloseIdleConnections()
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Transport:    transport,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   cfg.BatchBytes,
		BatchTimeout: cfg.BatchTimeout,
		Compression:  cfg.Compression,
		// Async: WriteMessages hands batches to per-partition writers and
		// returns, so the generator keeps running while produce requests
		// are in flight; Completion reports each batch's outcome.
		Async: true,
		Completion: func(msgs []kafka.Message, err error) {
			if err != nil {
				failOnce.Do(func() {
					m := msgs[0]
					cancel(fmt.Errorf("produce %d messages to %s partition %d: %w", len(msgs), m.Topic, m.Partition, err))
				})
				return
			}
			var n int64
			for i := range msgs {
				n += int64(len(msgs[i].Key) + len(msgs[i].Value))
			}
			ackBytes.Add(n)
			ackMsgs.Add(int64(len(msgs)))
			select {
			case acked <- struct{}{}:
			default:
			}
		},
	}

	total := g.Remaining()
	start := time.Now()
	stopProgress := startProgress(cfg, total, start, &ackMsgs, &ackBytes)

	var (
		m        Message
		chunk    = make([]kafka.Message, 0, 256)
		slab     []byte
		sent     int64
		sentB    int64
		byTopic  = map[string]int64{}
		writeErr error
	)
	flush := func() {
		if len(chunk) == 0 || writeErr != nil {
			return
		}
		if err := w.WriteMessages(ctx, chunk...); err != nil {
			writeErr = fmt.Errorf("publish to %v: %w", cfg.Brokers, err)
		}
		chunk = chunk[:0]
	}
	for writeErr == nil && ctx.Err() == nil && g.Next(&m) {
		// Bound what is in flight: wait for acknowledgements.
		for sentB-ackBytes.Load() > cfg.MaxInFlightBytes && ctx.Err() == nil {
			flush()
			select {
			case <-acked:
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(sent) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				flush() // do not hold paced messages back in the chunk
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		// The writer keeps references to keys and values until the batch
		// completes, and m is overwritten by the next call: copy into a
		// slab that is never reused (the garbage collector frees it once
		// its batches are done).
		need := len(m.Key) + len(m.Value)
		if cap(slab)-len(slab) < need {
			slab = make([]byte, 0, max(1<<20, need))
		}
		off := len(slab)
		slab = append(append(slab, m.Key...), m.Value...)
		chunk = append(chunk, kafka.Message{
			Topic: m.Topic,
			Key:   slab[off : off+len(m.Key) : off+len(m.Key)],
			Value: slab[off+len(m.Key) : len(slab) : len(slab)],
		})
		sent++
		sentB += int64(need)
		byTopic[m.Topic]++
		if len(chunk) == cap(chunk) {
			flush()
		}
	}
	flush()
	// Close flushes partial batches and waits for every Completion.
	closeErr := w.Close()
	elapsed := time.Since(start)
	stopProgress()

	stats := PublishStats{Messages: ackMsgs.Load(), Bytes: ackBytes.Load(), Elapsed: elapsed, ByTopic: byTopic}
	if err := context.Cause(ctx); err != nil {
		return stats, err
	}
	if writeErr != nil {
		return stats, writeErr
	}
	if closeErr != nil {
		return stats, fmt.Errorf("close kafka writer: %w", closeErr)
	}
	if stats.Messages != sent {
		return stats, fmt.Errorf("published %d messages, %d acknowledged", sent, stats.Messages)
	}
	return stats, nil
}

// startProgress reports progress until the returned function is called
// (which prints a final report).
func startProgress(cfg PublishConfig, total int64, start time.Time, msgs, bytes *atomic.Int64) func() {
	if cfg.Progress == nil {
		return func() {}
	}
	m := progress.Start(progress.Config{
		Out: cfg.Progress, Label: "loadgen", Unit: "messages acknowledged", RateUnit: "msg/s",
		Total: total, Read: msgs.Load, Interval: cfg.ProgressInterval, Start: start,
		Extra: func(el time.Duration) string {
			return fmt.Sprintf("%.1f MB/s", float64(bytes.Load())/1e6/max(el.Seconds(), 1e-9))
		},
	})
	return m.Done
}

// EnsureTopics creates the topics that do not exist yet, with partitions
// partitions (replication factor 1 unless the broker says otherwise), and
// waits until each has a leader. Existing topics are left as they are.
func EnsureTopics(ctx context.Context, broker string, partitions int, topics ...string) error {
	if partitions <= 0 {
		return fmt.Errorf("ensure topics: partitions %d: expected a positive count", partitions)
	}
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		return fmt.Errorf("dial kafka %s: %w", broker, err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("find kafka controller: %w", err)
	}
	cc, err := kafka.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return fmt.Errorf("dial kafka controller: %w", err)
	}
	defer cc.Close()
	for _, tp := range topics {
		err := cc.CreateTopics(kafka.TopicConfig{Topic: tp, NumPartitions: partitions, ReplicationFactor: 1})
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", tp, err)
		}
	}
	for _, tp := range topics {
		for {
			parts, err := conn.ReadPartitions(tp)
			if err == nil && len(parts) > 0 && parts[0].Leader.Host != "" {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("topic %s has no leader: %w (last error: %v)", tp, ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}
