package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
	"github.com/tariff-dev/tariff/schemas"
)

// Kind says what a message is.
type Kind uint8

const (
	// KindFresh is a request's first message.
	KindFresh Kind = iota
	// KindDuplicate re-sends an earlier request.
	KindDuplicate
	// KindMalformed must be refused and dead-lettered.
	KindMalformed
)

var kindNames = [...]string{"fresh", "duplicate", "malformed"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Malformation is how a malformed message is broken.
type Malformation uint8

const (
	MalformedNone Malformation = iota
	// MalformedBrokenJSON is a message cut short: no decoder can parse it.
	MalformedBrokenJSON
	// MalformedNegativeTokens has a negative output token count.
	MalformedNegativeTokens
	// MalformedMissingCustomer names no customer anywhere a decoder looks.
	MalformedMissingCustomer
	// MalformedFutureTime has an event time ten years ahead: decoders
	// accept it, UsageEvent.Validate refuses it.
	MalformedFutureTime

	numMalformations
)

var malformationNames = [numMalformations]string{"none", "broken_json", "negative_tokens", "missing_customer", "future_time"}

func (m Malformation) String() string {
	if m < numMalformations {
		return malformationNames[m]
	}
	return fmt.Sprintf("malformation(%d)", m)
}

// Request is one logical LLM call: what a fresh message reports and a
// duplicate re-sends. It holds indexes, not strings, so that generating
// one allocates nothing; Generator.Intended spells it out.
type Request struct {
	// Seq numbers the requests (fresh and malformed) in generation order.
	Seq uint64
	// RID is the random 128-bit identity the message ids derive from.
	RID [2]uint64
	// Customer indexes the customer (cust-%06d).
	Customer uint32
	// Model indexes the generator's model catalog.
	Model uint32
	Tier  schemas.Tier
	// Team and Project index the dimension value sets.
	Team, Project uint8
	// TimeMs is the event time, epoch milliseconds.
	TimeMs int64
	// Quantities are the exclusive counts, as the decoders must produce
	// them (requests = 1 for every call).
	Quantities [schemas.NumUnits]int64
	// Format is the format of the request's first message.
	Format Format
	// SharedKey: the gateway id is LiteLLM's key form, so that the request
	// can be (and is) re-sent through the other of gateway and LiteLLM.
	SharedKey bool
}

// Message is one generated Kafka message. Next overwrites it; Key and
// Value reuse their capacity, so copy them to keep them.
type Message struct {
	Topic  string
	Key    []byte // the customer id
	Value  []byte
	Format Format
	Kind   Kind
	// Malformation says how a KindMalformed message is broken.
	Malformation Malformation
	// CrossFormat marks a duplicate sent in another format (and topic)
	// than its original.
	CrossFormat bool
	// Request is what the message carries. For a malformed message it is
	// the request it was made from, which is not billable.
	Request Request
}

var (
	teams    = [...]string{"search", "chat", "agents", "support", "analytics", "platform"}
	projects = [...]string{"atlas", "beacon", "comet", "delta", "ember", "falcon", "garnet", "harbor"}
)

// Generator produces one stream. It is deterministic: the same Config
// gives the same messages in the same order and the same expectation. It is
// not safe for concurrent use.
type Generator struct {
	cfg          Config
	snap         *rating.Snapshot
	priceVersion string
	markup       decimal.Decimal // multiplier
	// models is the catalog: the first nMain for every format but
	// OpenRouter, the rest (only with an OpenRouter weight) for OpenRouter.
	models    []model
	nMain     int
	keys      []string // price keys, indexed by model.keyIdx
	custWidth int

	rng       *rand.Rand
	custZipf  *rand.Zipf
	modelZipf *rand.Zipf
	orZipf    *rand.Zipf // over models[nMain:]; nil without OpenRouter
	formatCum [numFormats]int
	lateCum   []float64

	total, pos                      int64
	freshLeft, malLeft, dupToSelect int64
	seq                             uint64
	pending                         dupHeap
	start                           time.Time

	// Expectation: quantity per (customer, price key, unit, unit price),
	// packed into a uint64 (see packAcc). Costs are computed once at the
	// end, with decimal, from the summed quantities.
	acc        map[uint64]int64
	priceIdx   map[rating.Price]uint32
	prices     []rating.Price
	priceFixed []u128
	scratchRow priceRow
	counts     counters
}

type counters struct {
	messages, requests, events           int64
	byTopic                              map[string]int64
	byFormat                             [numFormats]int64
	dups, dupEvents, crossDups, lateDups int64
	malformed                            int64
	malformedBy                          [numMalformations]int64
}

// New builds a generator. It parses the price list (once; the bundled
// LiteLLM map takes about a tenth of a second).
func New(cfg Config) (*Generator, error) {
	cfg.applyZeroDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen config: %w", err)
	}
	data := cfg.PriceList
	if data == nil {
		data = bundled.LiteLLM
	}
	snap, err := rating.ParsePriceList(data)
	if err != nil {
		return nil, fmt.Errorf("loadgen price list: %w", err)
	}
	models, err := buildCatalog(snap, cfg.Models, liteLLMHints(data))
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	nMain := len(models)
	if cfg.Formats[FormatOpenRouter] > 0 {
		or := buildOpenRouterCatalog(snap, cfg.Models, liteLLMHints(data))
		if len(or) == 0 {
			return nil, fmt.Errorf("loadgen config: Formats: openrouter=%d, but the price list prices no chat model for provider openrouter; expected openrouter=0 with this price list", cfg.Formats[FormatOpenRouter])
		}
		models = append(models, or...)
	}
	mult, _ := markupMultiplier(cfg.Markup) // validated
	g := &Generator{
		cfg:          cfg,
		snap:         snap,
		priceVersion: bundled.VersionID(snap.Source.String(), data),
		markup:       mult,
		models:       models,
		nMain:        nMain,
		custWidth:    max(6, len(strconv.Itoa(cfg.Customers-1))),
		rng:          rand.New(rand.NewPCG(cfg.Seed, 0x7a71ff)),
		total:        int64(cfg.Events),
		start:        cfg.Start.UTC(),
		acc:          make(map[uint64]int64, min(cfg.Events*4, 1<<20)),
		priceIdx:     map[rating.Price]uint32{},
	}
	// Price keys are numbered in sorted order, so that sorting packed
	// accumulator keys sorts the expectation by customer, key and unit.
	keyIdx := map[string]uint32{}
	for i := range g.models {
		if _, ok := keyIdx[g.models[i].key]; !ok {
			keyIdx[g.models[i].key] = 0
			g.keys = append(g.keys, g.models[i].key)
		}
	}
	slices.Sort(g.keys)
	for i, k := range g.keys {
		keyIdx[k] = uint32(i)
	}
	for i := range g.models {
		g.models[i].keyIdx = keyIdx[g.models[i].key]
	}
	if len(g.keys) > 1<<16 {
		return nil, fmt.Errorf("loadgen: %d price keys, at most %d supported", len(g.keys), 1<<16)
	}
	g.custZipf = rand.NewZipf(g.rng, cfg.CustomerSkew, 1, uint64(cfg.Customers-1))
	g.modelZipf = rand.NewZipf(g.rng, cfg.ModelSkew, 1, uint64(nMain-1))
	if len(g.models) > nMain {
		g.orZipf = rand.NewZipf(g.rng, cfg.ModelSkew, 1, uint64(len(g.models)-nMain-1))
	}
	cum := 0
	for f, w := range cfg.Formats {
		cum += w
		g.formatCum[f] = cum
	}
	sum := 0.0
	for _, b := range cfg.Lateness {
		sum += b.Share
		g.lateCum = append(g.lateCum, sum)
	}

	mal := int64(math.Round(float64(cfg.Events) * cfg.MalformedShare))
	dup := int64(math.Round(float64(cfg.Events) * cfg.DupShare))
	fresh := int64(cfg.Events) - mal - dup
	if fresh < dup || fresh <= 0 {
		return nil, fmt.Errorf("loadgen config: %d events with %d duplicates and %d malformed leave %d fresh requests; expected at least as many fresh requests as duplicates", cfg.Events, dup, mal, fresh)
	}
	g.freshLeft, g.malLeft, g.dupToSelect = fresh, mal, dup
	g.counts.byTopic = map[string]int64{}
	return g, nil
}

