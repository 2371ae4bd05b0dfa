package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// Re-rating. `tariff replay` reads a range of rated_lines, rebuilds each
// event's normalized usage from its rows and publishes one rerate command
// per event to the command topic, keyed by customer id. The partition that
// owns the customer applies it in stream order, like any other input:
//
//  1. once: the command id is an idempotency key in the same store and
//     window as events, so a redelivered or republished command is a
//     duplicate;
//  2. only for an event applied here, within the dedup window (its
//     idempotency key is held), whose rating in force is the one the
//     replay read (old.run): otherwise the old amounts are not, or no
//     longer, what the aggregates hold, and taking them out would make
//     the totals wrong;
//  3. rated with the partition's rater: the prices and rate card in force
//     at the event's time in the current price state;
//  4. the old lines are taken out of the running totals (old price key and
//     provider, the event's windows) and the new ones put in, and the new
//     rated event goes to the sinks with the run id: rated_lines rows of
//     the event are replaced (same key, later rated_at), and the
//     aggregates get new absolute totals with a newer version.
//
// Anything refused (malformed, not applied here, stale, no price now, old
// amounts not in the totals) is dead-lettered with the reason, stage
// "rerate", and changes nothing. Balances are not drawn again: prepaid
// draws of the first rating stand (README, "Re-rating").

// RerateKind is the kind of a rerate command in the command format.
const RerateKind = "rerate"

// stageRerate names refused rerate commands in the dead-letter topic.
const stageRerate = "rerate"

// kindRerun keys, per event re-rated in a partition, the rating run in
// force: 'e' p(4) customer 0x00 event id -> run id. An event never
// re-rated has none (its run is ""). It expires with the event's
// idempotency key. ('e' is free: store.go lists the kinds in use.)
const kindRerun byte = 'e'

// maxRunLen bounds a run id.
const maxRunLen = 128

// Rerate is a rerate command, as JSON on the command topic:
//
//	{"kind":"rerate","id":"rerate:fix-1:evt-42","customer_id":"acme","run":"fix-1",
//	 "event":{"id":"evt-42","time":"2026-11-20T09:30:00.123Z","provider":"anthropic",
//	   "model":"claude-sonnet-4-5","service_tier":"standard","source":"gateway",
//	   "dimensions":[{"key":"team","value":"search"}],
//	   "quantities":{"input":1200,"output":330,"requests":1}},
//	 "old":{"run":"","price_key":"claude-sonnet-4-5","provider":"anthropic",
//	   "rated_at":"2026-11-20T09:30:02Z",
//	   "lines":[{"unit":"input","quantity":1200,"cost":"0.0036","charge":"0.00468"},
//	            {"unit":"output","quantity":330,"cost":"0.00495","charge":"0.006435"}]}}
//
// id must be "rerate:<run>:<event id>". old is the rating in force when the
// replay read it: the run that wrote it ("" for live usage), the price
// entry and its provider (the aggregates' key), the latest rated_at of
// its rows and every line with its exact amounts.
type Rerate struct {
	Kind       string      `json:"kind"`
	ID         string      `json:"id"`
	CustomerID string      `json:"customer_id"`
	Run        string      `json:"run"`
	Event      RerateEvent `json:"event"`
	Old        RerateOld   `json:"old"`
}

// RerateEvent is the normalized usage of the event to re-rate.
type RerateEvent struct {
	ID          string              `json:"id"`
	Time        time.Time           `json:"time"`
	Provider    string              `json:"provider,omitempty"`
	Model       string              `json:"model"`
	ServiceTier string              `json:"service_tier,omitempty"`
	Source      string              `json:"source,omitempty"`
	Dimensions  []schemas.Dimension `json:"dimensions,omitempty"`
	// Quantities by unit name (schemas.Unit), every unit the event counted.
	Quantities map[string]int64 `json:"quantities"`
}

// RerateOld is the rating a rerate replaces.
type RerateOld struct {
	Run      string       `json:"run"`
	PriceKey string       `json:"price_key"`
	Provider string       `json:"provider"`
	RatedAt  time.Time    `json:"rated_at,omitzero"`
	Lines    []RerateLine `json:"lines"`
}

// RerateLine is one line of the old rating.
type RerateLine struct {
	Unit     string        `json:"unit"`
	Quantity int64         `json:"quantity"`
	Cost     rating.Amount `json:"cost"`
	Charge   rating.Amount `json:"charge"`
}

// RerateID is the id of the rerate command of run for an event: the
// idempotency key that makes a run apply to each event at most once.
func RerateID(run, eventID string) string { return "rerate:" + run + ":" + eventID }

