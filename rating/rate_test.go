package rating

import (
	"errors"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

const (
	in   = schemas.UnitInput
	cr   = schemas.UnitCachedInput
	cw5  = schemas.UnitCacheWrite5m
	cw1  = schemas.UnitCacheWrite1h
	out  = schemas.UnitOutput
	rsn  = schemas.UnitReasoning
	ain  = schemas.UnitAudioInput
	req  = schemas.UnitRequests
	srch = schemas.UnitWebSearch
	imgs = schemas.UnitImages
	secs = schemas.UnitSeconds
)

func smallBook(t testing.TB) *Book {
	t.Helper()
	s, err := ParseLiteLLM(testdata(t, "litellm_small.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rejected) != 0 {
		t.Fatalf("rejected: %v", s.Err())
	}
	return bookOf(t, s)
}

type rateCase struct {
	name     string
	provider string
	model    string
	tier     schemas.Tier
	q        qty
	markup   string // "" = none
	cost     string
	charge   string // "" = same as cost
	key      string // expected price key, "" = don't check
	lines    map[schemas.Unit]string
	err      error
}

func runRateCases(t *testing.T, b *Book, cases []rateCase) {
	t.Helper()
	var r Rated
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := event(c.provider, c.model, c.q)
			ev.Tier = c.tier
			var terms *Terms
			if c.markup != "" {
				terms = &Terms{Markups: MarkupLayers{Global: &MarkupRules{Default: MustMarkup(c.markup)}}}
			}
			err := b.Rate(ev, terms, &r)
			if c.err != nil {
				var re *RateError
				if !errors.Is(err, c.err) || !errors.As(err, &re) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Cost.String() != c.cost {
				t.Errorf("cost = %s, want %s (lines %+v)", r.Cost, c.cost, r.Lines())
			}
			want := c.charge
			if want == "" {
				want = c.cost
			}
			if r.Charge.String() != want {
				t.Errorf("charge = %s, want %s", r.Charge, want)
			}
			if c.key != "" && r.PriceKey != c.key {
				t.Errorf("price key = %s, want %s", r.PriceKey, c.key)
			}
			for _, l := range r.Lines() {
				if p, ok := c.lines[l.Unit]; ok && l.UnitPrice.String() != p {
					t.Errorf("%s unit price = %s, want %s", l.Unit, l.UnitPrice, p)
				}
			}
			// Lines add up and quantities are carried through.
			var sc, sh Amount
			for _, l := range r.Lines() {
				if l.Quantity != ev.Quantities[l.Unit] {
					t.Errorf("%s quantity %d", l.Unit, l.Quantity)
				}
				sc, _ = sc.Add(l.Cost)
				sh, _ = sh.Add(l.Charge)
			}
			if sc != r.Cost || sh != r.Charge {
				t.Errorf("lines sum to %s/%s, totals %s/%s", sc, sh, r.Cost, r.Charge)
			}
		})
	}
}

