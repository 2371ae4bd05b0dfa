package loadgen

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// popularModels is the default model set, most used first (Zipf rank
// order): provider and model as a gateway or LiteLLM reports them, which is
// not always the price-list key ("gpt-4o" from azure resolves to
// "azure/gpt-4o"). Names the price list does not price are skipped.
var popularModels = []struct{ provider, model string }{
	{"openai", "gpt-4o-mini"},
	{"openai", "gpt-4o"},
	{"anthropic", "claude-sonnet-4-5-20250929"},
	{"openai", "gpt-4.1-mini"},
	{"openai", "gpt-5-mini"},
	{"gemini", "gemini-2.5-flash"},
	{"openai", "gpt-4.1"},
	{"anthropic", "claude-haiku-4-5"},
	{"openai", "gpt-5"},
	{"gemini", "gemini-2.5-pro"},
	{"openai", "o4-mini"},
	{"openai", "gpt-4.1-nano"},
	{"anthropic", "claude-sonnet-4-20250514"},
	{"deepseek", "deepseek-chat"},
	{"azure", "gpt-4o"},
	{"openai", "o3"},
	{"anthropic", "claude-opus-4-1"},
	{"gemini", "gemini-2.0-flash"},
	{"openai", "gpt-5-nano"},
	{"anthropic", "claude-3-5-haiku-20241022"},
	{"gemini", "gemini-2.5-flash-lite"},
	{"openai", "o3-mini"},
	{"deepseek", "deepseek-reasoner"},
	{"anthropic", "claude-3-7-sonnet-20250219"},
	{"bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"},
	{"xai", "grok-3-mini"},
	{"mistral", "mistral-large-latest"},
	{"openai", "gpt-5.1"},
	{"anthropic", "claude-opus-4-5"},
	{"azure", "gpt-4.1"},
	{"xai", "grok-4"},
	{"groq", "llama-3.3-70b-versatile"},
	{"openai", "gpt-3.5-turbo"},
	{"mistral", "mistral-small-latest"},
	{"together_ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo"},
	{"gemini", "gemini-3-pro-preview"},
}

// popularOpenRouter is the default OpenRouter catalog, most used first:
// OpenRouter's own model slugs, as its responses report them. Slugs the
// price list does not price for provider openrouter are skipped.
var popularOpenRouter = []string{
	"anthropic/claude-sonnet-4.5",
	"google/gemini-2.5-flash",
	"openai/gpt-4o",
	"deepseek/deepseek-chat",
	"openai/gpt-5-mini",
	"x-ai/grok-4",
	"anthropic/claude-haiku-4.5",
	"google/gemini-2.5-pro",
	"qwen/qwen3-coder",
	"openai/gpt-5",
	"deepseek/deepseek-r1",
	"z-ai/glm-4.6",
	"anthropic/claude-sonnet-4",
	"openai/gpt-4.1",
	"mistralai/mistral-large",
	"anthropic/claude-opus-4.1",
}

// model is one model of the catalog with what the generator needs to make
// realistic, rateable usage for it.
type model struct {
	provider, name string // as events report them
	key            string // the price-list entry it resolves to
	keyIdx         uint32 // index into Generator.keys
	mp             *rating.ModelPrice

	reasoning     bool
	thinkingShare float64 // share of requests with reasoning tokens
	cacheRead     bool    // the entry states a cache-read price
	cacheWrite    bool    // Claude-family entry with a cache-write price
	has1h         bool    // 1-hour cache writes are priced
	tiers         []schemas.Tier
	band          int64 // lowest long-context threshold, 0 if none
	claude        bool

	// Interned unit prices per tier and price band, filled on first use
	// (see Generator.priceRow). Only for entries whose rules depend on the
	// prompt size alone (all of LiteLLM's): then the rules that apply are
	// the ones whose threshold is below the prompt, and with thresholds
	// sorted, their count names the combination.
	thresholds []int64
	cacheable  bool
	rows       [schemas.NumTiers][]*priceRow
}

