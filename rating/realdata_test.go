package rating

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

var openrouterFiles = []string{
	"openrouter_models.2025-12-18.json", "openrouter_models.2026-01-29.json",
	"openrouter_models.2026-08-01.json", "openrouter_models.2026-08-19.json",
}

// countUnrepresentable walks every number under a price-like key and counts
// those PriceFromDecimal refuses. This covers fields the importer ignores
// too, so the figure is "how many prices in the file do not fit", not just
// "how many the importer tripped on".
func countUnrepresentable(t *testing.T, data []byte, isPrice func(path string) bool) (total, bad int) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(path+"/"+k, c)
			}
		case []any:
			for _, c := range x {
				walk(path+"/[]", c)
			}
		case json.Number, string:
			if !isPrice(path) {
				return
			}
			s := ""
			if n, ok := x.(json.Number); ok {
				s = string(n)
			} else {
				s = x.(string)
			}
			d, err := decimal.NewFromString(s)
			if err != nil {
				return // not a number (a description string)
			}
			total++
			if d.Sign() < 0 {
				return // OpenRouter's "-1" means variable, handled as Unpriced
			}
			if _, err := PriceFromDecimal(d); err != nil {
				bad++
				t.Logf("unrepresentable: %s = %s: %v", path, s, err)
			}
		}
	}
	walk("", v)
	return total, bad
}

func TestRealPricesRepresentable(t *testing.T) {
	for _, name := range []string{"litellm_model_prices.json", "litellm_model_prices.2025-11-28.json"} {
		total, bad := countUnrepresentable(t, sharedData(t, name), func(p string) bool {
			return strings.Contains(p, "cost") && !strings.Contains(p, "range")
		})
		t.Logf("%s: %d prices, %d unrepresentable", name, total, bad)
		if bad != 0 || total < 5000 {
			t.Errorf("%s: %d of %d prices unrepresentable", name, bad, total)
		}
	}
	for _, name := range openrouterFiles {
		total, bad := countUnrepresentable(t, sharedData(t, name), func(p string) bool {
			return strings.Contains(p, "/pricing/") && !strings.HasSuffix(p, "min_prompt_tokens") && !strings.Contains(p, "utc_")
		})
		t.Logf("%s: %d prices, %d unrepresentable", name, total, bad)
		if bad != 0 || total < 500 {
			t.Errorf("%s: %d of %d prices unrepresentable", name, bad, total)
		}
	}
}

func TestParseLiteLLMReal(t *testing.T) {
	s := liteLLM(t, "litellm_model_prices.json")
	if len(s.Rejected) != 0 {
		t.Fatalf("rejected entries: %v", s.Err())
	}
	if len(s.Prices) != 2595 { // LITELLM_PRICE_FIELDS.md: 2595 entries + sample_spec
		t.Errorf("%d entries, want 2595", len(s.Prices))
	}
	if s.Get("sample_spec") != nil {
		t.Error("sample_spec imported")
	}
	unpriced := 0
	for _, mp := range s.Prices {
		if mp.Unpriced != "" {
			unpriced++
		}
	}
	t.Logf("%d entries, %d with no billable price", len(s.Prices), unpriced)
	gp := s.Get("gemini-2.5-pro")
	if gp.Provider != "vertex_ai-language-models" || len(gp.Rules) != 1 || gp.Rules[0].AbovePromptTokens != 200_000 {
		t.Errorf("gemini-2.5-pro: %+v", gp)
	}
	if p, ok := gp.Base[schemas.TierStandard].Get(schemas.UnitInput); !ok || p.String() != "0.00000125" {
		t.Errorf("gemini-2.5-pro input %s", p)
	}
	if DetectFormat(sharedData(t, "litellm_model_prices.json")) != FormatLiteLLM {
		t.Error("DetectFormat(litellm)")
	}
}