// Models returns the price keys of the model catalog, in Zipf rank order
// (duplicates when several reported names share a key): the models of
// every format but OpenRouter, then OpenRouter's (with an OpenRouter
// weight).
func (g *Generator) Models() []string {
	out := make([]string, len(g.models))
	for i := range g.models {
		out[i] = g.models[i].key
	}
	return out
}

// Len is the number of messages the stream holds; Remaining how many Next
// has yet to produce.
func (g *Generator) Len() int64       { return g.total }
func (g *Generator) Remaining() int64 { return g.total - g.pos }

// Next generates the next message into m and reports whether there was
// one. It allocates nothing in the steady state (a duplicate held for later
// is kept in a heap that grows to the number of pending duplicates).
func (g *Generator) Next(m *Message) bool {
	if g.pos >= g.total {
		return false
	}
	pos := g.pos
	g.pos++
	m.Kind, m.Malformation, m.CrossFormat = KindFresh, MalformedNone, false
	switch {
	case len(g.pending) > 0 && g.pending[0].due <= pos:
		g.emitDuplicate(m)
	case g.freshLeft+g.malLeft > 0:
		if g.rng.Int64N(g.freshLeft+g.malLeft) < g.malLeft {
			g.emitMalformed(m, pos)
		} else {
			g.emitFresh(m, pos)
		}
	case len(g.pending) > 0:
		g.emitDuplicate(m)
	default:
		panic("BUG: loadgen ran out of messages before the stream's length")
	}
	g.counts.messages++
	g.counts.byTopic[m.Topic]++
	g.counts.byFormat[m.Format]++
	return true
}

