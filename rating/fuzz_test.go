package rating

import (
	"errors"
	"testing"
)

// FuzzParseLiteLLM: outside input must never panic, and whatever imports
// must compile and rate without panicking.
func FuzzParseLiteLLM(f *testing.F) {
	f.Add([]byte(`{"m":{"litellm_provider":"x","input_cost_per_token":1e-6,"output_cost_per_token_above_2k_tokens_priority":"3e-6","new_field_2027":{"a":1}}}`))
	f.Add([]byte(`{"t":{"tiered_pricing":[{"range":[0,10],"input_cost_per_token":1},{"range":[10,"x"]}]}}`))
	f.Add([]byte(`{"n":{"input_cost_per_token":-1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRate(t, ParseLiteLLM, data)
	})
}

func FuzzParseOpenRouter(f *testing.F) {
	f.Add([]byte(`{"data":[{"id":"a/b","pricing":{"prompt":"0.000001","discount":0.1,"overrides":[{"utc_start":2300,"utc_end":100,"prompt":"0"},{"min_prompt_tokens":5}]}}]}`))
	f.Add([]byte(`[{"id":"a/b:batch","pricing":{"prompt":"-1"}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRate(t, ParseOpenRouter, data)
	})
}

func fuzzRate(t *testing.T, parse func([]byte) (*Snapshot, error), data []byte) {
	s, err := parse(data)
	if err != nil {
		return
	}
	b, err := NewBook(nil, &Version{ID: "v", Prices: s})
	if err != nil {
		t.Fatal(err)
	}
	var r Rated
	for _, mp := range s.Prices {
		for _, q := range []qty{{in: 1, out: 1}, {in: 300_000, rsn: 2, cw1: 3}} {
			err := b.Rate(event("", mp.Key, q), nil, &r)
			if err != nil && !errors.Is(err, ErrUnpriced) && !errors.Is(err, ErrOverflow) {
				t.Fatalf("%s: %v", mp.Key, err)
			}
		}
	}
}

func TestUnknownKeysIgnored(t *testing.T) {
	s, err := ParseLiteLLM([]byte(`{"sample_spec":{"input_cost_per_token":"junk"},
		"m":{"litellm_provider":"x","input_cost_per_token":0.000001,"brand_new_cost_per_widget":0.5,"new_flag":true,"nested":{"a":[1,2]}},
		"free":{"litellm_provider":"ollama","input_cost_per_token":0,"output_cost_per_token":0.0},
		"bad":{"litellm_provider":"x","input_cost_per_token":1e-30}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Get("m") == nil || s.Get("bad") != nil || len(s.Rejected) != 1 || s.Rejected[0].Model != "bad" || s.Rejected[0].Field != "input_cost_per_token" {
		t.Fatalf("prices %v rejected %v", s.Prices, s.Err())
	}
	if !errors.Is(s.Err(), ErrInexact) {
		t.Errorf("rejection reason: %v", s.Err())
	}
	// Listed as 0 means free: rated, with a zero line.
	var r Rated
	if err := bookOf(t, s).Rate(event("", "free", qty{in: 10, out: 10}), nil, &r); err != nil || !r.Cost.IsZero() || len(r.Lines()) != 2 {
		t.Errorf("free model: %v %s %d", err, r.Cost, len(r.Lines()))
	}
}
