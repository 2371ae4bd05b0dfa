package prices

// Sharing the price history between the instances of one consumer group.
//
// Each instance keeps its prices in its own Badger store, and a partition
// moves between instances on rebalance: if each instance recorded its own
// versions (each sync on its own clock) and its own card edits, the same
// event would be rated differently depending on who owns its partition.
// So every write of shared history (a price version, a rate-card version,
// the default card) is first appended to one compacted, single-partition
// Kafka topic, and every instance applies that topic, in order, to its
// store: a Follower. The topic is the one history; the stores are copies.
//
// What is not shared: customers' assignments (partition state) and the
// announcement outbox (delivered by the instance that recorded the
// version).
//
// Records: key = the Badger key, value = the stored bytes, so the topic can
// be compacted by key (a key of history is never rewritten, so compaction
// keeps every version). One write (a price version with the card versions
// it starts) is one produce request, appended as one batch; its last
// record carries the header tariff.prices.last, and a follower applies a
// write's records in one transaction, so a version and the cards pinned
// to it appear together, as with a local write.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/rating"
)

// Entry is one shared write: a Badger key of the price store and the bytes
// stored under it.
type Entry struct {
	Key, Value []byte
}

// LogRecord is one record read from the price-state topic.
type LogRecord struct {
	Offset int64
	Entry
	// Last: the record ends a write (its records are applied together).
	Last bool
}

// Log is the price-state topic: KafkaLog, or a fake in tests.
type Log interface {
	// Append writes entries as one write (one batch, the last record
	// marked) and returns the offset of its last record once every in-sync
	// replica has it. entries stay the caller's.
	Append(ctx context.Context, entries []Entry) (last int64, err error)
	// Bounds returns the first offset still in the topic and the offset the
	// next record will get.
	Bounds(ctx context.Context) (first, end int64, err error)
	// Fetch returns records from offset from on, in order; it waits up to
	// wait for one when there are none, and may return none.
	Fetch(ctx context.Context, from int64, wait time.Duration) ([]LogRecord, error)
}

// headerLast marks the last record of one write.
const headerLast = "tariff.prices.last"

// KafkaLog is the price-state topic on a Kafka cluster: one partition,
// compacted.
type KafkaLog struct {
	client *kafka.Client
	topic  string
}

// NewKafkaLog reads and appends topic on brokers, through rt (nil:
// plaintext).
func NewKafkaLog(brokers []string, topic string, rt kafka.RoundTripper) (*KafkaLog, error) {
	if len(brokers) == 0 {
		return nil, errors.New("price-state topic: no kafka brokers")
	}
	if topic == "" {
		return nil, errors.New("prices.state_topic: expected a topic name")
	}
	return &KafkaLog{client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second, Transport: rt}, topic: topic}, nil
}

// Topic returns the topic name.
func (l *KafkaLog) Topic() string { return l.topic }

// Ensure creates the topic if it does not exist: one partition (one order
// of history for every instance), cleanup.policy=compact (keys of history
// are never rewritten, so compaction only drops duplicates of racing
// writers), and messages up to 64 MiB (one price version of a full price
// list is a few MiB). An existing topic with more than one partition is
// refused: its order would not be one.
func (l *KafkaLog) Ensure(ctx context.Context) error {
	res, err := l.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic:             l.topic,
		NumPartitions:     1,
		ReplicationFactor: -1, // the broker's default
		ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
			{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(64 << 20)},
		},
	}}})
	if err != nil {
		return fmt.Errorf("create price-state topic %s: %w", l.topic, err)
	}
	if err := res.Errors[l.topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create price-state topic %s: %w", l.topic, err)
	}
	// A topic just created answers a moment later: wait for its
	// partition to answer ListOffsets (the log itself), up to 30s.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := l.checkPartitions(ctx)
		if err == nil {
			_, _, err = l.Bounds(ctx)
		}
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("price-state topic %s: %w (last error: %v)", l.topic, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *KafkaLog) checkPartitions(ctx context.Context) error {
	md, err := l.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{l.topic}})
	if err != nil {
		return fmt.Errorf("read metadata of %s: %w", l.topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != l.topic {
			continue
		}
		if t.Error != nil {
			return fmt.Errorf("price-state topic %s: %w", l.topic, t.Error)
		}
		if len(t.Partitions) != 1 {
			return fmt.Errorf("price-state topic %s has %d partitions, expected 1 (price history has one order): recreate it with one partition or set prices.state_topic to another name", l.topic, len(t.Partitions))
		}
		return nil
	}
	return fmt.Errorf("price-state topic %s: %w", l.topic, kafka.UnknownTopicOrPartition)
}

