package loadgen

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

// Key identifies one expected total: what the documented ClickHouse query
// groups by (customer_id, price_key, unit).
type Key struct {
	CustomerID string
	PriceKey   string
	Unit       schemas.Unit
}

func (k Key) String() string { return k.CustomerID + " " + k.PriceKey + " " + k.Unit.String() }

// Total is the sum of one key's rated lines.
type Total struct {
	Quantity int64
	Cost     decimal.Decimal
	Charge   decimal.Decimal
}

func (t Total) equal(o Total) bool {
	return t.Quantity == o.Quantity && t.Cost.Equal(o.Cost) && t.Charge.Equal(o.Charge)
}

// Totals maps keys to totals: what an observer (ClickHouse, a test's own
// rating) collects to compare with the expectation.
type Totals map[Key]Total

// Add adds one line (or a pre-summed group of lines) to k.
func (t Totals) Add(k Key, quantity int64, cost, charge decimal.Decimal) {
	cur := t[k]
	t[k] = Total{cur.Quantity + quantity, cur.Cost.Add(cost), cur.Charge.Add(charge)}
}

// Line is one expected total as written to expected.json. Money is a
// decimal string (exact); quantities are integers.
type Line struct {
	CustomerID string          `json:"customer_id"`
	PriceKey   string          `json:"price_key"`
	Unit       string          `json:"unit"`
	Quantity   int64           `json:"quantity"`
	Cost       decimal.Decimal `json:"cost"`
	Charge     decimal.Decimal `json:"charge"`
}

// Counts describes the stream's messages and events.
type Counts struct {
	// Messages is every message produced; MessagesByTopic and
	// MessagesByFormat split it.
	Messages         int64            `json:"messages"`
	MessagesByTopic  map[string]int64 `json:"messages_by_topic"`
	MessagesByFormat map[string]int64 `json:"messages_by_format"`
	// Requests is the unique (fresh) requests; Events the unique usage
	// events the decoders make of them (one per gateway or LiteLLM
	// message, one per billable record of a meter message, including the
	// request-count record).
	Requests int64 `json:"requests"`
	Events   int64 `json:"events"`
	// Duplicates re-send an earlier request; DuplicateEvents is the events
	// they decode to (all of them must be ignored). CrossFormat went through
	// the other of gateway and LiteLLM; Late were held back to a random
	// later point of the stream.
	Duplicates            int64 `json:"duplicate_messages"`
	DuplicateEvents       int64 `json:"duplicate_events"`
	CrossFormatDuplicates int64 `json:"cross_format_duplicates"`
	LateDuplicates        int64 `json:"late_duplicates"`
	// Malformed must each reach the dead-letter topic, exactly once.
	Malformed       int64            `json:"malformed_messages"`
	MalformedByKind map[string]int64 `json:"malformed_by_kind"`
	DeadLetterTopic string           `json:"dead_letter_topic"`
}

// StreamInfo records how the stream was made, so a run can be reproduced.
type StreamInfo struct {
	Seed             uint64    `json:"seed"`
	Events           int       `json:"events"`
	Customers        int       `json:"customers"`
	Models           string    `json:"models"`
	ModelCount       int       `json:"model_count"`
	Formats          string    `json:"formats"`
	DupShare         float64   `json:"dup_share"`
	LateDupShare     float64   `json:"late_dup_share"`
	CrossFormatShare float64   `json:"cross_format_share"`
	MalformedShare   float64   `json:"malformed_share"`
	Start            time.Time `json:"start"`
	Span             string    `json:"span"`
	Lateness         string    `json:"lateness"`
	Markup           string    `json:"markup"`
	// PriceVersion is the id tariff gives the price list (bundled.VersionID):
	// the rated rows' price_version must match it for the totals to.
	PriceVersion string `json:"price_version"`
	Topics       Topics `json:"topics"`
}

// Expected is the exact outcome of a stream: totals per (customer, price
// key, unit) and the counts.
type Expected struct {
	Version int `json:"version"`
	// Complete is false when the expectation was taken before the stream
	// ended (it then covers the messages generated so far).
	Complete bool       `json:"complete"`
	Stream   StreamInfo `json:"stream"`
	Counts   Counts     `json:"counts"`
	// Cost and Charge are the grand totals.
	Cost   decimal.Decimal `json:"cost"`
	Charge decimal.Decimal `json:"charge"`
	// Lines are sorted by customer, price key, unit.
	Lines []Line `json:"lines"`
}

// Expected computes the expectation of the messages generated so far
// (Complete once Next has returned false). Costs are quantity x unit price
// in decimal, summed per key; charge is cost x (1 + markup/100). For
// millions of totals prefer WriteExpected, which never holds them all.
func (g *Generator) Expected() *Expected {
	e := g.header()
	e.Lines = make([]Line, 0, len(g.acc))
	g.eachLine(func(l *Line) error {
		e.Lines = append(e.Lines, *l)
		return nil
	})
	return e
}

