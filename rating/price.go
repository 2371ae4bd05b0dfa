package rating

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/tariff-dev/tariff/schemas"
)

// Format names a price-list format.
type Format uint8

const (
	FormatUnknown Format = iota
	FormatLiteLLM
	FormatOpenRouter
)

var formatNames = [...]string{"unknown", "litellm", "openrouter"}

func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", f)
}

func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

func (f *Format) UnmarshalText(b []byte) error {
	for i, n := range formatNames {
		if n == string(b) {
			*f = Format(i)
			return nil
		}
	}
	return fmt.Errorf("price list format %q: expected litellm or openrouter", b)
}

// RateSet holds the prices a price list states explicitly for one service
// tier, per unit. "Not stated" and "stated as 0" are different: the first
// falls back (see the chains in fallbackChain), the second is free.
type RateSet struct {
	prices [schemas.NumUnits]Price
	set    uint16
}

// Set states the price of u.
func (r *RateSet) Set(u schemas.Unit, p Price) { r.prices[u], r.set = p, r.set|1<<u }

// Has reports whether a price is stated for u.
func (r *RateSet) Has(u schemas.Unit) bool { return r.set&(1<<u) != 0 }

// Get returns the stated price of u.
func (r *RateSet) Get(u schemas.Unit) (Price, bool) { return r.prices[u], r.set&(1<<u) != 0 }

// Empty reports whether no price is stated.
func (r *RateSet) Empty() bool { return r.set == 0 }

func (r RateSet) MarshalJSON() ([]byte, error) {
	m := make(map[string]Price, schemas.NumUnits)
	for u := schemas.Unit(0); u < schemas.NumUnits; u++ {
		if p, ok := r.Get(u); ok {
			m[u.String()] = p
		}
	}
	return json.Marshal(m)
}

func (r *RateSet) UnmarshalJSON(b []byte) error {
	var m map[string]Price
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*r = RateSet{}
	for k, p := range m {
		u, ok := schemas.ParseUnit(k)
		if !ok {
			return fmt.Errorf("unit %q: unknown", k)
		}
		r.Set(u, p)
	}
	return nil
}

// Rates holds stated prices for every service tier; Rates[TierStandard] is
// the base price a tier without its own price falls back to.
type Rates [schemas.NumTiers]RateSet

func (r Rates) MarshalJSON() ([]byte, error) {
	m := make(map[string]RateSet, schemas.NumTiers)
	for t := schemas.Tier(0); t < schemas.NumTiers; t++ {
		if !r[t].Empty() {
			m[t.String()] = r[t]
		}
	}
	return json.Marshal(m)
}

func (r *Rates) UnmarshalJSON(b []byte) error {
	var m map[string]RateSet
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*r = Rates{}
	for k, rs := range m {
		t, err := schemas.ParseTier(k)
		if err != nil {
			return err
		}
		r[t] = rs
	}
	return nil
}

func (r *Rates) empty() bool {
	for i := range r {
		if !r[i].Empty() {
			return false
		}
	}
	return true
}

// NoPromptCondition is Rule.AbovePromptTokens for a rule that does not
// depend on the request size (a prompt of 0 tokens is still > -1).
const NoPromptCondition = -1

// UTCWindow is a time-of-day window in minutes after 00:00 UTC, start
// inclusive, end exclusive; Start > End wraps past midnight (22:00–02:00).
// Start == End covers the whole day.
type UTCWindow struct {
	Start, End int16
}

func (w UTCWindow) contains(minute int16) bool {
	switch {
	case w.Start == w.End:
		return true
	case w.Start < w.End:
		return minute >= w.Start && minute < w.End
	default:
		return minute >= w.Start || minute < w.End
	}
}

// Rule is a conditional price layer: long-context bands (LiteLLM
// *_above_200k_tokens, tiered_pricing, OpenRouter min_prompt_tokens) and
// time-of-day prices (OpenRouter utc_start/utc_end). A rule applies when all
// its conditions hold; when several apply, later rules win per unit and a
// unit no applicable rule states comes from the base rates.
type Rule struct {
	// AbovePromptTokens: applies when the request's prompt tokens are
	// strictly greater (LiteLLM's "> threshold", OpenRouter's documented
	// rule). NoPromptCondition disables the condition.
	AbovePromptTokens int64
	// Window, when non-nil, restricts the rule to a UTC time of day.
	Window *UTCWindow
	Rates  Rates
}

