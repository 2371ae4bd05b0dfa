package rating

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

// openrouterKey maps an OpenRouter pricing key to a unit. zeroIsUnset marks
// keys OpenRouter fills with "0" when the unit is simply billed as part of
// prompt or completion (internal_reasoning on most models, image and audio
// input tokens): taking that "0" literally would make reasoning free, so it
// is read as "no separate price" and the fallback chain applies.
type openrouterKey struct {
	unit        schemas.Unit
	rank        int
	zeroIsUnset bool
}

var openrouterKeys = map[string]openrouterKey{
	"prompt":               {schemas.UnitInput, 0, false},
	"completion":           {schemas.UnitOutput, 0, false},
	"request":              {schemas.UnitRequests, 0, false},
	"image_token":          {schemas.UnitImageInput, 0, true},
	"image":                {schemas.UnitImageInput, 1, true}, // per input-image token in current lists
	"image_output":         {schemas.UnitImageOutput, 0, false},
	"audio":                {schemas.UnitAudioInput, 0, true},
	"audio_output":         {schemas.UnitAudioOutput, 0, false},
	"web_search":           {schemas.UnitWebSearch, 0, false},
	"internal_reasoning":   {schemas.UnitReasoning, 0, true},
	"input_cache_read":     {schemas.UnitCachedInput, 0, false},
	"input_cache_write":    {schemas.UnitCacheWrite5m, 0, false},
	"input_cache_write_1h": {schemas.UnitCacheWrite1h, 0, false},
	// input_audio_cache has no unit (cached audio is not a bucket): ignored.
}

type openrouterModel struct {
	ID      string                     `json:"id"`
	Pricing map[string]json.RawMessage `json:"pricing"`
}

// ParseOpenRouter imports OpenRouter's GET /api/v1/models response (or a
// bare array of models). Prices are decimal strings, read exactly.
//
//   - A negative price ("-1", used by routers such as openrouter/auto whose
//     price depends on the model picked) marks the entry Unpriced.
//   - discount multiplies every price by (1 − discount), and the result must
//     still be exact.
//   - overrides become Rules: min_prompt_tokens (strictly greater) and the
//     utc_start/utc_end HHMM window (may wrap midnight); all conditions of
//     an override must hold; later overrides win per key; a key an
//     override omits keeps the base price.
//   - An "<id>:batch" entry also supplies the batch tier of "<id>", so an
//     event for "<id>" with service tier batch gets batch prices.
func ParseOpenRouter(data []byte) (*Snapshot, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var models []openrouterModel
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := dec.Decode(&models); err != nil {
			return nil, fmt.Errorf("parse openrouter models: %w", err)
		}
	} else {
		var wrap struct {
			Data []openrouterModel `json:"data"`
		}
		if err := dec.Decode(&wrap); err != nil {
			return nil, fmt.Errorf("parse openrouter models: %w", err)
		}
		models = wrap.Data
	}
	var prices []*ModelPrice
	var rejected []*EntryError
	seen := map[string]bool{}
	for _, m := range models {
		if m.ID == "" || seen[m.ID] {
			continue // a repeated id (paging overlap) is the same model
		}
		seen[m.ID] = true
		mp, err := openrouterEntry(m)
		if err != nil {
			rejected = append(rejected, err)
			continue
		}
		prices = append(prices, mp)
	}
	mergeBatchVariants(prices)
	s, err := NewSnapshot(FormatOpenRouter, prices)
	if err != nil {
		return nil, err
	}
	s.Rejected = rejected
	return s, nil
}

func openrouterEntry(m openrouterModel) (*ModelPrice, *EntryError) {
	mp := &ModelPrice{Key: m.ID}
	if i := strings.IndexByte(m.ID, '/'); i > 0 {
		mp.Provider = strings.TrimPrefix(m.ID[:i], "~")
	}
	factor := decimal.NewFromInt(1)
	if raw, ok := m.Pricing["discount"]; ok {
		d, err := openrouterDecimal(raw)
		if err != nil {
			return nil, &EntryError{m.ID, "pricing.discount", string(raw), err}
		}
		if d.Sign() < 0 || d.GreaterThan(decimal.NewFromInt(1)) {
			return nil, &EntryError{m.ID, "pricing.discount", string(raw), errors.New("expected a fraction between 0 and 1")}
		}
		factor = factor.Sub(d)
	}
	base, variable, err := openrouterRates(m.ID, "pricing", m.Pricing, factor)
	if err != nil {
		return nil, err
	}
	mp.Base = base
	if variable {
		mp.Unpriced = "openrouter lists a variable price (-1): the cost depends on the model the router picks"
	}
	if raw, ok := m.Pricing["overrides"]; ok {
		var ovs []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &ovs); err != nil {
			return nil, &EntryError{m.ID, "pricing.overrides", string(raw), err}
		}
		for i, ov := range ovs {
			field := fmt.Sprintf("pricing.overrides[%d]", i)
			r := Rule{AbovePromptTokens: NoPromptCondition}
			if v, ok := ov["min_prompt_tokens"]; ok {
				d, err := openrouterDecimal(v)
				if err != nil || !d.IsInteger() || d.Sign() < 0 {
					return nil, &EntryError{m.ID, field + ".min_prompt_tokens", string(v), errors.New("expected a whole token count")}
				}
				r.AbovePromptTokens = d.IntPart()
			}
			_, hasS := ov["utc_start"]
			_, hasE := ov["utc_end"]
			if hasS || hasE {
				start, err1 := hhmm(ov["utc_start"])
				end, err2 := hhmm(ov["utc_end"])
				if err := errors.Join(err1, err2); err != nil {
					return nil, &EntryError{m.ID, field + ".utc_start/utc_end", string(ov["utc_start"]) + "-" + string(ov["utc_end"]), err}
				}
				r.Window = &UTCWindow{start, end}
			}
			rates, variable, err := openrouterRates(m.ID, field, ov, factor)
			if err != nil {
				return nil, err
			}
			if variable {
				mp.Unpriced = "openrouter lists a variable price (-1) in an override"
			}
			r.Rates = rates
			mp.Rules = append(mp.Rules, r)
		}
	}
	if mp.Unpriced == "" && mp.Base.empty() && len(mp.Rules) == 0 {
		mp.Unpriced = "the openrouter entry lists no price"
	}
	return mp, nil
}