// WriteExpected writes the expectation to path as Expected.WriteFile does,
// computing each total as it is written, and returns the expectation
// without its lines.
func (g *Generator) WriteExpected(path string) (*Expected, error) {
	e := g.header()
	return e, writeExpected(path, e, g.eachLine)
}

// header returns the expectation without lines. The grand totals need no
// per-key decimals: cost is the sum over unit prices of (quantity at that
// price) x price, and charge is cost x the markup (exact, so the sum of
// the lines' charges is the same).
func (g *Generator) header() *Expected {
	qty := make([]int64, len(g.prices))
	for k, q := range g.acc {
		_, _, _, pi := unpackAcc(k)
		qty[pi] += q
	}
	e := &Expected{Version: 1, Complete: g.pos == g.total, Stream: g.streamInfo(), Counts: g.countsOut()}
	for i, q := range qty {
		if q != 0 {
			e.Cost = e.Cost.Add(decimal.NewFromInt(q).Mul(g.prices[i].Decimal()))
		}
	}
	e.Charge = e.Cost.Mul(g.markup)
	return e
}

// eachLine calls fn with every expected total in order (customer, price
// key, unit). The Line is reused between calls.
func (g *Generator) eachLine(fn func(*Line) error) error {
	priceDec := make([]decimal.Decimal, len(g.prices))
	for i, p := range g.prices {
		priceDec[i] = p.Decimal()
	}
	// Packed keys sort by customer, price key (numbered in key order),
	// unit, then unit price: one pass over the sorted keys groups them.
	keys := make([]uint64, 0, len(g.acc))
	for k := range g.acc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var l Line
	for i := 0; i < len(keys); {
		group := keys[i] >> 20 // customer, price key, unit
		var qty int64
		cost := decimal.Zero
		for ; i < len(keys) && keys[i]>>20 == group; i++ {
			_, _, _, pi := unpackAcc(keys[i])
			q := g.acc[keys[i]]
			qty += q
			cost = cost.Add(decimal.NewFromInt(q).Mul(priceDec[pi]))
		}
		cust, key, u, _ := unpackAcc(group << 20)
		l = Line{g.CustomerID(cust), g.keys[key], u.String(), qty, cost, cost.Mul(g.markup)}
		if err := fn(&l); err != nil {
			return err
		}
	}
	return nil
}

func (g *Generator) streamInfo() StreamInfo {
	c := &g.cfg
	return StreamInfo{
		Seed: c.Seed, Events: c.Events, Customers: c.Customers, Models: c.Models, ModelCount: len(g.models),
		Formats: c.Formats.String(), DupShare: c.DupShare, LateDupShare: c.LateDupShare,
		CrossFormatShare: c.CrossFormatShare, MalformedShare: c.MalformedShare,
		Start: g.start, Span: shortDuration(c.Span), Lateness: c.Lateness.String(), Markup: c.Markup,
		PriceVersion: g.priceVersion, Topics: c.Topics,
	}
}

func (g *Generator) countsOut() Counts {
	c := &g.counts
	out := Counts{
		Messages: c.messages, MessagesByTopic: map[string]int64{}, MessagesByFormat: map[string]int64{},
		Requests: c.requests, Events: c.events,
		Duplicates: c.dups, DuplicateEvents: c.dupEvents, CrossFormatDuplicates: c.crossDups, LateDuplicates: c.lateDups,
		Malformed: c.malformed, MalformedByKind: map[string]int64{}, DeadLetterTopic: g.cfg.Topics.DeadLetter,
	}
	for t, n := range c.byTopic {
		out.MessagesByTopic[t] = n
	}
	for f, n := range c.byFormat {
		if n > 0 {
			out.MessagesByFormat[Format(f).String()] = n
		}
	}
	for k, n := range c.malformedBy {
		if n > 0 {
			out.MalformedByKind[Malformation(k).String()] = n
		}
	}
	return out
}

// Plan generates the whole stream without publishing it and returns its
// expectation: what a test needs before (or instead of) producing.
func Plan(cfg Config) (*Expected, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	var m Message
	for g.Next(&m) {
	}
	return g.Expected(), nil
}

// Totals returns the expected totals as a map.
func (e *Expected) Totals() (Totals, error) {
	t := make(Totals, len(e.Lines))
	for _, l := range e.Lines {
		u, ok := schemas.ParseUnit(l.Unit)
		if !ok {
			return nil, fmt.Errorf("expected line %s %s: unit %q: unknown", l.CustomerID, l.PriceKey, l.Unit)
		}
		t.Add(Key{l.CustomerID, l.PriceKey, u}, l.Quantity, l.Cost, l.Charge)
	}
	return t, nil
}

// Difference is one key whose observed total is not the expected one.
type Difference struct {
	Key       Key
	Want, Got Total
	// Missing: expected, not observed. Unexpected: observed, not expected.
	Missing, Unexpected bool
}