func (r *Rule) applies(promptTokens int64, minute int16) bool {
	return promptTokens > r.AbovePromptTokens && (r.Window == nil || r.Window.contains(minute))
}

type ruleJSON struct {
	AbovePromptTokens *int64 `json:"above_prompt_tokens,omitempty"`
	UTCStart          *int16 `json:"utc_start_minute,omitempty"`
	UTCEnd            *int16 `json:"utc_end_minute,omitempty"`
	Rates             Rates  `json:"rates"`
}

func (r Rule) MarshalJSON() ([]byte, error) {
	j := ruleJSON{Rates: r.Rates}
	if r.AbovePromptTokens != NoPromptCondition {
		j.AbovePromptTokens = &r.AbovePromptTokens
	}
	if r.Window != nil {
		j.UTCStart, j.UTCEnd = &r.Window.Start, &r.Window.End
	}
	return json.Marshal(j)
}

func (r *Rule) UnmarshalJSON(b []byte) error {
	var j ruleJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Rule{AbovePromptTokens: NoPromptCondition, Rates: j.Rates}
	if j.AbovePromptTokens != nil {
		r.AbovePromptTokens = *j.AbovePromptTokens
	}
	if (j.UTCStart == nil) != (j.UTCEnd == nil) {
		return errors.New("rule: utc_start_minute and utc_end_minute must be given together")
	}
	if j.UTCStart != nil {
		r.Window = &UTCWindow{*j.UTCStart, *j.UTCEnd}
	}
	return nil
}

// maxRules bounds the rules of one entry: applicable rules are a bitmask.
const maxRules = 32

// ModelPrice is one price-list entry: what its list states (Base and Rules,
// serialized with the version) and, compiled from that once at snapshot
// build, one fully resolved price table per reachable rule combination and
// tier, so rating is a few array reads.
type ModelPrice struct {
	// Key is the price-list entry name ("claude-sonnet-4-5",
	// "azure/gpt-4o", "anthropic/claude-sonnet-4.5").
	Key string `json:"key"`
	// Provider is LiteLLM's litellm_provider, or the OpenRouter id prefix.
	Provider string `json:"provider"`
	// Mode is LiteLLM's mode (chat, embedding, image_generation...), if any.
	Mode  string `json:"mode,omitempty"`
	Base  Rates  `json:"rates"`
	Rules []Rule `json:"rules,omitempty"`
	// Unpriced, when set, says why the entry has no usable price (an
	// OpenRouter router with price -1): every non-empty event is refused.
	Unpriced string `json:"unpriced,omitempty"`

	variants []variant
}

// table is the resolved price of every unit for one rule combination and
// tier. priced marks units with a price (stated, or by fallback); free marks
// units that are billed through other units and carry no line (requests on
// a token-priced model).
type table struct {
	price  [schemas.NumUnits]Price
	priced uint16
	free   uint16
	from   [schemas.NumUnits]schemas.Unit // which unit's price was used, for explanations
}

type variant struct {
	mask   uint32
	tables [schemas.NumTiers]*table
}