// Append implements Log.
func (l *KafkaLog) Append(ctx context.Context, entries []Entry) (int64, error) {
	if len(entries) == 0 {
		panic("BUG: empty price-state write")
	}
	recs := make([]kafka.Record, len(entries))
	for i, e := range entries {
		recs[i] = kafka.Record{Key: kafka.NewBytes(e.Key), Value: kafka.NewBytes(e.Value)}
	}
	recs[len(recs)-1].Headers = []kafka.Header{{Key: headerLast, Value: []byte("1")}}
	res, err := l.client.Produce(ctx, &kafka.ProduceRequest{
		Topic: l.topic, Partition: 0, RequiredAcks: kafka.RequireAll, Compression: kafka.Lz4,
		Records: kafka.NewRecordReader(recs...),
	})
	if err != nil {
		return 0, fmt.Errorf("append to price-state topic %s: %w", l.topic, err)
	}
	if res.Error != nil {
		return 0, fmt.Errorf("append to price-state topic %s: %w", l.topic, res.Error)
	}
	return res.BaseOffset + int64(len(entries)) - 1, nil
}

// Bounds implements Log.
func (l *KafkaLog) Bounds(ctx context.Context) (int64, int64, error) {
	res, err := l.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		l.topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)},
	}})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of price-state topic %s: %w", l.topic, err)
	}
	for _, po := range res.Topics[l.topic] {
		if po.Partition == 0 {
			if po.Error != nil {
				return 0, 0, fmt.Errorf("list offsets of price-state topic %s: %w", l.topic, po.Error)
			}
			return po.FirstOffset, po.LastOffset, nil
		}
	}
	return 0, 0, fmt.Errorf("price-state topic %s has no partition 0", l.topic)
}

// Fetch implements Log.
func (l *KafkaLog) Fetch(ctx context.Context, from int64, wait time.Duration) ([]LogRecord, error) {
	res, err := l.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: l.topic, Partition: 0, Offset: from, MinBytes: 1, MaxBytes: 64 << 20, MaxWait: wait,
	})
	if err != nil {
		return nil, fmt.Errorf("read price-state topic %s at %d: %w", l.topic, from, err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("read price-state topic %s at %d: %w", l.topic, from, res.Error)
	}
	var out []LogRecord
	for {
		rec, err := res.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read price-state topic %s at %d: %w", l.topic, from, err)
		}
		if rec.Offset < from {
			continue // a fetch may return a batch that starts earlier
		}
		lr := LogRecord{Offset: rec.Offset}
		if lr.Key, err = readBytes(rec.Key); err != nil {
			return out, err
		}
		if lr.Value, err = readBytes(rec.Value); err != nil {
			return out, err
		}
		for _, h := range rec.Headers {
			if h.Key == headerLast {
				lr.Last = true
			}
		}
		out = append(out, lr)
	}
}

func readBytes(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	return io.ReadAll(b)
}

// ErrRefused marks a write read from the price-state topic that the store
// refused: it conflicts with recorded history (another version in force
// from the same time, another card version with the same number), or is
// not a record of shared history at all. It was logged and counted
// (Follower.Refused) and not applied.
var ErrRefused = errors.New("price-state record refused")

// keyApplied holds the follower's position: the next offset of the
// price-state topic to apply (8 bytes) and the topic's name. It is written
// in the transaction that applies the records before it, so a crash never
// applies a record twice or skips one.
var keyApplied = []byte("pa")

// FollowerOptions adjust a Follower.
type FollowerOptions struct {
	// Timeout bounds one shared write: append, then apply locally. Default
	// 30s.
	Timeout time.Duration
	// Wait is how long one read waits for new records. Default 500ms: a
	// change made through another instance is in force here within about
	// that.
	Wait time.Duration
	// OnRefused, when set, is called once per refused write (metrics).
	OnRefused func()
}

// Follower keeps one State's store a copy of the price-state topic, and
// writes the State's shared history through the topic (NewFollower makes
// the store do so). Safe for concurrent use: applying is serialized, and
// a record read twice (by Run and by a catch-up) is applied once.
type Follower struct {
	log   Log
	topic string
	store *Store
	state *State
	opts  FollowerOptions
	zlog  zerolog.Logger

	mu sync.Mutex // serializes applying; guards the fields below
	// read is the next offset to read; applied the next offset stored.
	read, applied int64
	// pending holds the records of a write read only in part.
	pending []LogRecord
	// fresh: this store has not followed the topic yet; its first
	// transaction replaces its shared keys with the topic's (Start).
	fresh bool

	refused atomic.Int64
}

