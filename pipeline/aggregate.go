package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// Aggregates are kept as running totals in the partition's state, next to
// the idempotency keys, and written to ClickHouse as absolute values with
// the partition's batch sequence as version. That is what makes the
// pre-aggregated tables exact under redelivery: a batch applied again
// computes the same totals from the same state, and ClickHouse keeps the
// row of the highest version. (A materialized view summing rated_lines
// would count a re-inserted batch twice until the merge.)
//
// State key: 'a' p(4) granularity(1) window-start(8) unit(1) customer 0
// price-key 0 provider. Value: quantity(8) events(8) cost(16) charge(16).
const kindAggregate byte = 'a'

// kindSeq keys the partition's batch sequence: 's' p(4) -> seq(8).
const kindSeq byte = 's'

type aggregator struct {
	partition int
	window    time.Duration // dedup window: how long a window's total may still change
	totals    map[string]*sinks.Aggregate
	order     []string // keys in first-touch order, for stable output
	key       []byte
}

func newAggregator(partition int, window time.Duration) *aggregator {
	return &aggregator{partition: partition, window: window, totals: make(map[string]*sinks.Aggregate)}
}

func (a *aggregator) reset() {
	clear(a.totals)
	a.order = a.order[:0]
}

func windowOf(g sinks.Granularity, t time.Time) time.Time {
	t = t.UTC()
	if g == sinks.GranularityDay {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return t.Truncate(time.Hour)
}

func (a *aggregator) stateKey(dst []byte, g sinks.Granularity, start time.Time, u schemas.Unit, customer, priceKey, provider string) []byte {
	dst = partKey(dst, kindAggregate, a.partition)
	dst = append(dst, byte(g))
	dst = binary.BigEndian.AppendUint64(dst, uint64(start.Unix()))
	dst = append(dst, byte(u))
	dst = append(dst, customer...)
	dst = append(dst, 0)
	dst = append(dst, priceKey...)
	dst = append(dst, 0)
	return append(dst, provider...)
}

// add folds one rated event into the hourly and daily totals, loading a
// total from state the first time the batch touches it.
func (a *aggregator) add(txn *badger.Txn, r *sinks.RatedEvent) error {
	provider := r.Provider
	for _, g := range [...]sinks.Granularity{sinks.GranularityHour, sinks.GranularityDay} {
		start := windowOf(g, r.Event.Time)
		for _, l := range r.Lines {
			a.key = a.stateKey(a.key, g, start, l.Unit, r.Event.CustomerID, r.PriceKey, provider)
			t := a.totals[string(a.key)]
			if t == nil {
				k := string(a.key)
				t = &sinks.Aggregate{
					Granularity: g, WindowStart: start, CustomerID: r.Event.CustomerID,
					Provider: provider, PriceKey: r.PriceKey, Unit: l.Unit, Partition: int32(a.partition),
				}
				if err := loadAggregate(txn, a.key, t); err != nil {
					return err
				}
				a.totals[k] = t
				a.order = append(a.order, k)
			}
			t.Quantity += l.Quantity
			t.Events++
			var ok1, ok2 bool
			t.Cost, ok1 = t.Cost.Add(l.Cost)
			t.Charge, ok2 = t.Charge.Add(l.Charge)
			if !ok1 || !ok2 {
				return fmt.Errorf("aggregate of %s %s %s overflows", r.Event.CustomerID, r.PriceKey, l.Unit)
			}
		}
	}
	return nil
}

func loadAggregate(txn *badger.Txn, key []byte, t *sinks.Aggregate) error {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read aggregate: %w", err)
	}
	return it.Value(func(v []byte) error {
		if len(v) != 48 {
			return fmt.Errorf("BUG: aggregate value of %d bytes", len(v))
		}
		t.Quantity = int64(binary.BigEndian.Uint64(v))
		t.Events = int64(binary.BigEndian.Uint64(v[8:]))
		var err1, err2 error
		t.Cost, err1 = rating.AmountFromBinary(v[16:32])
		t.Charge, err2 = rating.AmountFromBinary(v[32:48])
		return errors.Join(err1, err2)
	})
}

// flush appends the batch's touched totals to out with version seq and
// their state mutations to muts.
func (a *aggregator) flush(out []sinks.Aggregate, muts []Mutation, seq uint64) ([]sinks.Aggregate, []Mutation) {
	for _, k := range a.order {
		t := a.totals[k]
		t.Version = seq
		out = append(out, *t)
		v := make([]byte, 0, 48)
		v = binary.BigEndian.AppendUint64(v, uint64(t.Quantity))
		v = binary.BigEndian.AppendUint64(v, uint64(t.Events))
		v = t.Cost.AppendBinary(v)
		v = t.Charge.AppendBinary(v)
		end := t.WindowStart.Add(time.Hour)
		if t.Granularity == sinks.GranularityDay {
			end = t.WindowStart.AddDate(0, 0, 1)
		}
		// Events older than the dedup window are refused, so a window that
		// ended longer ago than that cannot change again.
		muts = append(muts, Mutation{Key: []byte(k), Value: v, ExpiresAt: uint64(end.Add(a.window).Unix())})
	}
	return out, muts
}

func seqKey(partition int) []byte { return partKey(nil, kindSeq, partition) }

// Seq returns the partition's last batch sequence number (0 when none).
func (s *Store) Seq(partition int) (uint64, error) {
	var seq uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(seqKey(partition))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("BUG: sequence value of %d bytes", len(v))
			}
			seq = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("read batch sequence of partition %d: %w", partition, err)
	}
	return seq, nil
}