// fallbackChain lists, for each unit, the units whose price is used when the
// entry states none for it, in order. Each rule follows how providers bill:
//
//   - cached_input → input: a provider that reports cache reads but lists no
//     cache-read price bills them as plain input (no discount). Never free.
//   - cache_write_5m → input: OpenAI and Gemini bill cache writes as plain
//     input; Anthropic always lists its 1.25× write price.
//   - cache_write_1h → (derived, see derive1h) else unpriced: falling back to
//     the 5-minute rate would under-bill Anthropic's 2× rate by 37.5%.
//   - reasoning → output: OpenAI, Anthropic and Google bill thinking tokens
//     as output tokens.
//   - image_input → input: vision input tokens are billed at the text input
//     rate by OpenAI, Anthropic and Gemini chat models.
//   - audio_input, audio_output, image_output: no fallback. These carry their
//     own, much higher, rates (gpt-4o audio is 16× text); guessing the text
//     rate would under-bill, so an unlisted price is ErrUnpriced.
//   - requests: no fallback, but a token-priced entry with no per-request
//     price treats request counts as informational (free, no line).
//   - web_search, images, seconds: no fallback.
var fallbackChain = [schemas.NumUnits][]schemas.Unit{
	schemas.UnitInput:        {schemas.UnitInput},
	schemas.UnitCachedInput:  {schemas.UnitCachedInput, schemas.UnitInput},
	schemas.UnitCacheWrite5m: {schemas.UnitCacheWrite5m, schemas.UnitInput},
	schemas.UnitCacheWrite1h: {schemas.UnitCacheWrite1h},
	schemas.UnitOutput:       {schemas.UnitOutput},
	schemas.UnitReasoning:    {schemas.UnitReasoning, schemas.UnitOutput},
	schemas.UnitAudioInput:   {schemas.UnitAudioInput},
	schemas.UnitAudioOutput:  {schemas.UnitAudioOutput},
	schemas.UnitImageInput:   {schemas.UnitImageInput, schemas.UnitInput},
	schemas.UnitImageOutput:  {schemas.UnitImageOutput},
	schemas.UnitRequests:     {schemas.UnitRequests},
	schemas.UnitWebSearch:    {schemas.UnitWebSearch},
	schemas.UnitImages:       {schemas.UnitImages},
	schemas.UnitSeconds:      {schemas.UnitSeconds},
}

// compile resolves every reachable (rule combination, tier) into a table.
func (m *ModelPrice) compile() error {
	if len(m.Rules) > maxRules {
		return fmt.Errorf("model %s: %d price rules, at most %d supported", m.Key, len(m.Rules), maxRules)
	}
	m.variants = m.variants[:0]
	for _, mask := range m.reachableMasks() {
		v := variant{mask: mask}
		std := m.resolve(mask, schemas.TierStandard)
		v.tables[schemas.TierStandard] = std
		for t := schemas.TierStandard + 1; t < schemas.NumTiers; t++ {
			if m.tierStated(t) {
				v.tables[t] = m.resolve(mask, t)
			} else {
				v.tables[t] = std // share: a tier with no prices of its own is the base
			}
		}
		m.variants = append(m.variants, v)
	}
	return nil
}

func (m *ModelPrice) tierStated(t schemas.Tier) bool {
	if !m.Base[t].Empty() {
		return true
	}
	for i := range m.Rules {
		if !m.Rules[i].Rates[t].Empty() {
			return true
		}
	}
	return false
}

