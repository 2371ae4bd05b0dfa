package main

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// TestPlanCatalogExactDecimals: amounts written in YAML reach the plan
// digit for digit, whether quoted or not; a float would turn
// 9999999.999999999999 into 10000000.
func TestPlanCatalogExactDecimals(t *testing.T) {
	var b BalancesConfig
	err := yaml.Unmarshal([]byte(`
plans:
  - id: pro
    version: 3
    cycle: {kind: interval, interval: 168h}
    fee: 9999999.999999999999
    allowance: "0.1"
    overage: block
    credits: ignored
    token_groups:
      - {name: mini, tokens: 1000000, match: {price_keys: [gpt-4o-mini]}}
    thresholds: [{kind: percent, percent: 80}, {kind: amount, amount: 0.10}]
`), &b)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.validate(); err != nil {
		t.Fatal(err)
	}
	p := b.Plans[0]
	if p.Fee.String() != "9999999.999999999999" || p.Allowance.String() != "0.1" || p.Version != 3 ||
		p.Cycle.Interval.Hours() != 168 || p.Overage.String() != "block" || p.Credits.String() != "ignored" ||
		p.TokenGroups[0].Tokens != 1000000 || p.TokenGroups[0].Match.PriceKeys[0] != "gpt-4o-mini" ||
		p.Thresholds[1].Amount.String() != "0.1" || p.Thresholds[0].Percent != 80 {
		t.Fatalf("plan = %+v", p)
	}
	for _, bad := range []string{"plans: [{id: x, fee: 0x10}]", "plans: [{id: x, fee: .inf}]", "plans: {id: x}"} {
		if err := yaml.Unmarshal([]byte(bad), &b); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
