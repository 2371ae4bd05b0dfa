package rating

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

// EntryError says which price-list entry and field could not be imported
// and why. The entry is left out of the snapshot (its model then resolves
// as unknown), never imported with a rounded or missing price.
type EntryError struct {
	Model string
	Field string
	Value string
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("model %s: field %s = %s: %v", e.Model, e.Field, e.Value, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// litellmUnit maps a LiteLLM base field name (tier and band suffixes
// removed) to the unit it prices. rank orders synonyms: the lowest-ranked
// non-zero value wins (input_cost_per_request over input_cost_per_query).
type litellmUnit struct {
	unit schemas.Unit
	rank int
}

var litellmFields = map[string]litellmUnit{
	"input_cost_per_token":                      {schemas.UnitInput, 0},
	"output_cost_per_token":                     {schemas.UnitOutput, 0},
	"cache_read_input_token_cost":               {schemas.UnitCachedInput, 0},
	"input_cost_per_token_cache_hit":            {schemas.UnitCachedInput, 1}, // DeepSeek's name
	"cache_creation_input_token_cost":           {schemas.UnitCacheWrite5m, 0},
	"cache_creation_input_token_cost_above_1hr": {schemas.UnitCacheWrite1h, 0},
	"output_cost_per_reasoning_token":           {schemas.UnitReasoning, 0},
	"input_cost_per_audio_token":                {schemas.UnitAudioInput, 0},
	"output_cost_per_audio_token":               {schemas.UnitAudioOutput, 0},
	"input_cost_per_image_token":                {schemas.UnitImageInput, 0},
	"output_cost_per_image_token":               {schemas.UnitImageOutput, 0},
	"input_cost_per_request":                    {schemas.UnitRequests, 0},
	// Rerank and search APIs price each query, i.e. each request.
	"input_cost_per_query":  {schemas.UnitRequests, 1},
	"output_cost_per_image": {schemas.UnitImages, 0},
	// Seconds: transcription bills input audio seconds; speech and video
	// generation bill output seconds. An entry normally has one non-zero.
	"input_cost_per_second":            {schemas.UnitSeconds, 0},
	"output_cost_per_second":           {schemas.UnitSeconds, 1},
	"output_cost_per_video_per_second": {schemas.UnitSeconds, 2},
	"input_cost_per_video_per_second":  {schemas.UnitSeconds, 3},
	"input_cost_per_audio_per_second":  {schemas.UnitSeconds, 4},
}

// Fields with no schemas.Unit (characters, pixels, pages, DBUs, cached audio
// or image tokens, per-input-image prices, image sizes and qualities) are
// ignored: an event cannot carry those quantities, so they cannot be billed.

// splitLiteLLMField splits "input_cost_per_token_above_200k_tokens_priority"
// into base "input_cost_per_token", threshold 200000 and TierPriority. The
// suffixes are parsed as a general pattern (any _above_<N>k_tokens or
// _above_<N>_tokens, any _batches/_flex/_priority) because new ones appear
// upstream every few weeks.
func splitLiteLLMField(name string) (base string, above int64, tier schemas.Tier) {
	above = NoPromptCondition
	switch {
	case strings.HasSuffix(name, "_batches"):
		name, tier = strings.TrimSuffix(name, "_batches"), schemas.TierBatch
	case strings.HasSuffix(name, "_flex"):
		name, tier = strings.TrimSuffix(name, "_flex"), schemas.TierFlex
	case strings.HasSuffix(name, "_priority"):
		name, tier = strings.TrimSuffix(name, "_priority"), schemas.TierPriority
	}
	if strings.HasSuffix(name, "_tokens") {
		if i := strings.LastIndex(name, "_above_"); i > 0 {
			n := name[i+len("_above_") : len(name)-len("_tokens")]
			mult := int64(1)
			if strings.HasSuffix(n, "k") {
				n, mult = strings.TrimSuffix(n, "k"), 1000
			}
			if v, err := strconv.ParseInt(n, 10, 64); err == nil && v >= 0 {
				return name[:i], v * mult, tier
			}
		}
	}
	return name, above, tier
}

// ParseLiteLLM imports LiteLLM's model_prices_and_context_window.json.
// Every number is read through json.Number into decimal, never float64.
// Unknown keys are ignored; sample_spec is skipped. An entry whose prices
// cannot be represented exactly is listed in Snapshot.Rejected and left out.
// An entry with no usable price at all is kept but marked Unpriced, so an
// event for it fails with ErrUnpriced (which says why) rather than
// ErrUnknownModel.
func ParseLiteLLM(data []byte) (*Snapshot, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse litellm price map: %w", err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		if k != "sample_spec" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	prices := make([]*ModelPrice, 0, len(keys))
	var rejected []*EntryError
	for _, k := range keys {
		mp, err := litellmEntry(k, raw[k])
		if err != nil {
			rejected = append(rejected, err)
			continue
		}
		prices = append(prices, mp)
	}
	s, err := NewSnapshot(FormatLiteLLM, prices)
	if err != nil {
		return nil, err
	}
	s.Rejected = rejected
	return s, nil
}

// candidate collects synonym values for one (layer, tier, unit) so that
// the best-ranked non-zero one can win.
type candidate struct {
	p    Price
	rank int
	ok   bool
}

type layerBuilder struct {
	c [schemas.NumTiers][schemas.NumUnits]candidate
}

func (lb *layerBuilder) put(t schemas.Tier, lu litellmUnit, p Price) {
	c := &lb.c[t][lu.unit]
	switch {
	case !c.ok,
		c.p.IsZero() && !p.IsZero(),
		lu.rank < c.rank && (!p.IsZero() || c.p.IsZero()):
		*c = candidate{p, lu.rank, true}
	}
}

func (lb *layerBuilder) rates() Rates {
	var r Rates
	for t := range lb.c {
		for u := range lb.c[t] {
			if c := lb.c[t][u]; c.ok {
				r[t].Set(schemas.Unit(u), c.p)
			}
		}
	}
	return r
}

func litellmEntry(key string, e map[string]any) (*ModelPrice, *EntryError) {
	mp := &ModelPrice{Key: key}
	mp.Provider, _ = e["litellm_provider"].(string)
	mp.Mode, _ = e["mode"].(string)
	var base layerBuilder
	bands := map[int64]*layerBuilder{}
	names := make([]string, 0, len(e))
	for f := range e {
		names = append(names, f)
	}
	sort.Strings(names) // deterministic error reporting
	for _, f := range names {
		v := e[f]
		switch f {
		case "search_context_cost_per_query":
			// Events do not carry the search context size; OpenAI's
			// default is medium, so medium is the price (then low, high).
			m, _ := v.(map[string]any)
			for _, size := range []string{"search_context_size_medium", "search_context_size_low", "search_context_size_high"} {
				if n, ok := m[size]; ok {
					p, err := litellmPrice(key, f+"."+size, n)
					if err != nil {
						return nil, err
					}
					base.put(schemas.TierStandard, litellmUnit{schemas.UnitWebSearch, 0}, p)
					break
				}
			}
			continue
		case "tiered_pricing":
			rules, err := litellmTiers(key, v)
			if err != nil {
				return nil, err
			}
			mp.Rules = append(mp.Rules, rules...)
			continue
		}
		b, above, tier := splitLiteLLMField(f)
		lu, ok := litellmFields[b]
		if !ok && b == "input_cost_per_image" && (mp.Mode == "image_generation" || mp.Mode == "image_edit") {
			// LiteLLM lists OpenAI's per-generated-image price (dall-e-3)
			// as input_cost_per_image on image-generation entries; on chat
			// entries the same name prices input images, which no event
			// counts.
			lu, ok = litellmUnit{schemas.UnitImages, 1}, true
		}
		if !ok {
			continue
		}
		p, err := litellmPrice(key, f, v)
		if err != nil {
			return nil, err
		}
		lb := &base
		if above != NoPromptCondition {
			if lb = bands[above]; lb == nil {
				lb = &layerBuilder{}
				bands[above] = lb
			}
		}
		lb.put(tier, lu, p)
	}
	mp.Base = base.rates()
	thresholds := make([]int64, 0, len(bands))
	for th := range bands {
		thresholds = append(thresholds, th)
	}
	sort.Slice(thresholds, func(i, j int) bool { return thresholds[i] < thresholds[j] })
	for _, th := range thresholds {
		// Ascending, so the highest threshold crossed wins per unit.
		mp.Rules = append(mp.Rules, Rule{AbovePromptTokens: th, Rates: bands[th].rates()})
	}
	if mp.Base.empty() && len(mp.Rules) == 0 {
		mp.Unpriced = "the litellm entry lists no price for any billable unit"
	}
	return mp, nil
}

// litellmTiers converts tiered_pricing. LiteLLM (after Alibaba Model Studio,
// its only user) picks one tier from the request's total input tokens,
// range_start < tokens <= range_end, and bills every token of the request at
// that tier; above the last range the last tier applies. That is exactly a
// Rule with AbovePromptTokens = range_start; the first tier (start 0)
// applies to every request. Tiers keyed on anything but "range"
// (search APIs' max_results_range) price result counts no event carries and
// are ignored.
func litellmTiers(key string, v any) ([]Rule, *EntryError) {
	list, _ := v.([]any)
	type tier struct {
		start int64
		rates Rates
	}
	var tiers []tier
	for i, item := range list {
		m, _ := item.(map[string]any)
		rng, ok := m["range"].([]any)
		if !ok || len(rng) != 2 {
			continue
		}
		field := fmt.Sprintf("tiered_pricing[%d]", i)
		startDec, err := jsonDecimal(rng[0])
		if err != nil || !startDec.IsInteger() || startDec.Sign() < 0 {
			return nil, &EntryError{key, field + ".range", fmt.Sprint(rng[0]), fmt.Errorf("expected a non-negative whole token count")}
		}
		var lb layerBuilder
		for f, pv := range m {
			lu, ok := litellmFields[f]
			if !ok {
				continue
			}
			p, perr := litellmPrice(key, field+"."+f, pv)
			if perr != nil {
				return nil, perr
			}
			lb.put(schemas.TierStandard, lu, p)
		}
		tiers = append(tiers, tier{startDec.IntPart(), lb.rates()})
	}
	sort.SliceStable(tiers, func(i, j int) bool { return tiers[i].start < tiers[j].start })
	rules := make([]Rule, 0, len(tiers))
	for _, t := range tiers {
		above := t.start
		if above == 0 {
			// The first tier covers every request, even one with no
			// prompt tokens (LiteLLM would rate that at 0).
			above = NoPromptCondition
		}
		rules = append(rules, Rule{AbovePromptTokens: above, Rates: t.rates})
	}
	return rules, nil
}

func jsonDecimal(v any) (decimal.Decimal, error) {
	switch n := v.(type) {
	case json.Number:
		return decimal.NewFromString(string(n))
	case string: // prices arrive as strings in hand-edited maps
		return decimal.NewFromString(n)
	}
	return decimal.Decimal{}, fmt.Errorf("expected a number, got %T", v)
}

func litellmPrice(key, field string, v any) (Price, *EntryError) {
	d, err := jsonDecimal(v)
	if err != nil {
		return Price{}, &EntryError{key, field, fmt.Sprint(v), err}
	}
	p, err := PriceFromDecimal(d)
	if err != nil {
		return Price{}, &EntryError{key, field, fmt.Sprint(v), err}
	}
	return p, nil
}