// NewFollower follows topic (its name, for the stored position) through l
// into state's store, and makes the store write shared history through
// it. Call Start before the state is used for rating.
func NewFollower(l Log, topic string, state *State, opts FollowerOptions, log zerolog.Logger) (*Follower, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Wait <= 0 {
		opts.Wait = 500 * time.Millisecond
	}
	f := &Follower{log: l, topic: topic, store: state.store, state: state, opts: opts,
		zlog: log.With().Str("component", "price-follower").Str("topic", topic).Logger()}
	next, ok, err := f.store.appliedPos(topic)
	if err != nil {
		return nil, err
	}
	f.read, f.applied, f.fresh = next, next, !ok
	state.store.shared = f
	return f, nil
}

// Refused counts the writes refused as conflicting with recorded history.
func (f *Follower) Refused() int64 { return f.refused.Load() }

// Applied returns the next offset of the topic to apply.
func (f *Follower) Applied() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// Start brings the store to the topic's end, for `tariff run` before it
// consumes usage and for the commands that write prices.
//
// A store that has not followed this topic before (an instance upgraded
// from before sharing, a new instance, a topic recreated): if the topic is
// empty, the store's own history is published first (a one-time seed, so
// the first upgraded instance shares its history); then the store's price
// versions, card versions and default card are replaced by the topic's,
// in the transaction that applies its first write. Keeping local history
// the topic lacks would leave this instance rating differently from the
// others, which is what sharing exists to prevent.
func (f *Follower) Start(ctx context.Context) error {
	first, end, err := f.log.Bounds(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	if f.applied > end {
		// The topic holds less than this store applied: it was recreated
		// (or is another cluster's). Start over from it.
		f.zlog.Warn().Int64("applied", f.applied).Int64("end", end).Msg("price-state topic ends before the position this store applied: it was recreated; adopting it as new")
		f.fresh = true
	}
	if f.fresh {
		f.read, f.applied, f.pending = first, first, nil
	}
	fresh := f.fresh
	f.mu.Unlock()
	if fresh && first == end {
		n, err := f.seed(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			f.zlog.Info().Int("writes", n).Msg("price-state topic was empty: published this store's price history to it")
		}
		if _, end, err = f.log.Bounds(ctx); err != nil {
			return err
		}
	}
	if err := f.SyncTo(ctx, end); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fresh {
		// An empty topic and an empty store: record the position, so the
		// next start is not a first one.
		if err := f.commit(nil, f.applied, true); err != nil {
			return err
		}
		f.fresh = false
	}
	return nil
}

// seed publishes the store's shared history: each price version, each
// card version and the default card, each a write of its own (a full
// history in one write could pass the topic's message size), in an order
// that applies: versions by time, then cards, then the default card.
func (f *Follower) seed(ctx context.Context) (int, error) {
	writes, err := f.store.sharedWrites()
	if err != nil {
		return 0, err
	}
	for _, w := range writes {
		if _, err := f.log.Append(ctx, w); err != nil {
			return 0, fmt.Errorf("seed price-state topic %s: %w", f.topic, err)
		}
	}
	return len(writes), nil
}

// CatchUp applies the topic up to its end as of the call. `tariff run`
// calls it before a partition assigned by a rebalance is processed, and
// every shared writer before it reads the catalog it changes.
func (f *Follower) CatchUp(ctx context.Context) error {
	_, end, err := f.log.Bounds(ctx)
	if err != nil {
		return err
	}
	if err := f.SyncTo(ctx, end); err != nil {
		return err
	}
	f.zlog.Debug().Int64("end", end).Msg("caught up with the price-state topic")
	return nil
}

// SyncTo applies the topic up to offset end (exclusive) and reloads the
// State if anything was applied.
func (f *Follower) SyncTo(ctx context.Context, end int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := false
	for f.read < end {
		recs, err := f.log.Fetch(ctx, f.read, f.opts.Wait)
		if err != nil {
			return err
		}
		c, err := f.consume(recs)
		changed = changed || c
		if err != nil {
			return err
		}
		if len(recs) == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if changed {
		return f.state.Reload()
	}
	return nil
}

// Run follows the topic until ctx ends: a change written through any
// instance is applied here and the State reloaded, so the pipeline rates
// with it from its next event. A read that fails is retried with backoff;
// Run returns nil when ctx ends.
func (f *Follower) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		f.mu.Lock()
		from := f.read
		f.mu.Unlock()
		recs, err := f.log.Fetch(ctx, from, f.opts.Wait)
		if err == nil {
			f.mu.Lock()
			var changed bool
			changed, err = f.consume(recs)
			f.mu.Unlock()
			if changed {
				if rerr := f.state.Reload(); rerr != nil {
					err = errors.Join(err, fmt.Errorf("reload prices: %w", rerr))
				}
			}
		}
		if err == nil {
			backoff = 200 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		f.zlog.Warn().Err(err).Dur("retry_in", backoff).Msg("following the price-state topic failed; prices in force are kept")
		if !pipeline.Sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	return nil
}

// consume applies the complete writes among recs (records before f.read
// are skipped: read already) and reports whether anything was applied.
// The caller holds f.mu.
func (f *Follower) consume(recs []LogRecord) (bool, error) {
	changed := false
	for _, r := range recs {
		if r.Offset < f.read {
			continue
		}
		f.pending = append(f.pending, r)
		f.read = r.Offset + 1
		if !r.Last {
			continue
		}
		entries := make([]Entry, len(f.pending))
		for i, p := range f.pending {
			entries[i] = p.Entry
		}
		f.pending = f.pending[:0]
		applied, err := f.apply(entries, r.Offset+1)
		if err != nil {
			// Not stored (a store error): read the write again next time.
			f.read, f.pending = f.applied, f.pending[:0]
			return changed, err
		}
		changed = changed || applied
	}
	return changed, nil
}

// apply stores one write and the position after it in one transaction. A
// write whose records are all stored already (a record read again, or the
// same version recorded by two racing writers) stores only the position;
// one that conflicts with recorded history is refused whole (logged and
// counted), and only the position is stored: history is never rewritten,
// and a write is applied entirely or not at all.
func (f *Follower) apply(entries []Entry, next int64) (bool, error) {
	err := f.commit(entries, next, f.fresh)
	if errors.Is(err, ErrRefused) {
		f.refused.Add(1)
		if f.opts.OnRefused != nil {
			f.opts.OnRefused()
		}
		f.zlog.Error().Err(err).Int64("offset", next-1).Msg("price-state write refused: it conflicts with the recorded history, which is kept")
		err = f.commit(nil, next, f.fresh)
	}
	if err != nil {
		return false, err
	}
	if f.fresh {
		f.fresh = false
		f.zlog.Info().Msg("price history replaced by the shared one from the price-state topic")
	}
	f.applied = next
	return true, nil
}

// commit writes entries (checked: see applyEntry) and the position in one
// transaction; reset first removes every shared key of the store.
func (f *Follower) commit(entries []Entry, next int64, reset bool) error {
	return f.store.db.Update(func(txn *badger.Txn) error {
		if reset {
			if err := deleteShared(txn); err != nil {
				return err
			}
		}
		for _, e := range entries {
			if err := applyEntry(txn, e); err != nil {
				return err
			}
		}
		pos := binary.BigEndian.AppendUint64(nil, uint64(next))
		return txn.Set(keyApplied, append(pos, f.topic...))
	})
}

// errNotPublished marks a shared write that did not reach the topic:
// nothing of it will ever be applied.
var errNotPublished = errors.New("not published")

// share writes entries through the topic and returns once they are applied
// to this store. It fails with ErrConflict when the store does not hold
// them then: another writer's write at the same slot came first; and with
// an error wrapping errNotPublished when the topic did not take them.
func (f *Follower) share(entries []Entry) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.Timeout)
	defer cancel()
	last, err := f.log.Append(ctx, entries)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotPublished, err)
	}
	if err := f.SyncTo(ctx, last+1); err != nil {
		return fmt.Errorf("published to price-state topic %s at offset %d but not applied here yet (the follower applies it when it can): %w", f.topic, last, err)
	}
	return f.store.db.View(func(txn *badger.Txn) error {
		for _, e := range entries {
			if bytes.Equal(e.Key, keyDefaultCard) {
				continue // a setting, not history: a later write may replace it
			}
			item, err := txn.Get(e.Key)
			if errors.Is(err, badger.ErrKeyNotFound) {
				return fmt.Errorf("%s: another write recorded first took its slot: %w", describeKey(e.Key), ErrConflict)
			}
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if !bytes.Equal(v, e.Value) {
				return fmt.Errorf("%s: another write recorded first holds it: %w", describeKey(e.Key), ErrConflict)
			}
		}
		return nil
	})
}