// hhmm reads OpenRouter's HHMM time of day (30 = 00:30, 1630 = 16:30).
func hhmm(raw json.RawMessage) (int16, error) {
	if raw == nil {
		return 0, errors.New("utc_start and utc_end must be given together")
	}
	d, err := openrouterDecimal(raw)
	if err != nil || !d.IsInteger() {
		return 0, fmt.Errorf("time %s: expected HHMM", raw)
	}
	v := d.IntPart()
	if v < 0 || v/100 > 24 || v%100 > 59 || (v/100 == 24 && v%100 != 0) {
		return 0, fmt.Errorf("time %s: expected HHMM between 0000 and 2400", raw)
	}
	return int16((v / 100 % 24 * 60) + v%100), nil
}

func openrouterDecimal(raw json.RawMessage) (decimal.Decimal, error) {
	s := string(bytes.TrimSpace(raw))
	if len(s) >= 2 && s[0] == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return decimal.Decimal{}, err
		}
		s = str
	}
	return decimal.NewFromString(s)
}

func openrouterRates(id, field string, m map[string]json.RawMessage, factor decimal.Decimal) (Rates, bool, *EntryError) {
	var lb layerBuilder
	variable := false
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ok, known := openrouterKeys[k]
		if !known {
			continue
		}
		raw := m[k]
		d, err := openrouterDecimal(raw)
		if err != nil {
			return Rates{}, false, &EntryError{id, field + "." + k, string(raw), err}
		}
		if d.Sign() < 0 {
			variable = true
			continue
		}
		if d.IsZero() && ok.zeroIsUnset {
			continue
		}
		p, err := PriceFromDecimal(d.Mul(factor))
		if err != nil {
			return Rates{}, false, &EntryError{id, field + "." + k, string(raw), err}
		}
		lb.put(schemas.TierStandard, litellmUnit{ok.unit, ok.rank}, p)
	}
	return lb.rates(), variable, nil
}

// mergeBatchVariants copies each "<id>:batch" entry's standard prices into
// the batch tier of "<id>" (same base and same rule conditions).
func mergeBatchVariants(prices []*ModelPrice) {
	byID := make(map[string]*ModelPrice, len(prices))
	for _, p := range prices {
		byID[p.Key] = p
	}
	for _, b := range prices {
		id, ok := strings.CutSuffix(b.Key, ":batch")
		base := byID[id]
		if !ok || base == nil || b.Unpriced != "" || base.Unpriced != "" {
			continue
		}
		base.Base[schemas.TierBatch] = b.Base[schemas.TierStandard]
		for _, br := range b.Rules {
			merged := false
			for i := range base.Rules {
				if ruleCondition(&base.Rules[i]) == ruleCondition(&br) {
					base.Rules[i].Rates[schemas.TierBatch] = br.Rates[schemas.TierStandard]
					merged = true
				}
			}
			if !merged {
				var r Rates
				r[schemas.TierBatch] = br.Rates[schemas.TierStandard]
				base.Rules = append(base.Rules, Rule{AbovePromptTokens: br.AbovePromptTokens, Window: br.Window, Rates: r})
			}
		}
	}
}

// DetectFormat tells a LiteLLM price map from an OpenRouter model list by
// structure: OpenRouter's is an array of models (bare or under "data") with
// "pricing" objects; LiteLLM's is an object of entries with
// "litellm_provider".
func DetectFormat(data []byte) Format {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return FormatUnknown
	}
	if trimmed[0] == '[' {
		var models []openrouterModel
		if json.Unmarshal(trimmed, &models) == nil && len(models) > 0 && models[0].Pricing != nil {
			return FormatOpenRouter
		}
		return FormatUnknown
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(trimmed, &top) != nil {
		return FormatUnknown
	}
	if raw, ok := top["data"]; ok {
		var models []openrouterModel
		if json.Unmarshal(raw, &models) == nil && (len(models) == 0 || models[0].Pricing != nil) {
			return FormatOpenRouter
		}
	}
	for k, raw := range top {
		if k == "sample_spec" {
			continue
		}
		var e struct {
			Provider *string `json:"litellm_provider"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Provider != nil {
			return FormatLiteLLM
		}
	}
	return FormatUnknown
}

// ParsePriceList detects the format and imports the list.
func ParsePriceList(data []byte) (*Snapshot, error) {
	switch f := DetectFormat(data); f {
	case FormatLiteLLM:
		return ParseLiteLLM(data)
	case FormatOpenRouter:
		return ParseOpenRouter(data)
	}
	return nil, errors.New("price list: neither a LiteLLM price map nor an OpenRouter model list")
}