// ValidRunID checks a run id: 1 to 128 letters, digits, '.', '_' or '-'
// (no ':', so a command id splits one way only).
func ValidRunID(run string) error {
	if run == "" || len(run) > maxRunLen {
		return fmt.Errorf("run: %q: expected 1 to %d characters", run, maxRunLen)
	}
	for _, r := range run {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("run: %q: expected letters, digits, '.', '_' or '-'", run)
		}
	}
	return nil
}

// isRerate reports whether a command-format message is a rerate command.
func isRerate(msg []byte) bool { return isKind(msg, RerateKind) }

// decodeRerate reads a rerate command strictly (decodeStrict).
func decodeRerate(msg []byte) (*Rerate, error) {
	var c Rerate
	if err := decodeStrict(msg, RerateKind, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// usage checks the command's own fields and returns the event to rate and
// the old lines. The event's limits (time, quantities) are checked by
// UsageEvent.Validate afterwards, like any event's.
func (c *Rerate) usage() (schemas.UsageEvent, []sinks.Line, error) {
	var ev schemas.UsageEvent
	if err := ValidRunID(c.Run); err != nil {
		return ev, nil, fmt.Errorf("rerate.%w", err)
	}
	if c.CustomerID == "" {
		return ev, nil, errors.New("rerate.customer_id: missing customer id")
	}
	if c.Event.ID == "" {
		return ev, nil, errors.New("rerate.event.id: missing event id")
	}
	if want := RerateID(c.Run, c.Event.ID); c.ID != want {
		return ev, nil, fmt.Errorf("rerate.id: %q: expected %q (rerate:<run>:<event id>)", c.ID, want)
	}
	if c.Old.Run != "" {
		if err := ValidRunID(c.Old.Run); err != nil {
			return ev, nil, fmt.Errorf("rerate.old.%w", err)
		}
	}
	if c.Old.PriceKey == "" {
		return ev, nil, errors.New("rerate.old.price_key: missing: the price entry of the old rating keys the totals to correct")
	}
	if len(c.Old.Lines) == 0 {
		return ev, nil, errors.New("rerate.old.lines: none: an event with no lines costs nothing and has nothing to re-rate")
	}
	tier, err := schemas.ParseTier(c.Event.ServiceTier)
	if err != nil {
		return ev, nil, fmt.Errorf("rerate.event.service_tier: %w", err)
	}
	ev = schemas.UsageEvent{
		ID: c.Event.ID, Time: c.Event.Time.UTC(), CustomerID: c.CustomerID, Dimensions: c.Event.Dimensions,
		Provider: c.Event.Provider, Model: c.Event.Model, Tier: tier, Source: schemas.Source(c.Event.Source),
	}
	for name, q := range c.Event.Quantities {
		u, ok := schemas.ParseUnit(name)
		if !ok {
			return ev, nil, fmt.Errorf("rerate.event.quantities: unknown unit %q", name)
		}
		ev.Quantities[u] = q
	}
	lines := make([]sinks.Line, 0, len(c.Old.Lines))
	for i, l := range c.Old.Lines {
		u, ok := schemas.ParseUnit(l.Unit)
		if !ok {
			return ev, nil, fmt.Errorf("rerate.old.lines[%d].unit: unknown unit %q", i, l.Unit)
		}
		for _, prev := range lines {
			if prev.Unit == u {
				return ev, nil, fmt.Errorf("rerate.old.lines[%d].unit: %s appears twice", i, u)
			}
		}
		if l.Quantity < 0 || l.Cost.Sign() < 0 || l.Charge.Sign() < 0 {
			return ev, nil, fmt.Errorf("rerate.old.lines[%d]: quantity %d, cost %s, charge %s: expected none negative", i, l.Quantity, l.Cost, l.Charge)
		}
		if l.Quantity != ev.Quantities[u] {
			return ev, nil, fmt.Errorf("rerate.old.lines[%d]: %s quantity %d differs from the event's %d: the event must be rebuilt from the same rows", i, u, l.Quantity, ev.Quantities[u])
		}
		lines = append(lines, sinks.Line{Unit: u, Quantity: l.Quantity, Cost: l.Cost, Charge: l.Charge})
	}
	return ev, lines, nil
}

// rerate applies one rerate command (see the comment at the top). A
// refusal is dead-lettered and changes nothing; err is a failure to read
// state, which stops the batch.
func (p *Processor) rerate(txn *badger.Txn, m *kafka.Message, now time.Time) error {
	refuse := func(err error) error {
		p.deadLetter(m, stageRerate, err.Error())
		return nil
	}
	c, err := decodeRerate(m.Value)
	if err != nil {
		return refuse(err)
	}
	ev, old, err := c.usage()
	if err != nil {
		return refuse(err)
	}
	if err := ev.Validate(now); err != nil {
		return refuse(fmt.Errorf("rerate.event.%w", err))
	}
	window := p.deps.Store.Window()
	if age := now.Sub(ev.Time); age > window {
		return refuse(fmt.Errorf("rerate.event.time: %s is older than the %s deduplication window: the event's idempotency key and totals are no longer kept, so it cannot be re-rated without risking double counting",
			ev.Time.Format(time.RFC3339), window))
	}
	if len(m.Key) > 0 && string(m.Key) != c.CustomerID {
		p.deps.Stats.KeyMismatch.Add(1)
	}

	// 1. Once per command id.
	cmd := [2]string{c.CustomerID, c.ID}
	if _, dup := p.inBatch[cmd]; dup {
		p.duplicate()
		return nil
	}
	if seen, err := p.applied(txn, c.CustomerID, c.ID); err != nil {
		return err
	} else if seen {
		p.duplicate()
		return nil
	}
	cmdKey := append([]byte(nil), p.key...)

	// 2. Only an event applied here, whose rating in force is the old one.
	if _, inBatch := p.inBatch[[2]string{c.CustomerID, ev.ID}]; !inBatch {
		seen, key, err := p.deps.Store.Seen(txn, p.key, p.partition, c.CustomerID, ev.ID)
		p.key = key
		if err != nil {
			return err
		}
		if !seen {
			return refuse(fmt.Errorf("rerate.event.id: event %q of customer %q was not applied by partition %d (not yet, or longer ago than the %s deduplication window): there is no rating here to replace",
				ev.ID, c.CustomerID, p.partition, window))
		}
	}
	runKey := rerunKey(p.partition, c.CustomerID, ev.ID)
	current, err := p.agg.currentRun(txn, runKey)
	if err != nil {
		return err
	}
	if current != c.Old.Run {
		return refuse(fmt.Errorf("rerate.old.run: %q, but the rating in force is run %q's: the event was re-rated after this replay read it; replay the range again to re-rate from the rating in force",
			c.Old.Run, current))
	}

	// 3. Rate with the prices in force now for the event's time.
	// With the customer's rate-card assignments as they stand; a rerate
	// never makes a customer join a card.
	hist, err := p.historyFor(txn, &ev, false)
	if err != nil {
		return err
	}
	mark := len(p.out.Events)
	out := p.nextOut()
	if err := p.rate(&ev, hist, out); err != nil {
		p.out.Events = p.out.Events[:mark]
		if errors.Is(err, ErrUnpriced) {
			p.deps.Stats.Unpriced.Add(1)
			p.src.Unpriced.Inc()
		}
		return refuse(fmt.Errorf("rerate: rate event %q: %w; the old rating stands", ev.ID, err))
	}
	out.Topic, out.Partition, out.Offset, out.Run = m.Topic, m.Partition, m.Offset, c.Run
	// rated_lines keeps the row with the latest rated_at (whole seconds):
	// the new rows must be later than the old ones even when this clock
	// is behind the one that rated them, or in the same second.
	out.RatedAt = now
	if last := c.Old.RatedAt.UTC().Truncate(time.Second); !now.Truncate(time.Second).After(last) && !c.Old.RatedAt.IsZero() {
		out.RatedAt = last.Add(time.Second)
	}

	// 4. Old amounts out of the totals, new ones in.
	refused, err := p.agg.remove(txn, c.CustomerID, ev.Time, c.Old.PriceKey, c.Old.Provider, old)
	if err != nil {
		return err
	}
	if refused != nil {
		p.out.Events = p.out.Events[:mark]
		return refuse(refused)
	}
	if err := p.agg.add(txn, out); err != nil {
		return err
	}

	exp := uint64(ev.Time.Add(window).Unix())
	p.seen.add(cmdKey)
	p.inBatch[cmd] = struct{}{}
	p.agg.reruns[string(runKey)] = c.Run
	p.muts = append(p.muts,
		Mutation{Key: cmdKey, Value: p.stamp[:], ExpiresAt: exp},
		Mutation{Key: runKey, Value: []byte(c.Run), ExpiresAt: exp})
	return nil
}

func rerunKey(partition int, customer, eventID string) []byte {
	k := partKey(make([]byte, 0, 6+len(customer)+len(eventID)), kindRerun, partition)
	k = append(k, customer...)
	k = append(k, 0)
	return append(k, eventID...)
}

// currentRun returns the rating run in force for the event of runKey: set
// earlier in this batch, else as committed, else "" (live).
func (a *aggregator) currentRun(txn *badger.Txn, runKey []byte) (string, error) {
	if run, ok := a.reruns[string(runKey)]; ok {
		return run, nil
	}
	it, err := txn.Get(runKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read rating run: %w", err)
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return "", fmt.Errorf("read rating run: %w", err)
	}
	return string(v), nil
}

// formatLines is for refusal reasons.
func formatLines(lines []sinks.Line) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d cost %s charge %s", l.Unit, l.Quantity, l.Cost, l.Charge)
	}
	return b.String()
}