// catchUp brings a shared store up to the topic before a writer reads the
// catalog it changes; a store that is not shared has nothing to catch up.
func (s *Store) catchUp() error {
	f := s.shared
	if f == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.Timeout)
	defer cancel()
	if err := f.CatchUp(ctx); err != nil {
		return fmt.Errorf("catch up with price-state topic %s: %w", f.topic, err)
	}
	return nil
}

// appliedPos returns the stored position when it belongs to topic.
func (s *Store) appliedPos(topic string) (int64, bool, error) {
	var next int64
	var ok bool
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyApplied)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) < 8 {
				return fmt.Errorf("price-state position of %d bytes, expected 8 or more", len(v))
			}
			if string(v[8:]) == topic {
				next, ok = int64(binary.BigEndian.Uint64(v)), true
			}
			return nil
		})
	})
	if err != nil {
		return 0, false, fmt.Errorf("read price-state position: %w", err)
	}
	return next, ok, nil
}

// sharedWrites lists the store's shared history as writes for a seed.
func (s *Store) sharedWrites() ([][]Entry, error) {
	var out [][]Entry
	err := s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range [][]byte{prefixVersion, prefixCard, keyDefaultCard} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.Valid(); it.Next() {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					it.Close()
					return err
				}
				out = append(out, []Entry{{Key: it.Item().KeyCopy(nil), Value: v}})
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read price history to share: %w", err)
	}
	return out, nil
}

