package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Changelog is the Kafka topic that makes a partition's state movable: every
// batch's state mutations are appended to the changelog partition of the
// same number, in one record, before they are committed to local Badger.
// When an instance is assigned a partition it replays that changelog
// partition from where its local state stops, so an instance that dies
// hands its state over to the next owner with nothing lost or doubled.
//
// Each record carries the group generation of its writer. Generations only
// grow, so a record from an older owner that lost the partition but was
// still writing (a zombie) is fenced on replay: after a record of
// generation G, records of generations below G are skipped.
type Changelog struct {
	client *kafka.Client
	topic  string
}

// NewChangelog appends to and replays topic on brokers, through rt (nil:
// plaintext).
func NewChangelog(brokers []string, topic string, rt kafka.RoundTripper) *Changelog {
	return &Changelog{client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second, Transport: rt}, topic: topic}
}

// Topic returns the changelog topic name.
func (c *Changelog) Topic() string { return c.topic }

// Ensure creates the changelog topic with partitions partitions if it does
// not exist, with time retention of changelogRetention(retention), where
// retention is the dedup window: idempotency keys older than the window
// have expired from Badger too, so their records are no longer needed to
// rebuild a partition; balance state, kept indefinitely, is re-logged
// well within it (refresh.go).
func (c *Changelog) Ensure(ctx context.Context, partitions int, retention time.Duration) error {
	res, err := c.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic:             c.topic,
		NumPartitions:     partitions,
		ReplicationFactor: -1, // the broker's default
		ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "delete"},
			{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(changelogRetention(retention).Milliseconds(), 10)},
			{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(64 << 20)},
		},
	}}})
	if err != nil {
		return fmt.Errorf("create changelog topic %s: %w", c.topic, err)
	}
	if err := res.Errors[c.topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create changelog topic %s: %w", c.topic, err)
	}
	n, err := c.partitions(ctx)
	if err != nil {
		return err
	}
	if n != partitions {
		return fmt.Errorf("changelog topic %s has %d partitions, the input topics %d: they must match (recreate the changelog with %d partitions, or use another group id)", c.topic, n, partitions, partitions)
	}
	return nil
}

// changelogRetention is the changelog topic's time retention for a dedup
// window: the window plus a day, so a record outlives the keys it carries.
// The balance refresh paces itself by it (refreshSweep).
func changelogRetention(window time.Duration) time.Duration { return window + 24*time.Hour }

func (c *Changelog) partitions(ctx context.Context) (int, error) {
	md, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{c.topic}})
	if err != nil {
		return 0, fmt.Errorf("read metadata of %s: %w", c.topic, err)
	}
	for _, t := range md.Topics {
		if t.Name == c.topic {
			if t.Error != nil {
				return 0, fmt.Errorf("changelog topic %s: %w", c.topic, t.Error)
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("changelog topic %s not found", c.topic)
}

// Record format:
//
//	'T' version | generation int32 | count uvarint |
//	count × (key len uvarint, key, value len uvarint, value, expires-at uvarint [, flags byte])
//
// Version 1 has no flags byte. Version 2 adds it (bit 0: delete the key)
// and is written only for a record that deletes something, so a record
// without deletes stays readable by a binary that predates them; one with
// deletes makes such a binary stop restoring with "malformed changelog
// record" rather than silently keep the keys.
const recordMagic, recordVersion, recordVersionFlags = 'T', 1, 2

const flagDelete byte = 1

func encodeRecord(dst []byte, gen int32, muts []Mutation) []byte {
	version := byte(recordVersion)
	for i := range muts {
		if muts[i].Delete {
			version = recordVersionFlags
			break
		}
	}
	dst = append(dst[:0], recordMagic, version)
	dst = binary.BigEndian.AppendUint32(dst, uint32(gen))
	dst = binary.AppendUvarint(dst, uint64(len(muts)))
	for _, m := range muts {
		if m.Delete {
			m.Value, m.ExpiresAt = nil, 0
		}
		dst = binary.AppendUvarint(dst, uint64(len(m.Key)))
		dst = append(dst, m.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(m.Value)))
		dst = append(dst, m.Value...)
		dst = binary.AppendUvarint(dst, m.ExpiresAt)
		if version == recordVersionFlags {
			var flags byte
			if m.Delete {
				flags |= flagDelete
			}
			dst = append(dst, flags)
		}
	}
	return dst
}

var errBadRecord = errors.New("malformed changelog record")

func decodeRecord(b []byte, muts []Mutation) (int32, []Mutation, error) {
	if len(b) < 6 || b[0] != recordMagic || (b[1] != recordVersion && b[1] != recordVersionFlags) {
		return 0, muts, errBadRecord
	}
	flagged := b[1] == recordVersionFlags
	gen := int32(binary.BigEndian.Uint32(b[2:]))
	b = b[6:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return 0, muts, errBadRecord
	}
	b = b[k:]
	bytesField := func() ([]byte, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, false
		}
		v := b[k : k+int(l)]
		b = b[k+int(l):]
		return v, true
	}
	for i := uint64(0); i < n; i++ {
		key, ok1 := bytesField()
		val, ok2 := bytesField()
		exp, k := binary.Uvarint(b)
		if !ok1 || !ok2 || k <= 0 {
			return 0, muts, errBadRecord
		}
		b = b[k:]
		m := Mutation{Key: key, Value: val, ExpiresAt: exp}
		if flagged {
			if len(b) == 0 || b[0]&^flagDelete != 0 {
				return 0, muts, errBadRecord
			}
			m.Delete = b[0]&flagDelete != 0
			b = b[1:]
		}
		muts = append(muts, m)
	}
	if len(b) != 0 {
		return 0, muts, errBadRecord
	}
	return gen, muts, nil
}

