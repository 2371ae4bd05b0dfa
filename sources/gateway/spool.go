package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// Spool is the local durable queue of events Kafka did not take. Entries are
// kept in arrival order under an increasing sequence number and published
// oldest first (FIFO); an entry is deleted only after Kafka acknowledged it,
// so a crash between the two publishes it again (at-least-once; the
// pipeline deduplicates by event id).
//
// Key layout: 'q' + sequence (8 bytes, big endian) for queued events; 'p'
// + sequence for parked events, which Kafka refused outright (too large):
// they stay on disk, counted and logged, for an operator, and never block
// the queue. Value: uvarint topic length, topic, uvarint key length, key,
// message value.
type Spool struct {
	db     *badger.DB
	seq    atomic.Uint64
	depth  atomic.Int64
	parked atomic.Int64
	log    zerolog.Logger
}

const (
	spoolQueued byte = 'q'
	spoolParked byte = 'p'
)

// OpenSpool opens (creating if needed) the spool in cfg.Dir.
func OpenSpool(cfg SpoolConfig, log zerolog.Logger) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("gateway.spool.dir: empty: expected a directory")
	}
	sync := cfg.SyncWrites == nil || *cfg.SyncWrites
	log = log.With().Str("component", "gateway").Str("part", "spool").Logger()
	opts := badger.DefaultOptions(cfg.Dir).
		// Every write is fsynced unless configured otherwise: the spool
		// holds events only while Kafka is down, and an event in the page
		// cache alone would not survive the machine. Concurrent writers
		// share an fsync (Badger commits queued transactions together).
		WithSyncWrites(sync).
		WithLogger(badgerLogger{log}).
		// The spool is small and mostly empty: small tables, small caches.
		WithMemTableSize(8 << 20).
		WithValueLogFileSize(32 << 20).
		WithNumVersionsToKeep(1).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open gateway spool %s: %w", cfg.Dir, err)
	}
	s := &Spool{db: db, log: log}
	if err := s.scan(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// scan counts the entries and finds the next sequence number.
func (s *Spool) scan() error {
	var last uint64
	var depth, parked int64
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				continue
			}
			switch k[0] {
			case spoolQueued:
				depth++
			case spoolParked:
				parked++
			default:
				continue
			}
			last = max(last, binary.BigEndian.Uint64(k[1:]))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan gateway spool: %w", err)
	}
	s.seq.Store(last)
	s.depth.Store(depth)
	s.parked.Store(parked)
	return nil
}

// Depth is the number of events waiting to be published.
func (s *Spool) Depth() int64 { return s.depth.Load() }

// Parked is the number of events Kafka refused outright.
func (s *Spool) Parked() int64 { return s.parked.Load() }

func encodeEntry(m *kafka.Message) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen32+len(m.Topic)+len(m.Key)+len(m.Value))
	b = binary.AppendUvarint(b, uint64(len(m.Topic)))
	b = append(b, m.Topic...)
	b = binary.AppendUvarint(b, uint64(len(m.Key)))
	b = append(b, m.Key...)
	return append(b, m.Value...)
}

func decodeEntry(b []byte) (kafka.Message, error) {
	var m kafka.Message
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return m, errors.New("corrupt spool entry: topic")
	}
	m.Topic, b = string(b[w:w+int(n)]), b[w+int(n):]
	n, w = binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return m, errors.New("corrupt spool entry: key")
	}
	m.Key, m.Value = b[w:w+int(n)], b[w+int(n):]
	return m, nil
}

func spoolKey(kind byte, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = kind
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// Append stores msgs at the end of the queue, in order, durably (one
// transaction, fsynced when sync_writes is on). It blocks for the write;
// safe for concurrent use. The spool copies msgs.
func (s *Spool) Append(msgs []kafka.Message) error { return s.append(spoolQueued, msgs) }

// park stores msgs aside, out of the queue.
func (s *Spool) park(msgs []kafka.Message) error { return s.append(spoolParked, msgs) }

func (s *Spool) append(kind byte, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for i := range msgs {
			// Sequence numbers are taken inside the transaction, in order;
			// two concurrent Appends interleave by sequence, each in order.
			if err := txn.Set(spoolKey(kind, s.seq.Add(1)), encodeEntry(&msgs[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(msgs) > 1 {
		h := len(msgs) / 2
		if err := s.append(kind, msgs[:h]); err != nil {
			return err
		}
		return s.append(kind, msgs[h:])
	}
	if err != nil {
		return fmt.Errorf("write gateway spool: %w", err)
	}
	if kind == spoolQueued {
		s.depth.Add(int64(len(msgs)))
	} else {
		s.parked.Add(int64(len(msgs)))
	}
	return nil
}

// spooled is a batch read from the queue: the messages and their keys, and
// entries that could not be decoded (to be parked, never published).
type spooled struct {
	msgs    []kafka.Message
	keys    [][]byte
	bad     []kafka.Message
	badKeys [][]byte
}

// peek reads up to n of the oldest queued events into dst (reusing its
// slices). The messages own their bytes.
func (s *Spool) peek(dst *spooled, n int) error {
	dst.msgs, dst.keys, dst.bad, dst.badKeys = dst.msgs[:0], dst.keys[:0], dst.bad[:0], dst.badKeys[:0]
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{spoolQueued}
		opts.PrefetchSize = min(n, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid() && len(dst.msgs) < n; it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			m, err := decodeEntry(v)
			if err != nil {
				// A corrupt entry cannot be published: it is parked, not
				// left to block the queue.
				s.log.Error().Err(err).Hex("key", item.Key()).Msg("corrupt spool entry: parking it")
				dst.bad = append(dst.bad, kafka.Message{Value: v})
				dst.badKeys = append(dst.badKeys, item.KeyCopy(nil))
				continue
			}
			dst.msgs = append(dst.msgs, m)
			dst.keys = append(dst.keys, item.KeyCopy(nil))
		}
		return nil
	})
}

// remove deletes published (or parked) entries.
func (s *Spool) remove(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete from gateway spool: %w", err)
	}
	s.depth.Add(-int64(len(keys)))
	return nil
}

// gc reclaims value-log space after a drain.
func (s *Spool) gc() {
	for s.db.RunValueLogGC(0.5) == nil {
	}
}

// Close closes the Badger store. Call it after the recorder stopped.
func (s *Spool) Close() error { return s.db.Close() }

// badgerLogger routes Badger's logging through zerolog, one level down:
// Badger logs routine work at info.
type badgerLogger struct{ log zerolog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error().Msgf(f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn().Msgf(f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log.Debug().Msgf(f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.log.Trace().Msgf(f, a...) }