// deleteShared removes every price version, card version and the default
// card (not assignments, not the outbox).
func deleteShared(txn *badger.Txn) error {
	var keys [][]byte
	for _, prefix := range [][]byte{prefixVersion, prefixCard, keyDefaultCard} {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// applyEntry stores one shared record, checking it as a local write is
// checked: a price version or card version whose key holds the same bytes
// is already applied (nil); one whose slot holds something else is
// refused; the default card must name a card.
func applyEntry(txn *badger.Txn, e Entry) error {
	switch {
	case bytes.Equal(e.Key, keyDefaultCard):
		id := string(e.Value)
		if err := checkID("default rate card", id); err != nil {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: append(append(append([]byte(nil), prefixCard...), id...), 0), PrefetchValues: false})
		it.Rewind()
		ok := it.Valid()
		it.Close()
		if !ok {
			return fmt.Errorf("%w: default rate card %q: %w", ErrRefused, id, ErrNoCard)
		}
		return txn.Set(keyDefaultCard, e.Value)
	case bytes.HasPrefix(e.Key, prefixVersion):
		v, err := rating.UnmarshalVersion(e.Value)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRefused, describeKey(e.Key), err)
		}
		if !bytes.Equal(versionKey(v), e.Key) {
			return fmt.Errorf("%w: %s: the value is price version %s, which belongs under another key", ErrRefused, describeKey(e.Key), v.ID)
		}
		switch err := checkVersionSlot(txn, v); {
		case errors.Is(err, ErrExists):
			return sameValue(txn, e)
		case err != nil:
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
	case bytes.HasPrefix(e.Key, prefixCard):
		cv, err := decodeCardVersion(e.Value)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRefused, describeKey(e.Key), err)
		}
		if !bytes.Equal(cardKey(cv.CardID, cv.Version), e.Key) {
			return fmt.Errorf("%w: %s: the value is rate card %s version %d, which belongs under another key", ErrRefused, describeKey(e.Key), cv.CardID, cv.Version)
		}
		switch _, err := txn.Get(e.Key); {
		case err == nil:
			return sameValue(txn, e)
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
	default:
		return fmt.Errorf("%w: key %q is not shared price history", ErrRefused, e.Key)
	}
	if err := txn.Set(e.Key, e.Value); err != nil {
		return fmt.Errorf("store %s: %w", describeKey(e.Key), err)
	}
	return nil
}

// sameValue accepts a record whose key is stored with the same bytes, and
// refuses one stored with other bytes.
func sameValue(txn *badger.Txn, e Entry) error {
	item, err := txn.Get(e.Key)
	if err != nil {
		return err
	}
	old, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(old, e.Value) {
		return fmt.Errorf("%w: %s is recorded with other content and is never rewritten: %w", ErrRefused, describeKey(e.Key), ErrConflict)
	}
	return nil
}