// Append writes one record to partition and returns its offset once the
// broker has acknowledged it from all in-sync replicas.
func (c *Changelog) Append(ctx context.Context, partition int, record []byte) (int64, error) {
	res, err := c.client.Produce(ctx, &kafka.ProduceRequest{
		Topic:        c.topic,
		Partition:    partition,
		RequiredAcks: kafka.RequireAll,
		Compression:  kafka.Lz4,
		Records:      kafka.NewRecordReader(kafka.Record{Value: kafka.NewBytes(record)}),
	})
	if err != nil {
		return 0, fmt.Errorf("append to changelog %s/%d: %w", c.topic, partition, err)
	}
	if res.Error != nil {
		return 0, fmt.Errorf("append to changelog %s/%d: %w", c.topic, partition, res.Error)
	}
	return res.BaseOffset, nil
}

// Replay reads partition from pos.Next to its end as of the call, calling
// apply for every record not fenced, in order, and returns the position
// after the last record. Records before the log start (deleted by
// retention) are skipped: their idempotency keys have expired too, and
// the balance state they held has been re-logged since (refresh.go).
func (c *Changelog) Replay(ctx context.Context, partition int, pos ChangelogPos, apply func(offset int64, gen int32, muts []Mutation) error) (ChangelogPos, error) {
	lo, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		c.topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
	}})
	if err != nil {
		return pos, fmt.Errorf("list offsets of changelog %s/%d: %w", c.topic, partition, err)
	}
	var first, end int64 = -1, -1
	for _, po := range lo.Topics[c.topic] {
		if po.Partition == partition {
			if po.Error != nil {
				return pos, fmt.Errorf("list offsets of changelog %s/%d: %w", c.topic, partition, po.Error)
			}
			first, end = po.FirstOffset, po.LastOffset
		}
	}
	if end < 0 {
		return pos, fmt.Errorf("changelog %s has no partition %d", c.topic, partition)
	}
	if pos.Next < first {
		pos.Next = first
	}
	var muts []Mutation
	for pos.Next < end {
		res, err := c.client.Fetch(ctx, &kafka.FetchRequest{
			Topic: c.topic, Partition: partition, Offset: pos.Next,
			MinBytes: 1, MaxBytes: 64 << 20, MaxWait: 500 * time.Millisecond,
		})
		if err != nil {
			return pos, fmt.Errorf("replay changelog %s/%d at %d: %w", c.topic, partition, pos.Next, err)
		}
		if res.Error != nil {
			return pos, fmt.Errorf("replay changelog %s/%d at %d: %w", c.topic, partition, pos.Next, res.Error)
		}
		for {
			rec, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return pos, fmt.Errorf("replay changelog %s/%d at %d: %w", c.topic, partition, pos.Next, err)
			}
			if rec.Offset < pos.Next {
				continue // a fetch may return a batch that starts earlier
			}
			val, err := readAll(rec.Value)
			if err != nil {
				return pos, err
			}
			if pos, err = replayRecord(pos, rec.Offset, val, muts[:0], func(gen int32, ms []Mutation) error {
				muts = ms
				return apply(rec.Offset, gen, ms)
			}); err != nil {
				return pos, fmt.Errorf("changelog %s/%d: %w", c.topic, partition, err)
			}
		}
	}
	return pos, nil
}

func readAll(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	return io.ReadAll(b)
}

// replayRecord decodes the record at offset and applies it unless it is
// fenced (written by a generation older than one already applied), and
// returns the position after it.
func replayRecord(pos ChangelogPos, offset int64, value []byte, scratch []Mutation, apply func(gen int32, muts []Mutation) error) (ChangelogPos, error) {
	gen, muts, err := decodeRecord(value, scratch)
	if err != nil {
		return pos, fmt.Errorf("offset %d: %w", offset, err)
	}
	if gen >= pos.Generation {
		if err := apply(gen, muts); err != nil {
			return pos, err
		}
		pos.Generation = gen
	}
	pos.Next = offset + 1
	return pos, nil
}