// priceRow is one resolved price table: interned unit prices and which
// units have a price.
type priceRow struct {
	idx [schemas.NumUnits]uint32
	ok  uint16
}

// reasoningName guesses reasoning support from a model name when the price
// list does not say (OpenRouter lists, entries without supports_reasoning).
var reasoningName = regexp.MustCompile(`(^|[/.-])(o1|o3|o4)(-|$)|gpt-5|claude-3-7|claude-(sonnet|opus|haiku)-4|claude-4|gemini-2[.-]5|gemini-3|reasoner|deepseek-r1|grok-3-mini|grok-4|qwq|thinking|magistral`)

// liteLLMHints reads supports_reasoning from a LiteLLM price map; it
// returns nil for anything else (an OpenRouter list).
func liteLLMHints(data []byte) map[string]bool {
	var raw map[string]struct {
		SupportsReasoning *bool `json:"supports_reasoning"`
	}
	if json.Unmarshal(data, &raw) != nil {
		return nil
	}
	hints := make(map[string]bool, len(raw))
	for k, v := range raw {
		if v.SupportsReasoning != nil {
			hints[k] = *v.SupportsReasoning
		}
	}
	return hints
}

// chatLike reports whether a price-list mode is a text-generation API.
func chatLike(mode string) bool {
	switch mode {
	case "", "chat", "responses", "completion":
		return true
	}
	return false
}

// buildCatalog resolves the model selection against the price list.
func buildCatalog(snap *rating.Snapshot, sel string, hints map[string]bool) ([]model, error) {
	var out []model
	seen := map[string]bool{} // reported provider/name
	add := func(provider, name string) {
		id := provider + "\x00" + name
		if seen[id] {
			return
		}
		mp := snap.Lookup(provider, name, nil)
		if mp == nil || mp.Unpriced != "" || !chatLike(mp.Mode) {
			return
		}
		_, ok := mp.Table(0, 0, schemas.TierStandard)
		if !ok[schemas.UnitInput] || !ok[schemas.UnitOutput] {
			return
		}
		seen[id] = true
		out = append(out, newModel(provider, name, mp, hints))
	}
	for _, p := range popularModels {
		add(p.provider, p.model)
	}
	if len(out) == 0 && sel == ModelsDefault {
		sel = ModelsAll // a price list without the popular names: use what it has
	}
	want := len(out)
	switch sel {
	case ModelsDefault:
	case ModelsAll:
		want = -1
	default:
		n, err := strconv.Atoi(sel)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("models %q: expected default, all or a positive count", sel)
		}
		want = n
	}
	if want < 0 || want > len(out) {
		// The rest of the list in key order, each under its own key and
		// provider (which always resolves to itself).
		keys := append([]*rating.ModelPrice(nil), snap.Prices...)
		sort.Slice(keys, func(i, j int) bool { return keys[i].Key < keys[j].Key })
		for _, mp := range keys {
			if want >= 0 && len(out) >= want {
				break
			}
			if snap.Lookup(mp.Provider, mp.Key, nil) != mp {
				continue
			}
			add(mp.Provider, mp.Key)
		}
	}
	if want >= 0 && len(out) > want {
		out = out[:want]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("models %q: the price list has no chat model with input and output token prices", sel)
	}
	return out, nil
}