// describeKey names a key of shared history for people.
func describeKey(k []byte) string {
	switch {
	case bytes.Equal(k, keyDefaultCard):
		return "default rate card"
	case bytes.HasPrefix(k, prefixVersion) && len(k) > len(prefixVersion)+timeKeyLen:
		return fmt.Sprintf("price version %s", k[len(prefixVersion)+timeKeyLen:])
	case bytes.HasPrefix(k, prefixCard) && len(k) > len(prefixCard)+5:
		return fmt.Sprintf("rate card %s version %d", k[len(prefixCard):len(k)-5], binary.BigEndian.Uint32(k[len(k)-4:]))
	}
	return fmt.Sprintf("key %q", k)
}

// --- the store's shared write paths ---

// saveShared is Save for a shared store: the checks of a local write
// against the store (caught up by the caller), then the announcements
// queued locally, then the version and card versions written through the
// topic. The outbox entries go first so a crash after the publish cannot
// lose an announcement; deliverPending holds an entry back until its
// version is in the store, and a failed publish removes them.
func (s *Store) saveShared(f *Follower, rec Record) error {
	var entries []Entry
	err := s.db.View(func(txn *badger.Txn) error {
		if v := rec.Version; v != nil {
			if err := checkVersionSlot(txn, v); err != nil {
				return err
			}
			data, err := rating.MarshalVersion(v)
			if err != nil {
				return fmt.Errorf("encode price version %s: %w", v.ID, err)
			}
			entries = append(entries, Entry{Key: versionKey(v), Value: data})
		}
		for _, cv := range rec.Cards {
			e, err := cardEntry(txn, cv)
			if err != nil {
				return err
			}
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil || len(entries) == 0 {
		return err
	}
	if len(rec.Outbox) > 0 {
		if rec.Version == nil {
			panic("BUG: announcement without a price version")
		}
		err := s.db.Update(func(txn *badger.Txn) error {
			for target, payload := range rec.Outbox {
				if err := txn.Set(outboxKey(target, rec.Version.ID), payload); err != nil {
					return fmt.Errorf("store announcement for %s: %w", target, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := f.share(entries); err != nil {
		// Unpublished, or refused as conflicting, the version will never
		// be recorded: drop its announcements. Published but not applied
		// here yet, keep them: deliverPending sends them once it is.
		if len(rec.Outbox) > 0 && (errors.Is(err, errNotPublished) || (errors.Is(err, ErrConflict) && !s.hasVersion(rec.Version.ID))) {
			for target := range rec.Outbox {
				_ = s.Delivered(target, rec.Version.ID)
			}
		}
		return err
	}
	return nil
}

// cardEntry checks that a card version's slot is free and encodes it.
func cardEntry(txn *badger.Txn, cv CardVersion) (Entry, error) {
	k, data, err := encodeCardVersion(cv)
	if err != nil {
		return Entry{}, err
	}
	switch _, err := txn.Get(k); {
	case err == nil:
		return Entry{}, fmt.Errorf("rate card %s version %d is already recorded and is never rewritten: %w", cv.CardID, cv.Version, ErrConflict)
	case !errors.Is(err, badger.ErrKeyNotFound):
		return Entry{}, fmt.Errorf("read rate card %s: %w", cv.CardID, err)
	}
	return Entry{Key: k, Value: data}, nil
}

// addCardVersionShared is AddCardVersion for a shared store.
func (s *Store) addCardVersionShared(f *Follower, cv CardVersion) error {
	var e Entry
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		e, err = cardEntry(txn, cv)
		return err
	})
	if err != nil {
		return err
	}
	return f.share([]Entry{e})
}

// setDefaultCardShared is SetDefaultCard for a shared store.
func (s *Store) setDefaultCardShared(f *Follower, id string) error {
	if err := s.hasCard(id); err != nil {
		return err
	}
	return f.share([]Entry{{Key: append([]byte(nil), keyDefaultCard...), Value: []byte(id)}})
}

// hasCard fails with ErrNoCard when card id does not exist.
func (s *Store) hasCard(id string) error {
	var ok bool
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: append(append(append([]byte(nil), prefixCard...), id...), 0), PrefetchValues: false})
		defer it.Close()
		it.Rewind()
		ok = it.Valid()
		return nil
	})
	if err == nil && !ok {
		err = fmt.Errorf("default rate card %q: %w", id, ErrNoCard)
	}
	return err
}

// hasVersion reports whether price version id is stored.
func (s *Store) hasVersion(id string) bool {
	found := false
	_ = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixVersion, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) > len(prefixVersion)+timeKeyLen && string(k[len(prefixVersion)+timeKeyLen:]) == id {
				found = true
				return nil
			}
		}
		return nil
	})
	return found
}