func (g *Generator) emitFresh(m *Message, pos int64) {
	r := &m.Request
	g.newRequest(r, pos)
	// Selection sampling (Knuth's algorithm S): exactly dupToSelect of the
	// remaining fresh requests are chosen, each with equal chance.
	dup := g.dupToSelect > 0 && g.rng.Int64N(g.freshLeft) < g.dupToSelect
	g.freshLeft--
	if r.Format == FormatLiteLLM {
		r.SharedKey = true
	}
	if dup {
		g.dupToSelect--
		d := pendingDup{seq: r.Seq, format: r.Format}
		if other, ok := crossPartner(r.Format); ok && g.cfg.Formats[other] > 0 && g.rng.Float64() < g.cfg.CrossFormatShare {
			d.format, d.cross = other, true
			r.SharedKey = true
		}
		rest := g.total - pos - 1
		if g.rng.Float64() < g.cfg.LateDupShare && rest > 1 {
			d.due, d.late = pos+1+g.rng.Int64N(rest), true
		} else {
			d.due = pos + 1 + g.rng.Int64N(int64(g.cfg.NearDupWindow))
		}
		d.req = *r
		g.pending.push(d)
	}
	g.account(r)
	g.encode(m, r, r.Format, MalformedNone)
	g.counts.requests++
}

// crossPartner is the format a request can be re-sent through under the
// same idempotency key (see the package documentation).
func crossPartner(f Format) (Format, bool) {
	switch f {
	case FormatGateway:
		return FormatLiteLLM, true
	case FormatLiteLLM:
		return FormatGateway, true
	}
	return 0, false
}

func (g *Generator) emitDuplicate(m *Message) {
	d := g.pending.pop()
	m.Request = d.req
	m.Kind, m.CrossFormat = KindDuplicate, d.cross
	g.encode(m, &m.Request, d.format, MalformedNone)
	g.counts.dups++
	g.counts.dupEvents += int64(eventsIn(&m.Request, d.format))
	if d.cross {
		g.counts.crossDups++
	}
	if d.late {
		g.counts.lateDups++
	}
}

func (g *Generator) emitMalformed(m *Message, pos int64) {
	g.malLeft--
	r := &m.Request
	g.newRequest(r, pos)
	kind := Malformation(1 + g.rng.IntN(int(numMalformations)-1))
	switch kind {
	case MalformedNegativeTokens:
		r.Quantities[schemas.UnitOutput] = -(1 + g.rng.Int64N(500))
		r.Quantities[schemas.UnitReasoning] = 0
	case MalformedFutureTime:
		r.TimeMs = g.start.AddDate(10, 0, 0).UnixMilli() + pos
	}
	m.Kind, m.Malformation = KindMalformed, kind
	g.encode(m, r, r.Format, kind)
	if kind == MalformedBrokenJSON {
		// A strict prefix of a JSON object or array never closes its
		// outermost bracket, so no decoder can accept it.
		m.Value = m.Value[:1+g.rng.IntN(len(m.Value)-1)]
	}
	g.counts.malformed++
	g.counts.malformedBy[kind]++
}

