package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// StoreConfig configures the local state store.
type StoreConfig struct {
	// Dir is the Badger directory. Default "./tariff-data/state".
	Dir string `yaml:"dir"`
	// DedupWindow is how long an idempotency key is remembered. Partners
	// and replays resend old events, so the default is 35 days.
	DedupWindow time.Duration `yaml:"dedup_window"`
	// SyncWrites fsyncs every commit. Default true: the Kafka offset is
	// committed right after the state commit, so a commit that only reached
	// the page cache could be lost in a power cut while Kafka already moved
	// on, and the events it deduplicated would be billed again.
	SyncWrites *bool `yaml:"sync_writes"`
}

// SetDefaults fills zero fields with their documented defaults.
func (c *StoreConfig) SetDefaults() {
	if c.Dir == "" {
		c.Dir = "./tariff-data/state"
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = 35 * 24 * time.Hour
	}
	if c.SyncWrites == nil {
		t := true
		c.SyncWrites = &t
	}
}

// Validate reports every bad field at once.
func (c *StoreConfig) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("state.dir: a directory is required"))
	}
	if c.DedupWindow < time.Hour {
		errs = append(errs, fmt.Errorf("state.dedup_window: %s: expected at least 1h (default 840h = 35 days)", c.DedupWindow))
	}
	return errors.Join(errs...)
}

// Key prefixes. One byte each, so that a prefix scan of one kind never
// touches another.
const (
	prefixOffset byte = 'o' // o topic 0x00 partition(4) -> next offset (8)
	prefixDedup  byte = 'd' // d customer 0x00 event id -> applied-at (8)
)

// Store is the Badger-backed state of the pipeline: the idempotency keys of
// applied events and, for each input partition, the next offset to apply.
// Both are written in the same transaction as the state they protect, so a
// batch redelivered after a crash is recognized and not applied twice.
type Store struct {
	db     *badger.DB
	window time.Duration
	log    zerolog.Logger
}

// OpenStore opens (creating if needed) the store in cfg.Dir.
func OpenStore(cfg StoreConfig, log zerolog.Logger) (*Store, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With().Str("component", "state").Logger()
	opts := badger.DefaultOptions(cfg.Dir).
		WithSyncWrites(*cfg.SyncWrites).
		WithLogger(badgerLogger{log}).
		// The default 64 MiB memtables and 256 MiB value log files are sized
		// for servers with much more data; these keep a fresh install small.
		WithMemTableSize(32 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumVersionsToKeep(1)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", cfg.Dir, err)
	}
	return &Store{db: db, window: cfg.DedupWindow, log: log}, nil
}

// DB exposes the Badger handle to stages that keep their own state in it
// (price versions, balances), so that their writes can share a transaction.
func (s *Store) DB() *badger.DB { return s.db }

// Close flushes and closes Badger.
func (s *Store) Close() error { return s.db.Close() }

func offsetKey(topic string, partition int) []byte {
	k := make([]byte, 0, 1+len(topic)+1+4)
	k = append(k, prefixOffset)
	k = append(k, topic...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(partition))
}

func dedupKey(dst []byte, customer, id string) []byte {
	dst = append(dst[:0], prefixDedup)
	dst = append(dst, customer...)
	dst = append(dst, 0)
	return append(dst, id...)
}

// NextOffset returns the first offset of topic/partition not yet applied,
// or -1 when nothing of it was applied.
func (s *Store) NextOffset(topic string, partition int) (int64, error) {
	next := int64(-1)
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(offsetKey(topic, partition))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("BUG: offset value of %d bytes", len(v))
			}
			next = int64(binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("read stored offset of %s/%d: %w", topic, partition, err)
	}
	return next, nil
}

// Seen reports whether the event with this idempotency key was applied
// within the dedup window. key is scratch space, returned for reuse.
func (s *Store) Seen(txn *badger.Txn, key []byte, customer, id string) (bool, []byte, error) {
	key = dedupKey(key, customer, id)
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, key, nil
	}
	if err != nil {
		return false, key, fmt.Errorf("look up idempotency key: %w", err)
	}
	return true, key, nil
}

// Applied is what one batch changes in the store.
type Applied struct {
	// Keys are the idempotency keys (customer, id) of the events applied.
	Keys [][2]string
	// Offsets maps topic/partition to the next offset after the batch.
	Offsets map[TopicPartition]int64
}

// TopicPartition names one input partition.
type TopicPartition struct {
	Topic     string
	Partition int
}

// Reset empties a, keeping its storage.
func (a *Applied) Reset() {
	clear(a.Keys)
	a.Keys = a.Keys[:0]
	clear(a.Offsets)
}

// Commit records a batch: its idempotency keys and, last, its offsets.
// Normally this is one transaction. A batch too big for one is split; the
// keys go first and the offsets in the final transaction, so a crash part
// way leaves some events marked applied and the offsets unmoved, and the
// redelivered batch skips exactly those events.
func (s *Store) Commit(a *Applied) error {
	now := time.Now()
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(now.UnixMilli()))
	expires := uint64(now.Add(s.window).Unix())

	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	set := func(e *badger.Entry) error {
		err := txn.SetEntry(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = txn.SetEntry(e)
		}
		return err
	}
	for _, k := range a.Keys {
		e := badger.NewEntry(dedupKey(nil, k[0], k[1]), stamp[:])
		e.ExpiresAt = expires
		if err := set(e); err != nil {
			return fmt.Errorf("store idempotency keys: %w", err)
		}
	}
	for tp, next := range a.Offsets {
		v := binary.BigEndian.AppendUint64(nil, uint64(next))
		if err := set(badger.NewEntry(offsetKey(tp.Topic, tp.Partition), v)); err != nil {
			return fmt.Errorf("store offsets: %w", err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	return nil
}

// badgerLogger routes Badger's own logging through zerolog, one level down:
// Badger logs routine compaction at info, which is noise for an operator.
type badgerLogger struct{ log zerolog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error().Msgf(f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn().Msgf(f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log.Debug().Msgf(f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.log.Trace().Msgf(f, a...) }