func TestRateSmall(t *testing.T) {
	runRateCases(t, smallBook(t), []rateCase{
		{name: "1M tokens at 2.5e-06", model: "gpt-4o", q: qty{in: 1_000_000}, cost: "2.5"},
		{
			// payloads/README.md: 1200 + 2000 (5m write) + 8000 (read) input,
			// 450 output of which 120 reasoning, billed at the output rate.
			name: "readme claude-sonnet-4-5", provider: "anthropic", model: "claude-sonnet-4-5",
			q:      qty{in: 1200, cw5: 2000, cr: 8000, out: 330, rsn: 120},
			markup: "30", cost: "0.02025", charge: "0.026325", key: "claude-sonnet-4-5",
			lines: map[schemas.Unit]string{in: "0.000003", cw5: "0.00000375", cr: "0.0000003", out: "0.000015", rsn: "0.000015"},
		},
		{name: "readme dated name", provider: "anthropic", model: "claude-sonnet-4-5-20250929",
			q: qty{in: 1200, cw5: 2000, cr: 8000, out: 330, rsn: 120}, markup: "12.5", cost: "0.02025", charge: "0.02278125"},
		// Long context: the threshold counts every prompt token, cached included,
		// and crossing it reprices the WHOLE request (output too).
		{name: "200k exactly stays base", model: "claude-sonnet-4-5", q: qty{in: 150_000, cr: 50_000, out: 1000},
			cost: "0.48", lines: map[schemas.Unit]string{in: "0.000003", cr: "0.0000003", out: "0.000015"}},
		{name: "200001 crosses", model: "claude-sonnet-4-5", q: qty{in: 150_001, cr: 50_000, out: 1000},
			cost: "0.952506", lines: map[schemas.Unit]string{in: "0.000006", cr: "0.0000006", out: "0.0000225"}},
		{name: "above 200k 5m write", model: "claude-sonnet-4-5", q: qty{in: 200_000, cw5: 1},
			cost: "1.2000075"},
		// Service tiers.
		{name: "gpt-4o batch", model: "gpt-4o", tier: schemas.TierBatch, q: qty{in: 1_000_000, out: 1_000_000, cr: 1_000_000},
			cost: "7.5", lines: map[schemas.Unit]string{in: "0.00000125", out: "0.000005", cr: "0.00000125"}},
		{name: "gpt-4o priority", model: "gpt-4o", tier: schemas.TierPriority, q: qty{in: 1_000_000, out: 1_000_000, cr: 1_000_000},
			cost: "23.375", lines: map[schemas.Unit]string{in: "0.00000425", out: "0.000017", cr: "0.000002125"}},
		{name: "gpt-4o flex falls back to standard", model: "gpt-4o", tier: schemas.TierFlex, q: qty{in: 1_000_000, out: 1_000_000},
			cost: "12.5"},
		{name: "gpt-5 flex", model: "gpt-5", tier: schemas.TierFlex, q: qty{in: 1_000_000, out: 1_000_000, rsn: 1_000_000, cr: 1_000_000},
			cost: "10.6875", lines: map[schemas.Unit]string{rsn: "0.000005", cr: "0.0000000625"}},
		// Cache writes, 1 hour.
		{name: "1h write stated", model: "claude-sonnet-4-20250514", q: qty{cw1: 100_000}, cost: "0.6"},
		{name: "1h write derived 2x input", model: "claude-sonnet-4-5", q: qty{cw1: 100_000}, cost: "0.6",
			lines: map[schemas.Unit]string{cw1: "0.000006"}},
		{name: "1h write derived above 200k", model: "claude-sonnet-4-5", q: qty{in: 200_000, cw1: 1_000_000}, cost: "13.2"},
		{name: "1h write on gpt-4o unpriced", model: "gpt-4o", q: qty{in: 10, cw1: 10}, err: ErrUnpriced},
		{name: "5m write on gpt-4o bills as input", model: "gpt-4o", q: qty{cw5: 1_000_000}, cost: "2.5"},
		{name: "audio on gpt-4o unpriced", model: "gpt-4o", q: qty{in: 10, ain: 10}, err: ErrUnpriced},
		{name: "audio on audio model", model: "gpt-4o-audio-preview", q: qty{in: 1_000_000, ain: 1_000_000}, cost: "42.5"},
		// Non-token units.
		{name: "web search medium", model: "claude-sonnet-4-5", q: qty{srch: 3}, cost: "0.03"},
		{name: "requests informational on token model", model: "gpt-4o", q: qty{in: 1_000_000, req: 1}, cost: "2.5"},
		{name: "images", model: "dall-e-3", q: qty{imgs: 2}, cost: "0.08"},
		{name: "seconds", model: "whisper-1", q: qty{secs: 60}, cost: "0.006"},
		{name: "tokens on image model unpriced", model: "dall-e-3", q: qty{in: 5}, err: ErrUnpriced},
		// Banded tiered_pricing (dashscope): one tier for the whole request.
		{name: "tiered first band", model: "dashscope/qwen3-coder-plus", q: qty{in: 32_000, out: 1000},
			cost: "0.037", lines: map[schemas.Unit]string{in: "0.000001", out: "0.000005"}},
		{name: "tiered second band", model: "dashscope/qwen3-coder-plus", q: qty{in: 32_001, out: 1000},
			cost: "0.0666018", lines: map[schemas.Unit]string{in: "0.0000018", out: "0.000009"}},
		{name: "tiered output only", model: "dashscope/qwen3-coder-plus", q: qty{out: 1}, cost: "0.000005"},
		// Resolution and errors.
		{name: "provider prefixed", model: "openai/gpt-4o", q: qty{in: 1}, cost: "0.0000025", key: "gpt-4o"},
		{name: "azure prefers azure entry", provider: "azure", model: "gpt-4o", q: qty{in: 1}, cost: "0.0000025", key: "azure/gpt-4o"},
		{name: "unknown model", model: "no-such-model", q: qty{in: 1}, err: ErrUnknownModel},
		{name: "empty event", model: "gpt-4o", cost: "0"},
		{name: "noisy price exact", model: "databricks/databricks-claude-sonnet-4-5", q: qty{in: 1_000_000}, cost: "2.9999900000000002"},
	})
}

func TestRateNegativeQuantity(t *testing.T) {
	var r Rated
	err := smallBook(t).Rate(event("", "gpt-4o", qty{in: -1}), nil, &r)
	if !errors.Is(err, ErrInvalidQuantity) {
		t.Fatalf("err = %v", err)
	}
}

func TestRatedRecordsVersionsAndCard(t *testing.T) {
	b := smallBook(t)
	var r Rated
	terms := &Terms{CardID: "default", CardVersion: 3, Markups: MarkupLayers{Card: &MarkupRules{Default: MustMarkup("30")}}}
	if err := b.Rate(event("anthropic", "claude-sonnet-4-5", qty{in: 100}), terms, &r); err != nil {
		t.Fatal(err)
	}
	if r.PriceVersion != "v1" || r.CardID != "default" || r.CardVersion != 3 || r.Provider != "anthropic" || r.EventID != "ev-1" {
		t.Errorf("rated metadata: %+v", r)
	}
	if r.Markup.String() != "30%" {
		t.Errorf("markup %s", r.Markup)
	}
}

func TestReconcile(t *testing.T) {
	ours := MustAmount("0.02025")
	rec := Reconcile(decimal.NewNullDecimal(decimal.RequireFromString("0.0202501")), ours, decimal.RequireFromString("0.000001"))
	if !rec.Reported || !rec.Within || rec.Diff.String() != "0.0000001" {
		t.Errorf("%+v", rec)
	}
	rec = Reconcile(decimal.NewNullDecimal(decimal.RequireFromString("0.019")), ours, decimal.RequireFromString("0.000001"))
	if rec.Within || rec.Diff.String() != "-0.00125" {
		t.Errorf("%+v", rec)
	}
	if rec := Reconcile(decimal.NullDecimal{}, ours, decimal.Zero); rec.Reported {
		t.Errorf("%+v", rec)
	}
}