// encode writes the message for r in format f.
func (g *Generator) encode(m *Message, r *Request, f Format, mal Malformation) {
	m.Format = f
	m.Topic = g.cfg.Topics.of(f)
	m.Key = g.appendCustomer(m.Key[:0], r.Customer)
	switch f {
	case FormatGateway:
		m.Value = g.appendGateway(m.Value[:0], r, mal)
	case FormatLiteLLM:
		m.Value = g.appendLiteLLM(m.Value[:0], r, mal)
	case FormatMeter:
		m.Value = g.appendMeter(m.Value[:0], r, mal)
	case FormatOpenRouter:
		m.Value = g.appendOpenRouter(m.Value[:0], r, mal)
	}
}

// newRequest draws a request seen by the stream at position pos.
func (g *Generator) newRequest(r *Request, pos int64) {
	*r = Request{Seq: g.seq, RID: [2]uint64{g.rng.Uint64(), g.rng.Uint64()}}
	g.seq++
	r.Customer = uint32(g.custZipf.Uint64())
	r.Model = uint32(g.modelZipf.Uint64())
	r.Format = g.pickFormat()
	if r.Format == FormatOpenRouter {
		// OpenRouter reports its own slugs: a model of its catalog. (The
		// draw above is kept, so streams without OpenRouter are the same
		// as before it existed.)
		r.Model = uint32(g.nMain) + uint32(g.orZipf.Uint64())
	}
	r.Team = uint8(g.rng.IntN(len(teams)))
	r.Project = uint8(g.rng.IntN(len(projects)))
	m := &g.models[r.Model]

	// Time: the stream's "now" at this position minus the lateness.
	now := g.start
	if g.cfg.Span > 0 {
		now = now.Add(time.Duration(float64(g.cfg.Span) * float64(pos) / float64(g.total)))
	}
	r.TimeMs = now.Add(-g.lateness()).UnixMilli()

	r.Tier = schemas.TierStandard
	// OpenRouter has no batch, flex or priority tiers of its own.
	if len(m.tiers) > 0 && r.Format != FormatOpenRouter {
		// Mostly standard: 3% batch, 2% flex, 1% priority where the model
		// has prices for them.
		p := g.rng.IntN(100)
		for _, t := range m.tiers {
			if (t == schemas.TierBatch && p < 3) || (t == schemas.TierFlex && p >= 3 && p < 5) || (t == schemas.TierPriority && p == 5) {
				r.Tier = t
			}
		}
	}
	g.tokens(r, m)
}

func (g *Generator) pickFormat() Format {
	p := g.rng.IntN(g.formatCum[numFormats-1])
	for f, c := range g.formatCum {
		if p < c {
			return Format(f)
		}
	}
	panic("BUG: format weights")
}

func (g *Generator) lateness() time.Duration {
	p := g.rng.Float64() * g.lateCum[len(g.lateCum)-1]
	var lo time.Duration
	for i, c := range g.lateCum {
		hi := g.cfg.Lateness[i].Max
		if p < c || i == len(g.lateCum)-1 {
			if hi <= lo {
				return lo
			}
			return lo + time.Duration(g.rng.Int64N(int64(hi-lo)))
		}
		lo = hi
	}
	return 0
}

// logNormal draws a count with the given median and spread, clamped.
func (g *Generator) logNormal(median, sigma float64, lo, hi int64) int64 {
	v := int64(median * math.Exp(sigma*g.rng.NormFloat64()))
	return min(max(v, lo), hi)
}