// buildOpenRouterCatalog resolves the model selection among the models
// OpenRouter reports: each is reported with provider "openrouter" and an
// OpenRouter slug, and kept only when that pair resolves to an entry of
// provider openrouter (not, through a fallback, to the vendor's own entry:
// OpenRouter bills at its own prices). It may return none (a price list
// without OpenRouter entries).
func buildOpenRouterCatalog(snap *rating.Snapshot, sel string, hints map[string]bool) []model {
	var out []model
	seen := map[string]bool{}
	add := func(slug string) {
		if seen[slug] {
			return
		}
		mp := snap.Lookup(schemas.OpenRouterProvider, slug, nil)
		if mp == nil || mp.Provider != schemas.OpenRouterProvider || mp.Unpriced != "" || !chatLike(mp.Mode) {
			return
		}
		_, ok := mp.Table(0, 0, schemas.TierStandard)
		if !ok[schemas.UnitInput] || !ok[schemas.UnitOutput] {
			return
		}
		seen[slug] = true
		out = append(out, newModel(schemas.OpenRouterProvider, slug, mp, hints))
	}
	for _, slug := range popularOpenRouter {
		add(slug)
	}
	want := len(out)
	switch sel {
	case ModelsDefault:
		if want > 0 {
			return out
		}
		want = -1 // a price list without the popular slugs: use what it has
	case ModelsAll:
		want = -1
	default:
		want, _ = strconv.Atoi(sel) // validated
	}
	if want < 0 || want > len(out) {
		keys := append([]*rating.ModelPrice(nil), snap.Prices...)
		sort.Slice(keys, func(i, j int) bool { return keys[i].Key < keys[j].Key })
		for _, mp := range keys {
			if want >= 0 && len(out) >= want {
				break
			}
			if mp.Provider != schemas.OpenRouterProvider {
				continue
			}
			// The slug OpenRouter reports: the key without LiteLLM's
			// "openrouter/" prefix (an OpenRouter model list's keys are
			// the slugs already).
			add(strings.TrimPrefix(mp.Key, schemas.OpenRouterProvider+"/"))
		}
	}
	if want >= 0 && len(out) > want {
		out = out[:want]
	}
	return out
}

func newModel(provider, name string, mp *rating.ModelPrice, hints map[string]bool) model {
	m := model{provider: provider, name: name, key: mp.Key, mp: mp}
	lower := strings.ToLower(mp.Key + " " + name)
	m.claude = strings.Contains(lower, "claude")
	if r, ok := hints[mp.Key]; ok {
		m.reasoning = r
	} else {
		m.reasoning = reasoningName.MatchString(strings.ToLower(mp.Key)) || reasoningName.MatchString(strings.ToLower(name))
	}
	m.thinkingShare = 0.9
	if m.claude {
		m.thinkingShare = 0.35 // extended thinking is opt-in per request
	}
	std := &mp.Base[schemas.TierStandard]
	m.cacheRead = std.Has(schemas.UnitCachedInput)
	m.cacheWrite = m.claude && std.Has(schemas.UnitCacheWrite5m)
	_, ok := mp.Table(0, 0, schemas.TierStandard)
	m.has1h = m.cacheWrite && ok[schemas.UnitCacheWrite1h]
	for t := schemas.TierBatch; t < schemas.NumTiers; t++ {
		if !mp.Base[t].Empty() {
			m.tiers = append(m.tiers, t)
		}
	}
	m.cacheable = true
	for _, r := range mp.Rules {
		if r.Window == nil && r.AbovePromptTokens > 0 && (m.band == 0 || r.AbovePromptTokens < m.band) {
			m.band = r.AbovePromptTokens
		}
		if r.Window != nil {
			m.cacheable = false
		}
		m.thresholds = append(m.thresholds, r.AbovePromptTokens)
	}
	sort.Slice(m.thresholds, func(i, j int) bool { return m.thresholds[i] < m.thresholds[j] })
	for t := range m.rows {
		m.rows[t] = make([]*priceRow, len(m.thresholds)+1)
	}
	return m
}

// apiBase is where a LiteLLM proxy would have sent the call, for the
// payload's api_base field.
func apiBase(provider string) string {
	switch provider {
	case "openai":
		return "https://api.openai.com/v1"
	case "anthropic":
		return "https://api.anthropic.com/v1/messages"
	case "gemini":
		return "https://generativelanguage.googleapis.com/v1beta"
	case "azure":
		return "https://tariff-loadgen.openai.azure.com"
	case "bedrock":
		return "https://bedrock-runtime.us-east-1.amazonaws.com"
	}
	return "https://api." + provider + ".example"
}
