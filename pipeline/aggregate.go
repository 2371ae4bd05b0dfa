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
// One state entry holds every unit of one (window, customer, price entry),
// so an event costs two state reads and writes (hour and day), not two per
// unit.
//
// State key: 'a' p(4) granularity(1) window-start(8) customer 0 price-key
// 0 provider. Value: per unit present, unit(1) quantity(8) events(8)
// cost(16) charge(16).
const kindAggregate byte = 'a'

// kindSeq keys the partition's batch sequence: 's' p(4) -> seq(8).
const kindSeq byte = 's'

const aggUnitSize = 1 + 8 + 8 + 16 + 16

type unitTotal struct {
	unit         schemas.Unit
	quantity     int64
	events       int64
	cost, charge rating.Amount
}

type aggEntry struct {
	gran     sinks.Granularity
	start    time.Time
	customer string
	provider string
	priceKey string
	// units holds the units used in the window, in first-use order; an
	// event has a handful, so a slice beats an array of every unit.
	units []unitTotal
}

// unit returns the total of u, adding it when the window has none yet.
func (e *aggEntry) unit(u schemas.Unit) *unitTotal {
	for i := range e.units {
		if e.units[i].unit == u {
			return &e.units[i]
		}
	}
	e.units = append(e.units, unitTotal{unit: u})
	return &e.units[len(e.units)-1]
}

type aggregator struct {
	partition int
	window    time.Duration // dedup window: how long a window's total may still change
	totals    map[string]*aggEntry
	order     []string // keys in first-touch order, for stable output
	free      []*aggEntry
	key       []byte

	// cache holds committed totals (their state values) of recently used
	// windows, so that a busy customer's totals are not read back from
	// Badger every batch. Only the partition's processor changes them, and
	// entries are added only after their batch is durable, so the cache is
	// never ahead of the state. It is dropped whole when it outgrows
	// cacheMax: the next batches read Badger again.
	cache    map[string][]byte
	pending  map[string][]byte // this batch's new values, cached on commit
	cacheMax int

	// reruns holds the rating run set by this batch's rerate commands,
	// per event (keyed by rerunKey), until the batch is committed and the
	// state holds it (rerate.go).
	reruns map[string]string
}

func newAggregator(partition int, window time.Duration) *aggregator {
	return &aggregator{partition: partition, window: window, totals: make(map[string]*aggEntry),
		cache: make(map[string][]byte), pending: make(map[string][]byte), cacheMax: 20_000,
		reruns: make(map[string]string)}
}

// committed moves the batch's totals into the cache once the batch is
// durable.
func (a *aggregator) committed() {
	if len(a.cache)+len(a.pending) > a.cacheMax {
		clear(a.cache)
	}
	for k, v := range a.pending {
		a.cache[k] = v
	}
	clear(a.pending)
}

func (a *aggregator) reset() {
	for _, e := range a.totals {
		a.free = append(a.free, e)
	}
	clear(a.totals)
	clear(a.pending)
	clear(a.reruns)
	a.order = a.order[:0]
}