func TestRateRealLiteLLM(t *testing.T) {
	b := bookOf(t, liteLLM(t, "litellm_model_prices.json"))
	runRateCases(t, b, []rateCase{
		{name: "readme example", provider: "anthropic", model: "claude-sonnet-4-5",
			q: qty{in: 1200, cw5: 2000, cr: 8000, out: 330, rsn: 120}, markup: "30", cost: "0.02025", charge: "0.026325"},
		{name: "gemini-2.5-pro at 200k", model: "gemini-2.5-pro", q: qty{in: 190_000, cr: 10_000, out: 1000},
			cost: "0.24875", lines: map[schemas.Unit]string{in: "0.00000125", cr: "0.000000125", out: "0.00001"}},
		{name: "gemini-2.5-pro above 200k", model: "gemini-2.5-pro", q: qty{in: 190_001, cr: 10_000, out: 1000},
			cost: "0.4925025", lines: map[schemas.Unit]string{in: "0.0000025", cr: "0.00000025", out: "0.000015"}},
		{name: "gemini-1.5-flash above 128k", model: "gemini-1.5-flash", q: qty{in: 128_001},
			cost: "0.128001"},
		{name: "gpt-5 priority", model: "gpt-5", tier: schemas.TierPriority, q: qty{in: 1_000_000, out: 1_000_000},
			cost: "22.5"},
		{name: "claude-opus-4-6 1h stated", provider: "anthropic", model: "claude-opus-4-6", q: qty{cw1: 10_000}, cost: "0.1"},
		{name: "bedrock claude via converse key", provider: "bedrock", model: "anthropic.claude-sonnet-4-5-20250929-v1:0",
			q: qty{in: 1000}, cost: "0.003", key: "anthropic.claude-sonnet-4-5-20250929-v1:0"},
		{name: "vertex claude", provider: "vertex_ai", model: "claude-sonnet-4-5@20250929",
			q: qty{in: 1000}, key: "vertex_ai/claude-sonnet-4-5@20250929", cost: "0.003"},
		{name: "vertex claude batch", provider: "vertex_ai", model: "claude-sonnet-4-5", tier: schemas.TierBatch,
			q: qty{in: 1000}, key: "vertex_ai/claude-sonnet-4-5", cost: "0.0015"},
		{name: "openrouter key in litellm", provider: "openrouter", model: "anthropic/claude-sonnet-4.5",
			q: qty{in: 1000}, key: "openrouter/anthropic/claude-sonnet-4.5", cost: "0.003"},
	})
}

func TestLookupReal(t *testing.T) {
	s := liteLLM(t, "litellm_model_prices.json")
	cases := []struct{ provider, model, want string }{
		{"", "gpt-4o", "gpt-4o"},
		{"openai", "gpt-4o", "gpt-4o"},
		{"", "openai/gpt-4o", "gpt-4o"},
		{"", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06"},
		{"azure", "gpt-4o", "azure/gpt-4o"},
		{"", "azure/gpt-4o", "azure/gpt-4o"},
		{"anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5"},
		{"", "anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"},
		{"anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929"},
		{"anthropic", "claude-sonnet-4.5", "claude-sonnet-4-5"},
		{"anthropic", "Claude-Sonnet-4-5", "claude-sonnet-4-5"},
		{"anthropic", "claude-sonnet-4-5-20991231", "claude-sonnet-4-5"}, // unknown date → undated entry
		{"gemini", "gemini-2.5-pro", "gemini/gemini-2.5-pro"},
		{"google", "gemini-2.5-pro", "gemini/gemini-2.5-pro"},
		{"vertex_ai", "gemini-2.5-pro", "gemini-2.5-pro"},
		{"", "gemini-2.5-pro", "gemini-2.5-pro"},
		{"", "bedrock/us-gov-west-1/anthropic.claude-3-7-sonnet-20250219-v1:0", "bedrock/us-gov-west-1/anthropic.claude-3-7-sonnet-20250219-v1:0"},
		{"", "no-such-model", ""},
	}
	for _, c := range cases {
		got := ""
		if mp := s.Lookup(c.provider, c.model, nil); mp != nil {
			got = mp.Key
		}
		if got != c.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", c.provider, c.model, got, c.want)
		}
	}
	al := NewAliases(map[string]string{"Prod-Claude": "claude-sonnet-4-5", "eu-gpt": "azure/gpt-4o"})
	if mp := s.Lookup("", "prod-claude", al); mp == nil || mp.Key != "claude-sonnet-4-5" {
		t.Errorf("alias: %v", mp)
	}
	if mp := s.Lookup("", "eu-gpt", al); mp == nil || mp.Key != "azure/gpt-4o" {
		t.Errorf("alias: %v", mp)
	}
}

func TestLookupUndatedToDated(t *testing.T) {
	mk := func(k string) *ModelPrice {
		mp := &ModelPrice{Key: k, Provider: "x"}
		mp.Base[0].Set(in, MustPrice("1"))
		return mp
	}
	s, err := NewSnapshot(FormatLiteLLM, []*ModelPrice{mk("foo-20240101"), mk("foo-20250101"), mk("bar-2024-08-06")})
	if err != nil {
		t.Fatal(err)
	}
	for model, want := range map[string]string{"foo": "foo-20250101", "bar": "bar-2024-08-06", "foo-20260101": "foo-20250101"} {
		if mp := s.Lookup("", model, nil); mp == nil || mp.Key != want {
			t.Errorf("Lookup(%s) = %v, want %s", model, mp, want)
		}
	}
}

