package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/rs/zerolog"
)

// StoreConfig configures the local state store.
type StoreConfig struct {
	// Dir is the Badger directory. Default "./tariff-data/state".
	Dir string `yaml:"dir"`
	// DedupWindow is how long an idempotency key is remembered. Partners
	// and replays resend old events, so the default is 35 days. An event
	// older than the window is refused (dead-lettered): tariff could no
	// longer tell whether it was billed already.
	DedupWindow time.Duration `yaml:"dedup_window"`
	// SyncWrites fsyncs every commit. Default true: the Kafka offset is
	// committed right after the state commit, so a commit that only reached
	// the page cache could be lost in a power cut while Kafka already moved
	// on. (The changelog topic would still restore it; fsync keeps a
	// restart from needing that.)
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

// Key layout. Every key of partition-owned state starts with a one-byte kind
// and the 4-byte partition number, so that a partition's state can be
// restored from its changelog without touching another's, and a prefix scan
// of one kind never reads another. Kinds in use: 'o', 'd', 'c' here, 'a'
// and 's' (aggregate.go), 'b', 'n' and 'p' (balances.go), 'r' (refresh.go:
// the balance refresh's cursor), 'e' (rerate.go), 'k' (assign.go: rate-card
// assignments); a new kind must take another byte.
const (
	kindOffset    byte = 'o' // o p(4) topic -> next offset (8)
	kindDedup     byte = 'd' // d p(4) customer 0x00 event id -> applied-at unix ms (8)
	kindChangelog byte = 'c' // c p(4) -> next changelog offset (8) + highest generation (4); local only
	kindDue       byte = 'n' // n p(4) due unix ns (8, big-endian) customer -> empty: the accounts' NextChange index
	kindPeriod    byte = 'p' // p p(4) customer 0x00 start unix ns (8, big-endian) -> balance.PeriodUsage (binary)
)

func partKey(dst []byte, kind byte, partition int) []byte {
	dst = append(dst[:0], kind)
	return binary.BigEndian.AppendUint32(dst, uint32(partition))
}

func offsetKey(partition int, topic string) []byte {
	return append(partKey(make([]byte, 0, 5+len(topic)), kindOffset, partition), topic...)
}

func dedupKey(dst []byte, partition int, customer, id string) []byte {
	dst = partKey(dst, kindDedup, partition)
	dst = append(dst, customer...)
	dst = append(dst, 0)
	return append(dst, id...)
}

// Mutation is one key written or deleted by a batch. A batch's mutations
// travel together: to Badger in one transaction and to the changelog topic
// in one record, so a partition's state can be rebuilt on another
// instance. Mutations apply in order, so a delete after a write of the
// same key wins.
type Mutation struct {
	Key       []byte
	Value     []byte
	ExpiresAt uint64 // unix seconds; 0 = never
	// Delete removes Key (Value and ExpiresAt are ignored). Deleting a key
	// that does not exist is harmless, which keeps replays idempotent.
	Delete bool
}

// Store is the Badger-backed state of the pipeline: per partition, the
// idempotency keys of applied events, the next offset of each input topic,
// and how far the partition's changelog has been applied here.
type Store struct {
	dir    string
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
		WithMemTableSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumVersionsToKeep(1).
		// Badger's default 256 MiB block cache would be half of tariff's
		// memory budget; the processors keep their hot state (aggregates,
		// the dedup filter) in memory themselves.
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithNumMemtables(3).
		// Each flush and compaction builds its table in a buffer
		// the size of the table: with a million accounts, four compactors
		// and 32 MiB memtables held about 300 MB of builders at once. Two
		// compactors and 16 MiB memtables take the peak RSS at 1M
		// customers from 1,100 to 888 MiB at the same CPU per event.
		WithNumCompactors(2).
		// No block compression: the state is idempotency keys, hashes and
		// packed amounts, which compress little, while compressing every
		// flushed and compacted block kept a second copy of each table in
		// the builders (retained by Badger's pool) and its CPU. Without
		// it the end-to-end run at 100k customers takes 54-60 instead of
		// 68-76 CPU s per million events, for somewhat more disk.
		WithCompression(options.None)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", cfg.Dir, err)
	}
	return &Store{dir: cfg.Dir, db: db, window: cfg.DedupWindow, log: log}, nil
}

// DB exposes the Badger handle to stages that keep their own state in it
// (price versions, rate cards).
func (s *Store) DB() *badger.DB { return s.db }

// Window is the deduplication window.
func (s *Store) Window() time.Duration { return s.window }