func windowOf(g sinks.Granularity, t time.Time) time.Time {
	t = t.UTC()
	if g == sinks.GranularityDay {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return t.Truncate(time.Hour)
}

func (a *aggregator) stateKey(dst []byte, g sinks.Granularity, start time.Time, customer, priceKey, provider string) []byte {
	dst = partKey(dst, kindAggregate, a.partition)
	dst = append(dst, byte(g))
	dst = binary.BigEndian.AppendUint64(dst, uint64(start.Unix()))
	dst = append(dst, customer...)
	dst = append(dst, 0)
	dst = append(dst, priceKey...)
	dst = append(dst, 0)
	return append(dst, provider...)
}

// entry returns the batch's total of one window, customer and price
// entry, loading it from state the first time the batch touches it. With
// existing, a total the state does not hold is not made: it returns nil.
func (a *aggregator) entry(txn *badger.Txn, g sinks.Granularity, start time.Time, customer, priceKey, provider string, existing bool) (*aggEntry, error) {
	a.key = a.stateKey(a.key, g, start, customer, priceKey, provider)
	if e := a.totals[string(a.key)]; e != nil {
		return e, nil
	}
	var e *aggEntry
	if n := len(a.free); n > 0 {
		e, a.free = a.free[n-1], a.free[:n-1]
		*e = aggEntry{units: e.units[:0]}
	} else {
		e = &aggEntry{}
	}
	e.gran, e.start, e.customer, e.provider, e.priceKey = g, start, customer, provider, priceKey
	if v, ok := a.cache[string(a.key)]; ok {
		if err := decodeAggregate(v, e); err != nil {
			return nil, err
		}
	} else if err := loadAggregate(txn, a.key, e); err != nil {
		return nil, err
	}
	if existing && len(e.units) == 0 {
		a.free = append(a.free, e)
		return nil, nil
	}
	k := string(a.key)
	a.totals[k] = e
	a.order = append(a.order, k)
	return e, nil
}

// add folds one rated event into the hourly and daily totals, loading a
// total from state the first time the batch touches it.
func (a *aggregator) add(txn *badger.Txn, r *sinks.RatedEvent) error {
	for _, g := range [...]sinks.Granularity{sinks.GranularityHour, sinks.GranularityDay} {
		e, err := a.entry(txn, g, windowOf(g, r.Event.Time), r.Event.CustomerID, r.PriceKey, r.Provider, false)
		if err != nil {
			return err
		}
		for _, l := range r.Lines {
			t := e.unit(l.Unit)
			t.quantity += l.Quantity
			t.events++
			var ok1, ok2 bool
			t.cost, ok1 = t.cost.Add(l.Cost)
			t.charge, ok2 = t.charge.Add(l.Charge)
			if !ok1 || !ok2 {
				return fmt.Errorf("aggregate of %s %s %s overflows", r.Event.CustomerID, r.PriceKey, l.Unit)
			}
		}
	}
	return nil
}

// remove takes one event's old lines out of its hourly and daily totals
// (a rerate, rerate.go): each line's quantity, cost and charge, and the
// event from each unit's count. It checks both windows before it changes
// either: when a total does not hold the lines (another price entry or
// provider, or amounts it never counted), refused says so and nothing
// changes. A unit left at zero is kept, so that its zero total is written
// and replaces the old one in ClickHouse.
func (a *aggregator) remove(txn *badger.Txn, customer string, t time.Time, priceKey, provider string, lines []sinks.Line) (refused, err error) {
	var entries [2]*aggEntry
	for i, g := range [...]sinks.Granularity{sinks.GranularityHour, sinks.GranularityDay} {
		start := windowOf(g, t)
		e, err := a.entry(txn, g, start, customer, priceKey, provider, true)
		if err != nil {
			return nil, err
		}
		if e == nil {
			return fmt.Errorf("rerate.old: the %s total of %s from %s holds nothing for price key %q, provider %q: the old lines (%s) were not counted there",
				granName(g), customer, start.Format(time.RFC3339), priceKey, provider, formatLines(lines)), nil
		}
		for _, l := range lines {
			var tot *unitTotal
			for j := range e.units {
				if e.units[j].unit == l.Unit {
					tot = &e.units[j]
				}
			}
			if tot == nil || tot.quantity < l.Quantity || tot.events < 1 || tot.cost.Cmp(l.Cost) < 0 || tot.charge.Cmp(l.Charge) < 0 {
				return fmt.Errorf("rerate.old.lines: %s %d (cost %s, charge %s) is more than the %s total of %s from %s for price key %q, provider %q holds: the old lines were not counted there",
					l.Unit, l.Quantity, l.Cost, l.Charge, granName(g), customer, start.Format(time.RFC3339), priceKey, provider), nil
			}
		}
		entries[i] = e
	}
	for _, e := range entries {
		for _, l := range lines {
			tot := e.unit(l.Unit)
			tot.quantity -= l.Quantity
			tot.events--
			tot.cost, _ = tot.cost.Sub(l.Cost) // checked above: no overflow, not below zero
			tot.charge, _ = tot.charge.Sub(l.Charge)
		}
	}
	return nil, nil
}

func granName(g sinks.Granularity) string {
	if g == sinks.GranularityDay {
		return "daily"
	}
	return "hourly"
}

func loadAggregate(txn *badger.Txn, key []byte, e *aggEntry) error {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read aggregate: %w", err)
	}
	return it.Value(func(v []byte) error { return decodeAggregate(v, e) })
}

func decodeAggregate(v []byte, e *aggEntry) error {
	if len(v)%aggUnitSize != 0 {
		return fmt.Errorf("BUG: aggregate value of %d bytes", len(v))
	}
	for ; len(v) > 0; v = v[aggUnitSize:] {
		u := schemas.Unit(v[0])
		if u >= schemas.NumUnits {
			return fmt.Errorf("BUG: aggregate of unit %d", u)
		}
		t := e.unit(u)
		t.quantity = int64(binary.BigEndian.Uint64(v[1:]))
		t.events = int64(binary.BigEndian.Uint64(v[9:]))
		var err1, err2 error
		t.cost, err1 = rating.AmountFromBinary(v[17:33])
		t.charge, err2 = rating.AmountFromBinary(v[33:49])
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
	}
	return nil
}

// flush appends the batch's touched totals to out, one row per unit, with
// version seq, and their state mutations to muts.
func (a *aggregator) flush(out []sinks.Aggregate, muts []Mutation, seq uint64) ([]sinks.Aggregate, []Mutation) {
	for _, k := range a.order {
		e := a.totals[k]
		v := make([]byte, 0, len(e.units)*aggUnitSize)
		for i := range e.units {
			t := &e.units[i]
			out = append(out, sinks.Aggregate{
				Granularity: e.gran, WindowStart: e.start, CustomerID: e.customer, Provider: e.provider,
				PriceKey: e.priceKey, Unit: t.unit, Quantity: t.quantity, Events: t.events,
				Cost: t.cost, Charge: t.charge, Partition: int32(a.partition), Version: seq,
			})
			v = append(v, byte(t.unit))
			v = binary.BigEndian.AppendUint64(v, uint64(t.quantity))
			v = binary.BigEndian.AppendUint64(v, uint64(t.events))
			v = t.cost.AppendBinary(v)
			v = t.charge.AppendBinary(v)
		}
		end := e.start.Add(time.Hour)
		if e.gran == sinks.GranularityDay {
			end = e.start.AddDate(0, 0, 1)
		}
		// Events older than the dedup window are refused, so a window that
		// ended longer ago than that cannot change again.
		muts = append(muts, Mutation{Key: []byte(k), Value: v, ExpiresAt: uint64(end.Add(a.window).Unix())})
		a.pending[k] = v
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