// reachableMasks enumerates every combination of applicable rules that some
// (prompt tokens, minute of day) can produce. Whether a token condition
// holds changes only just above a threshold, and whether a window holds
// changes only at its start or end, so probing those points (and 0) reaches
// every combination.
func (m *ModelPrice) reachableMasks() []uint32 {
	prompts := []int64{0}
	minutes := []int16{0}
	for _, r := range m.Rules {
		if r.AbovePromptTokens >= 0 {
			prompts = append(prompts, r.AbovePromptTokens+1)
		}
		if r.Window != nil {
			minutes = append(minutes, r.Window.Start, r.Window.End)
		}
	}
	seen := map[uint32]bool{}
	var out []uint32
	for _, p := range prompts {
		for _, mi := range minutes {
			mask := m.mask(p, mi)
			if !seen[mask] {
				seen[mask] = true
				out = append(out, mask)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (m *ModelPrice) mask(promptTokens int64, minute int16) uint32 {
	var mask uint32
	for i := range m.Rules {
		if m.Rules[i].applies(promptTokens, minute) {
			mask |= 1 << i
		}
	}
	return mask
}

// stated finds the price of unit u for tier t under the rules in mask:
// the latest applicable rule first, then the base; within each layer the
// tier's own price, then the standard price (LiteLLM's order: a long-context
// band's standard price beats the base tier price).
func (m *ModelPrice) stated(mask uint32, t schemas.Tier, u schemas.Unit) (Price, bool) {
	for i := len(m.Rules) - 1; i >= 0; i-- {
		if mask&(1<<i) == 0 {
			continue
		}
		if p, ok := m.Rules[i].Rates[t].Get(u); ok {
			return p, true
		}
		if p, ok := m.Rules[i].Rates[schemas.TierStandard].Get(u); ok {
			return p, true
		}
	}
	if p, ok := m.Base[t].Get(u); ok {
		return p, true
	}
	return m.Base[schemas.TierStandard].Get(u)
}

var (
	anthropic5mFactor = mustDec("1.25")
	anthropic1hFactor = mustDec("2")
)

func (m *ModelPrice) resolve(mask uint32, t schemas.Tier) *table {
	tb := &table{}
	for u := schemas.Unit(0); u < schemas.NumUnits; u++ {
		for _, from := range fallbackChain[u] {
			if p, ok := m.stated(mask, t, from); ok {
				tb.price[u], tb.from[u], tb.priced = p, from, tb.priced|1<<u
				break
			}
		}
	}
	m.derive1h(tb)
	// Request counts on an entry priced by other units are informational.
	if tb.priced&(1<<schemas.UnitRequests) == 0 && tb.priced != 0 {
		tb.free |= 1 << schemas.UnitRequests
	}
	return tb
}

// derive1h prices 1-hour cache writes the way Anthropic (and Bedrock,
// Vertex and Azure, which resell Claude at Anthropic's multipliers) bill
// them, 2× the input rate, but only for entries whose 5-minute write price is
// exactly 1.25× input: that ratio is Anthropic's published cache pricing, so
// the entry demonstrably follows it. Any other entry without a stated 1h
// price stays unpriced rather than guessed.
func (m *ModelPrice) derive1h(tb *table) {
	const in, w5, w1 = schemas.UnitInput, schemas.UnitCacheWrite5m, schemas.UnitCacheWrite1h
	if tb.priced&(1<<w1) != 0 || tb.priced&(1<<in) == 0 || tb.priced&(1<<w5) == 0 || tb.from[w5] != w5 {
		return
	}
	input := tb.price[in].Decimal()
	if input.IsZero() || !input.Mul(anthropic5mFactor).Equal(tb.price[w5].Decimal()) {
		return
	}
	p, err := tb.price[in].mulDecimal(anthropic1hFactor)
	if err != nil {
		return // out of range: leave unpriced
	}
	tb.price[w1], tb.from[w1], tb.priced = p, w1, tb.priced|1<<w1
}

// variantFor returns the tables for the rules that apply; allocation-free.
func (m *ModelPrice) variantFor(promptTokens int64, minute int16) *variant {
	mask := m.mask(promptTokens, minute)
	for i := range m.variants {
		if m.variants[i].mask == mask {
			return &m.variants[i]
		}
	}
	return nil // unreachable after compile; Rate reports it as a bug
}

// Table returns the resolved price of every unit for a request of
// promptTokens at the given UTC minute of day in tier t, for display
// (`tariff prices show`). ok is false for units without a price.
func (m *ModelPrice) Table(promptTokens int64, minute int, t schemas.Tier) (prices [schemas.NumUnits]Price, ok [schemas.NumUnits]bool) {
	v := m.variantFor(promptTokens, int16(minute))
	if v == nil || t >= schemas.NumTiers {
		return prices, ok
	}
	tb := v.tables[t]
	for u := range prices {
		prices[u], ok[u] = tb.price[u], tb.priced&(1<<u) != 0
	}
	return prices, ok
}

// promptTokens is what long-context thresholds compare against: every
// input-side token of the request, cached and cache-written included. This
// is LiteLLM's usage.prompt_tokens (inclusive of cache reads, and of cache
// writes for Anthropic) and OpenRouter's prompt token count; providers
// define their 200k tiers on the whole context, not on the uncached part.
func promptTokens(q *[schemas.NumUnits]int64) int64 {
	return q[schemas.UnitInput] + q[schemas.UnitCachedInput] + q[schemas.UnitCacheWrite5m] +
		q[schemas.UnitCacheWrite1h] + q[schemas.UnitAudioInput] + q[schemas.UnitImageInput]
}