// tokens fills r's quantities with a realistic request for m. Only units
// the model prices (directly or by rating's fallbacks) are used.
func (g *Generator) tokens(r *Request, m *model) {
	q := &r.Quantities
	promptMedian, outMedian := 1500.0, 350.0
	if m.reasoning {
		promptMedian = 2500
	}
	prompt := g.logNormal(promptMedian, 1.1, 16, 100_000)
	if m.band > 0 {
		if g.rng.Float64() < g.cfg.LongContextShare {
			prompt = m.band + 1 + g.rng.Int64N(100_000)
		} else {
			prompt = min(prompt, m.band)
		}
	}
	var cached, w5, w1 int64
	if m.cacheRead && prompt >= 1024 && g.rng.Float64() < 0.45 {
		// Providers cache in prefix blocks (OpenAI: 128 tokens).
		cached = int64(float64(prompt)*(0.3+0.65*g.rng.Float64())) / 128 * 128
	}
	if m.cacheWrite && g.rng.Float64() < 0.15 {
		w := min(prompt-cached, 1024+g.rng.Int64N(20_000))
		// OpenRouter reports cache writes as one count, billed at the
		// 5-minute rate (schemas/openrouter.go): no 1-hour writes there.
		if m.has1h && r.Format != FormatOpenRouter && g.rng.Float64() < 0.2 && g.priced1h(m, prompt, w, minuteOfDay(r.TimeMs), r.Tier) {
			w1 = w
		} else {
			w5 = w
		}
	}
	q[schemas.UnitInput] = prompt - cached - w5 - w1
	q[schemas.UnitCachedInput] = cached
	q[schemas.UnitCacheWrite5m] = w5
	q[schemas.UnitCacheWrite1h] = w1
	q[schemas.UnitOutput] = g.logNormal(outMedian, 1.0, 1, 16_000)
	if m.reasoning && g.rng.Float64() < m.thinkingShare {
		q[schemas.UnitReasoning] = g.logNormal(1000, 1.0, 32, 32_000)
	}
	q[schemas.UnitRequests] = 1
}

// priced1h reports whether 1-hour cache writes of w tokens in a request
// of prompt tokens have a price: as part of the whole request (gateway,
// LiteLLM) and as a meter record of their own, which rating bands on w
// alone. Unlike the other units, 1-hour writes have no fallback, and their
// derived price exists only in tables whose write price is Anthropic's
// 1.25x input (not, for example, Vertex's batch tier).
func (g *Generator) priced1h(m *model, prompt, w int64, minute int, t schemas.Tier) bool {
	const bit = 1 << schemas.UnitCacheWrite1h
	return g.priceRow(m, prompt, minute, t).ok&bit != 0 && g.priceRow(m, w, minute, t).ok&bit != 0
}

// minuteOfDay is the UTC minute rating uses for time-of-day prices.
func minuteOfDay(ms int64) int {
	return int((ms / 60_000) % (24 * 60))
}

// promptTokens is what long-context bands compare against: every
// input-side token of the event (rating's definition, restated here so the
// expectation does not call into the rating engine's hot path).
func promptTokens(q *[schemas.NumUnits]int64) int64 {
	return q[schemas.UnitInput] + q[schemas.UnitCachedInput] + q[schemas.UnitCacheWrite5m] +
		q[schemas.UnitCacheWrite1h] + q[schemas.UnitAudioInput] + q[schemas.UnitImageInput]
}

// meterUnits lists the units a meter request reports, in record order
// (appendMeter writes them in this order; the decoder keeps it).
var meterUnits = [...]schemas.Unit{
	schemas.UnitRequests, schemas.UnitInput, schemas.UnitCachedInput, schemas.UnitCacheWrite5m,
	schemas.UnitCacheWrite1h, schemas.UnitOutput, schemas.UnitReasoning,
}

// eventsIn is how many usage events a message of r in format f decodes to.
func eventsIn(r *Request, f Format) int {
	if f != FormatMeter {
		return 1
	}
	n := 0
	for _, u := range meterUnits {
		if r.Quantities[u] != 0 {
			n++
		}
	}
	return n
}

// account adds a fresh request's events to the expectation.
func (g *Generator) account(r *Request) {
	m := &g.models[r.Model]
	if r.Format != FormatMeter {
		g.addEvent(r, m, &r.Quantities)
		return
	}
	// One event per meter record, each rated (and banded) on its own.
	for _, u := range meterUnits {
		if r.Quantities[u] == 0 {
			continue
		}
		var one [schemas.NumUnits]int64
		one[u] = r.Quantities[u]
		g.addEvent(r, m, &one)
	}
}