func (d Difference) String() string {
	switch {
	case d.Missing:
		return fmt.Sprintf("%s: missing: want quantity %d cost %s charge %s", d.Key, d.Want.Quantity, d.Want.Cost, d.Want.Charge)
	case d.Unexpected:
		return fmt.Sprintf("%s: unexpected: got quantity %d cost %s charge %s", d.Key, d.Got.Quantity, d.Got.Cost, d.Got.Charge)
	}
	return fmt.Sprintf("%s: quantity %d, want %d (%+d); cost %s, want %s (%s); charge %s, want %s (%s)", d.Key,
		d.Got.Quantity, d.Want.Quantity, d.Got.Quantity-d.Want.Quantity,
		d.Got.Cost, d.Want.Cost, d.Got.Cost.Sub(d.Want.Cost),
		d.Got.Charge, d.Want.Charge, d.Got.Charge.Sub(d.Want.Charge))
}

// Compare returns every key whose observed total differs from the
// expectation, exactly (decimal equality: "0.10" equals "0.1"), sorted by
// key. No difference means the run billed exactly what was produced.
func (e *Expected) Compare(observed Totals) ([]Difference, error) {
	want, err := e.Totals()
	if err != nil {
		return nil, err
	}
	var out []Difference
	for k, w := range want {
		g, ok := observed[k]
		switch {
		case !ok:
			out = append(out, Difference{Key: k, Want: w, Missing: true})
		case !w.equal(g):
			out = append(out, Difference{Key: k, Want: w, Got: g})
		}
	}
	for k, g := range observed {
		if _, ok := want[k]; !ok {
			out = append(out, Difference{Key: k, Got: g, Unexpected: true})
		}
	}
	slices.SortFunc(out, func(a, b Difference) int {
		return cmp.Or(strings.Compare(a.Key.CustomerID, b.Key.CustomerID), strings.Compare(a.Key.PriceKey, b.Key.PriceKey), cmp.Compare(a.Key.Unit, b.Key.Unit))
	})
	return out, nil
}

// Summarize formats up to max differences and a count of the rest, for a
// test failure or a report.
func Summarize(diffs []Difference, max int) string {
	var b strings.Builder
	for i, d := range diffs {
		if i == max {
			fmt.Fprintf(&b, "... and %d more\n", len(diffs)-max)
			break
		}
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// WriteFile writes the expectation as JSON, one line per total so that a
// large file stays diffable, replacing path atomically (write, sync,
// rename) so a reader never sees half a file.
func (e *Expected) WriteFile(path string) error {
	return writeExpected(path, e, func(fn func(*Line) error) error {
		for i := range e.Lines {
			if err := fn(&e.Lines[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeExpected writes e's header and the lines each yields.
func writeExpected(path string, e *Expected, each func(func(*Line) error) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write expected totals: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	head := *e
	head.Lines = nil
	hb, err := json.MarshalIndent(head, "", " ")
	if err != nil {
		return fmt.Errorf("encode expected totals: %w", err)
	}
	// Replace the header's last member, "lines": null, with the lines,
	// streamed: a million-line expectation is never one string.
	hs, ok := strings.CutSuffix(string(hb), "\"lines\": null\n}")
	if !ok {
		panic("BUG: Expected.Lines is no longer the last JSON member")
	}
	w.WriteString(hs)
	w.WriteString("\"lines\": [")
	n := 0
	var lb []byte
	err = each(func(l *Line) error {
		if n > 0 {
			w.WriteByte(',')
		}
		n++
		w.WriteByte('\n')
		lb = appendLineJSON(lb[:0], l)
		_, err := w.Write(lb)
		return err
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	w.WriteString("\n]\n}\n")
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write expected totals: %w", err)
	}
	return nil
}

// appendLineJSON writes one line as encoding/json would, without its
// reflection: money as decimal strings.
func appendLineJSON(b []byte, l *Line) []byte {
	b = append(b, `{"customer_id":`...)
	b = appendStr(b, l.CustomerID)
	b = append(b, `,"price_key":`...)
	b = appendStr(b, l.PriceKey)
	b = append(b, `,"unit":`...)
	b = appendStr(b, l.Unit)
	b = append(b, `,"quantity":`...)
	b = strconv.AppendInt(b, l.Quantity, 10)
	b = append(b, `,"cost":"`...)
	b = append(b, l.Cost.String()...)
	b = append(b, `","charge":"`...)
	b = append(b, l.Charge.String()...)
	return append(b, `"}`...)
}

// ReadExpected reads a file WriteFile wrote. Money is parsed from its
// decimal text, exactly.
func ReadExpected(path string) (*Expected, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read expected totals: %w", err)
	}
	var e Expected
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("read expected totals %s: %w", path, err)
	}
	if e.Version != 1 {
		return nil, fmt.Errorf("read expected totals %s: version %d: expected 1", path, e.Version)
	}
	return &e, nil
}