// Close flushes and closes Badger.
func (s *Store) Close() error { return s.db.Close() }

// NextOffsets returns, for each topic with a stored offset in partition,
// the first offset not yet applied.
func (s *Store) NextOffsets(partition int, topics []string) (map[string]int64, error) {
	out := make(map[string]int64, len(topics))
	err := s.db.View(func(txn *badger.Txn) error {
		for _, t := range topics {
			it, err := txn.Get(offsetKey(partition, t))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := it.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("BUG: offset value of %d bytes", len(v))
				}
				out[t] = int64(binary.BigEndian.Uint64(v))
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stored offsets of partition %d: %w", partition, err)
	}
	return out, nil
}

// Seen reports whether the event with this idempotency key was applied in
// partition within the dedup window. key is scratch space, returned for
// reuse.
func (s *Store) Seen(txn *badger.Txn, key []byte, partition int, customer, id string) (bool, []byte, error) {
	key = dedupKey(key, partition, customer, id)
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, key, nil
	}
	if err != nil {
		return false, key, fmt.Errorf("look up idempotency key: %w", err)
	}
	return true, key, nil
}

// ChangelogPos is how far a partition's changelog has been applied here.
type ChangelogPos struct {
	Next       int64 // next changelog offset to read; 0 = from the start
	Generation int32 // highest group generation applied; older ones are fenced
}

// ChangelogPos returns the stored position of partition's changelog.
func (s *Store) ChangelogPos(partition int) (ChangelogPos, error) {
	var pos ChangelogPos
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(partKey(nil, kindChangelog, partition))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if len(v) != 12 {
				return fmt.Errorf("BUG: changelog position of %d bytes", len(v))
			}
			pos.Next = int64(binary.BigEndian.Uint64(v))
			pos.Generation = int32(binary.BigEndian.Uint32(v[8:]))
			return nil
		})
	})
	if err != nil {
		return pos, fmt.Errorf("read changelog position of partition %d: %w", partition, err)
	}
	return pos, nil
}

// Apply writes a batch's mutations and the partition's new changelog
// position. Normally this is one transaction. A batch too big for one is
// split, the position going last: a crash part way leaves the position
// behind, and the changelog record is applied again (mutations are
// absolute values, so applying one twice is harmless).
func (s *Store) Apply(partition int, muts []Mutation, pos ChangelogPos) error {
	now := uint64(time.Now().Unix())
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	// write sets e, or deletes its key; a transaction grown too big is
	// committed and the write goes to a new one.
	write := func(e *badger.Entry, del bool) error {
		for retried := false; ; retried = true {
			var err error
			if del {
				err = txn.Delete(e.Key)
			} else {
				err = txn.SetEntry(e)
			}
			if retried || !errors.Is(err, badger.ErrTxnTooBig) {
				return err
			}
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
		}
	}
	for _, m := range muts {
		if m.Delete {
			if err := write(&badger.Entry{Key: m.Key}, true); err != nil {
				return fmt.Errorf("store state of partition %d: %w", partition, err)
			}
			continue
		}
		if m.ExpiresAt != 0 && m.ExpiresAt <= now {
			continue // restored from an old changelog record and already expired
		}
		e := badger.NewEntry(m.Key, m.Value)
		e.ExpiresAt = m.ExpiresAt
		if err := write(e, false); err != nil {
			return fmt.Errorf("store state of partition %d: %w", partition, err)
		}
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(pos.Next))
	v = binary.BigEndian.AppendUint32(v, uint32(pos.Generation))
	if err := write(badger.NewEntry(partKey(nil, kindChangelog, partition), v), false); err != nil {
		return fmt.Errorf("store changelog position of partition %d: %w", partition, err)
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("commit state of partition %d: %w", partition, err)
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

// DedupFilter builds the Bloom filter of partition's idempotency keys,
// sized for twice as many keys as it holds now (and at least a million).
func (s *Store) DedupFilter(partition int) (*bloom, error) {
	prefix := partKey(nil, kindDedup, partition)
	count := func(fn func(k []byte)) error {
		return s.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				fn(it.Item().Key())
			}
			return nil
		})
	}
	n := 0
	if err := count(func([]byte) { n++ }); err != nil {
		return nil, fmt.Errorf("count idempotency keys of partition %d: %w", partition, err)
	}
	b := newBloom(max(2*n, 1<<20))
	if err := count(b.add); err != nil {
		return nil, fmt.Errorf("load idempotency keys of partition %d: %w", partition, err)
	}
	return b, nil
}
