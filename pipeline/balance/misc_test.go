package balance

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

func TestMatch(t *testing.T) {
	ev := charged("e", day(1), "claude-sonnet-4", schemas.UnitInput, 1, "1")
	ev.Provider = ""
	ev.Event.Provider = "anthropic"
	ev.Event.Dimensions = []schemas.Dimension{{Key: "region", Value: "eu"}, {Key: "team", Value: "search"}}
	for _, c := range []struct {
		m    Match
		want bool
	}{
		{Match{}, true},
		{Match{Providers: []string{"anthropic"}}, true}, // the event's provider when the entry has none
		{Match{Providers: []string{"openai"}}, false},
		{Match{PriceKeys: []string{"claude-sonnet-4"}, Providers: []string{"anthropic"}}, true},
		{Match{PriceKeys: []string{"gpt-4o"}, Providers: []string{"anthropic"}}, false},
		{Match{Dimensions: []schemas.Dimension{{Key: "team", Value: "ads"}, {Key: "team", Value: "search"}}}, true},
		{Match{Dimensions: []schemas.Dimension{{Key: "team", Value: "search"}, {Key: "region", Value: "us"}}}, false},
		{Match{Dimensions: []schemas.Dimension{{Key: "project", Value: "x"}}}, false},
	} {
		if got := c.m.matches(ev); got != c.want {
			t.Errorf("%+v: %v, want %v", c.m, got, c.want)
		}
	}
}

// The compact amount encoding is exact for every sign and size.
func TestAmountEncoding(t *testing.T) {
	for _, s := range []string{"0", "1", "-1", "0.0000000000000000000000000001", "-0.0000000000000000000000000001",
		"1.5", "-1.5", "17014118346.0469231731687303715884105727", "-17014118346.0469231731687303715884105727",
		"0.0000000000000000000000000128", "-0.0000000000000000000000000128", "0.0000000000000000000000000127", "-0.0000000000000000000000000129"} {
		a := usd(s)
		e := encoder{}
		e.amount(a)
		d := decoder{b: e.b}
		if got := d.amount(); d.err != nil || got != a || len(d.b) != 0 {
			t.Errorf("%s: got %s (%v), %d bytes", s, got, d.err, len(e.b))
		}
	}
}

// Statement rounding happens once per presented amount, from the exact
// value; AmountDue is the exact total rounded once, and the adjustment
// makes the presented lines add up.
func TestStatementRoundsOnce(t *testing.T) {
	p := PeriodUsage{CustomerID: cust, Start: nov1, End: day(31),
		Fees:        []FeeLine{{PlanID: "a", Amount: usd("10.004")}, {PlanID: "b", Amount: usd("6.6666666666666666666666666666")}},
		Overage:     usd("0.0049"),
		UsageCharge: usd("0.0049"),
	}
	s := BuildStatement(&p, rating.RoundHalfEven)
	// Fee exact 16.6706666…: 16.67; overage 0.0049: 0.00; due 16.6755666…: 16.68.
	if s.Fees[0].Amount.String() != "10" || s.Fees[1].Amount.String() != "6.67" || s.Fee.String() != "16.67" ||
		s.Overage.String() != "0" || s.AmountDue.String() != "16.68" || s.Adjustment.String() != "0.01" {
		t.Errorf("statement %+v", s)
	}
	if s := BuildStatement(&p, rating.RoundUp); s.Overage.String() != "0.01" || s.AmountDue.String() != "16.68" {
		t.Errorf("round up: overage %s due %s", s.Overage, s.AmountDue)
	}
	b, err := json.Marshal(s)
	if err != nil || !strings.Contains(string(b), `"amount_due":"16.68"`) {
		t.Errorf("json %s %v", b, err)
	}
}

func TestAlertJSON(t *testing.T) {
	h := newHarness(t)
	h.grant(day(1), "g", "1")
	al := h.spend(day(2), "1")
	b, err := json.Marshal(al[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"zero"`, `"balance":"0"`, `"cause":{"kind":"usage","id":"ev-2"}`, `"customer_id":"acme"`, `"key":"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	var back Alert
	if err := json.Unmarshal(b, &back); err != nil || back != al[0] {
		t.Errorf("round trip %v: %+v", err, back)
	}
}

// The view answers like the account, and a period past its end counts
// the next period's allowance and lifts an automatic pause.
func TestViewMatchesAccount(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "sub", Version: 1, Allowance: usd("10"), Overage: OverageBlock, TokenGroups: []TokenGroup{{Name: "g", Tokens: 7}}})
	h.grant(day(1), "g", "1", func(g *Grant) { g.ExpiresAt = day(20) })
	h.use(charged("e", day(2), "m", schemas.UnitInput, 7, "1", schemas.UnitRequests, 1, "12"))
	if !h.a.Paused() {
		t.Fatal("not paused")
	}
	v := h.a.View()
	for _, now := range []int{2, 19, 20, 30, 31, 45} {
		at := day(now)
		if a, b := h.a.Entitlement(at), v.Entitlement(at); a != b {
			t.Errorf("day %d: account %+v, view %+v", now, a, b)
		}
	}
	if e := v.Entitlement(day(31)); !e.Allowed || e.Paused || e.Remaining != usd("10") || e.TokensRemaining != 7 {
		t.Errorf("next period: %+v", e)
	}
	h.advance(day(31))
	if e := h.a.Entitlement(day(31)); e != v.Entitlement(day(31)) {
		t.Errorf("after the roll %+v, view predicted %+v", e, v.Entitlement(day(31)))
	}
}