func TestOpenRouterSmall(t *testing.T) {
	data := testdata(t, "openrouter_small.json")
	if DetectFormat(data) != FormatOpenRouter {
		t.Fatal("DetectFormat")
	}
	s, err := ParsePriceList(data)
	if err != nil || len(s.Rejected) != 0 {
		t.Fatal(err, s.Err())
	}
	b := bookOf(t, s)
	var r Rated
	at := func(model string, hh, mm int, q qty) string {
		t.Helper()
		ev := event("", model, q)
		ev.Time = time.Date(2026, 3, 1, hh, mm, 0, 0, time.UTC)
		if err := b.Rate(ev, nil, &r); err != nil {
			t.Fatal(err)
		}
		return r.Cost.String()
	}
	// min_prompt_tokens is strictly greater.
	if got := at("google/gemini-2.5-pro", 12, 0, qty{in: 200_000, out: 1000}); got != "0.26" {
		t.Errorf("gemini at 200000: %s", got)
	}
	if got := at("google/gemini-2.5-pro", 12, 0, qty{in: 200_001, out: 1000}); got != "0.5150025" {
		t.Errorf("gemini at 200001: %s", got)
	}
	// "internal_reasoning": "0" is not a free reasoning price.
	if got := at("google/gemini-2.5-pro", 12, 0, qty{rsn: 1000}); got != "0.01" {
		t.Errorf("gemini reasoning: %s", got)
	}
	// UTC windows 00:30–16:30 standard, 16:30–00:30 (wraps) discounted.
	for _, c := range []struct {
		hh, mm int
		want   string
	}{{0, 29, "0.14"}, {0, 30, "0.28"}, {12, 0, "0.28"}, {16, 29, "0.28"}, {16, 30, "0.14"}, {23, 59, "0.14"}, {0, 0, "0.14"}} {
		if got := at("example-lab/offpeak-model", c.hh, c.mm, qty{in: 1_000_000}); got != c.want {
			t.Errorf("offpeak at %02d:%02d: %s, want %s", c.hh, c.mm, got, c.want)
		}
	}
	// 1h cache write stated; provider is the id prefix.
	if got := at("anthropic/claude-opus-4.8", 12, 0, qty{cw1: 100_000, srch: 1}); got != "1.01" {
		t.Errorf("opus 1h: %s", got)
	}
	if r.Provider != "anthropic" {
		t.Errorf("provider %s", r.Provider)
	}
}

func TestOpenRouterReal(t *testing.T) {
	for _, name := range openrouterFiles {
		data := sharedData(t, name)
		if DetectFormat(data) != FormatOpenRouter {
			t.Errorf("%s: DetectFormat", name)
		}
		s, err := ParseOpenRouter(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Rejected) != 0 {
			t.Errorf("%s: rejected %v", name, s.Err())
		}
		if mp := s.Get("openrouter/auto"); mp == nil || mp.Unpriced == "" {
			t.Errorf("%s: openrouter/auto should be unpriced (-1)", name)
		}
	}
	s, err := ParseOpenRouter(sharedData(t, "openrouter_models.2026-08-19.json"))
	if err != nil {
		t.Fatal(err)
	}
	b := bookOf(t, s)
	var r Rated
	rate := func(model string, tier schemas.Tier, hh int, q qty) string {
		t.Helper()
		ev := event("", model, q)
		ev.Tier, ev.Time = tier, time.Date(2026, 8, 20, hh, 0, 0, 0, time.UTC)
		if err := b.Rate(ev, nil, &r); err != nil {
			t.Fatal(err)
		}
		return r.Cost.String()
	}
	// deepseek-v4-pro: 01:00–04:00 and 06:00–10:00 UTC cost double.
	if got := rate("deepseek/deepseek-v4-pro", schemas.TierStandard, 2, qty{in: 1_000_000}); got != "1.32" {
		t.Errorf("deepseek peak: %s", got)
	}
	if got := rate("deepseek/deepseek-v4-pro", schemas.TierStandard, 12, qty{in: 1_000_000}); got != "0.66" {
		t.Errorf("deepseek off-peak: %s", got)
	}
	// qwen3-max: bands above 32k and 128k.
	if got := rate("qwen/qwen3-max", schemas.TierStandard, 12, qty{in: 128_001}); got != "0.24960195" {
		t.Errorf("qwen3-max above 128k: %s", got)
	}
	// ":batch" entries supply the batch tier, long-context band included.
	if got := rate("google/gemini-2.5-pro", schemas.TierBatch, 12, qty{in: 200_001}); got != "0.25000125" {
		t.Errorf("gemini batch above 200k: %s", got)
	}
	var re *RateError
	ev := event("", "openrouter/auto", qty{in: 1})
	if err := b.Rate(ev, nil, &r); !errors.Is(err, ErrUnpriced) || !errors.As(err, &re) || !strings.Contains(re.Reason, "variable") {
		t.Errorf("openrouter/auto: %v", err)
	}
}