func (g *Generator) addEvent(r *Request, m *model, q *[schemas.NumUnits]int64) {
	g.counts.events++
	row := g.priceRow(m, promptTokens(q), minuteOfDay(r.TimeMs), r.Tier)
	for u, n := range q {
		if n == 0 {
			continue
		}
		if row.ok&(1<<u) == 0 {
			if schemas.Unit(u) == schemas.UnitRequests {
				continue // informational on a token-priced model: no line
			}
			panic(fmt.Sprintf("BUG: loadgen generated %d %s for %s (tier %s), which has no price for it", n, schemas.Unit(u), m.key, r.Tier))
		}
		g.acc[packAcc(r.Customer, m.keyIdx, schemas.Unit(u), row.idx[u])] += n
	}
}

// priceRow returns the interned unit prices rating uses for an event of
// model m with this prompt size, minute and tier (rating.ModelPrice.Table).
// The result is valid until the next call.
func (g *Generator) priceRow(m *model, prompt int64, minute int, t schemas.Tier) *priceRow {
	if !m.cacheable {
		g.buildRow(&g.scratchRow, m, prompt, minute, t)
		return &g.scratchRow
	}
	k := 0
	for _, th := range m.thresholds {
		if prompt > th {
			k++
		}
	}
	row := m.rows[t][k]
	if row == nil {
		row = &priceRow{}
		g.buildRow(row, m, prompt, minute, t)
		m.rows[t][k] = row
	}
	return row
}

func (g *Generator) buildRow(row *priceRow, m *model, prompt int64, minute int, t schemas.Tier) {
	prices, ok := m.mp.Table(prompt, minute, t)
	*row = priceRow{}
	for u := range prices {
		if ok[u] {
			row.idx[u] = g.intern(prices[u])
			row.ok |= 1 << u
		}
	}
}

// packAcc packs an accumulator key: customer (24 bits), price key (16),
// unit (4), interned unit price (20).
func packAcc(cust, key uint32, u schemas.Unit, price uint32) uint64 {
	return uint64(cust)<<40 | uint64(key)<<24 | uint64(u)<<20 | uint64(price)
}

func unpackAcc(k uint64) (cust, key uint32, u schemas.Unit, price uint32) {
	return uint32(k >> 40), uint32(k>>24) & 0xffff, schemas.Unit(k>>20) & 0xf, uint32(k) & 0xfffff
}

func (g *Generator) intern(p rating.Price) uint32 {
	if i, ok := g.priceIdx[p]; ok {
		return i
	}
	i := uint32(len(g.prices))
	if i >= 1<<20 {
		panic("BUG: more than 2^20 distinct unit prices")
	}
	g.priceIdx[p] = i
	g.prices = append(g.prices, p)
	g.priceFixed = append(g.priceFixed, priceU128(p))
	return i
}

// requestCost is the cost of r's whole request (input side, output side),
// for the partner cost fields. Negative counts (malformed) count as 0.
func (g *Generator) requestCost(r *Request) (in, out u128) {
	row := g.priceRow(&g.models[r.Model], promptTokens(&r.Quantities), minuteOfDay(r.TimeMs), r.Tier)
	for u, n := range r.Quantities {
		if n <= 0 || row.ok&(1<<u) == 0 {
			continue
		}
		p := g.priceFixed[row.idx[u]]
		var okm bool
		switch schemas.Unit(u) {
		case schemas.UnitOutput, schemas.UnitReasoning, schemas.UnitAudioOutput, schemas.UnitImageOutput:
			out, okm = out.addMul(p, uint64(n))
		default:
			in, okm = in.addMul(p, uint64(n))
		}
		if !okm {
			panic("BUG: request cost overflows 128 bits")
		}
	}
	return in, out
}

// pendingDup is a duplicate waiting for its position.
type pendingDup struct {
	due    int64
	seq    uint64
	format Format
	cross  bool
	late   bool
	req    Request
}

// dupHeap is a min-heap by (due, seq): hand-written so that pushing does
// not box an interface.
type dupHeap []pendingDup

func (h dupHeap) less(i, j int) bool {
	return h[i].due < h[j].due || (h[i].due == h[j].due && h[i].seq < h[j].seq)
}

func (h *dupHeap) push(d pendingDup) {
	*h = append(*h, d)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *dupHeap) pop() pendingDup {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s.less(l, m) {
			m = l
		}
		if r < n && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