func TestDiffReal(t *testing.T) {
	old := liteLLM(t, "litellm_model_prices.2025-11-28.json")
	cur := liteLLM(t, "litellm_model_prices.json")
	changes := Diff(old, cur)
	find := func(kind ChangeKind, model string, unit schemas.Unit) *Change {
		for i := range changes {
			c := &changes[i]
			if c.Kind == kind && c.Model == model && (kind <= ChangeModelRemoved || (c.Unit == unit && c.Condition == "" && c.Tier == schemas.TierStandard)) {
				return c
			}
		}
		return nil
	}
	if find(ChangeModelAdded, "claude-opus-4-6", 0) == nil {
		t.Error("claude-opus-4-6 not added")
	}
	if find(ChangeModelRemoved, "azure/claude-sonnet-4-5", 0) == nil {
		t.Error("azure/claude-sonnet-4-5 not removed")
	}
	if c := find(ChangePriceDown, "azure_ai/grok-4", in); c == nil || c.Old.String() != "0.0000055" || c.New.String() != "0.000003" || c.Relative.String() != "-0.454545" {
		t.Errorf("azure_ai/grok-4 input: %+v", c)
	}
	if c := find(ChangePriceUp, "cerebras/gpt-oss-120b", in); c == nil || c.Relative.String() != "0.4" {
		t.Errorf("cerebras/gpt-oss-120b input: %+v", c)
	}
	// Deterministic: same inputs, same list.
	again := Diff(old, cur)
	if len(again) != len(changes) {
		t.Fatal("diff not deterministic")
	}
	for i := range again {
		if again[i].Model != changes[i].Model || again[i].Kind != changes[i].Kind || again[i].Unit != changes[i].Unit {
			t.Fatalf("diff order differs at %d", i)
		}
	}
	added, removed := 0, 0
	for _, c := range changes {
		switch c.Kind {
		case ChangeModelAdded:
			added++
		case ChangeModelRemoved:
			removed++
		}
	}
	if added != 816 || removed != 60 {
		t.Errorf("added %d removed %d, want 816 and 60", added, removed)
	}
	if len(Diff(cur, cur)) != 0 {
		t.Error("diff of a snapshot with itself is not empty")
	}
}

func TestVersionRoundTripReal(t *testing.T) {
	cur := liteLLM(t, "litellm_model_prices.json")
	v := &Version{ID: "2026-02-21", EffectiveFrom: t0, Prices: cur}
	data, err := MarshalVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalVersion(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != v.ID || !back.EffectiveFrom.Equal(t0) || back.Prices.Source != FormatLiteLLM {
		t.Errorf("metadata: %+v", back)
	}
	if d := Diff(cur, back.Prices); len(d) != 0 {
		t.Errorf("round trip changed %d prices, first %+v", len(d), d[0])
	}
	if !bytes.Contains(data, []byte(`"input":"0.0000029999900000000002"`)) {
		t.Error("prices not stored as exact decimal strings")
	}
	// The reloaded tables rate identically, rules and derived prices included.
	b1, b2 := bookOf(t, cur), bookOf(t, back.Prices)
	var r1, r2 Rated
	for _, mp := range cur.Prices {
		ev := event("", mp.Key, qty{in: 250_000, out: 1000, cr: 10, cw1: 10, rsn: 5})
		e1, e2 := b1.Rate(ev, nil, &r1), b2.Rate(ev, nil, &r2)
		if (e1 == nil) != (e2 == nil) || r1.Cost != r2.Cost {
			t.Fatalf("%s: %v/%v %s/%s", mp.Key, e1, e2, r1.Cost, r2.Cost)
		}
	}
	if os.Getenv("TARIFF_WRITE_VERSION") != "" {
		_ = os.WriteFile(filepath.Join(t.TempDir(), "v.json"), data, 0o644)
	}
}
