package balance

import (
	"testing"

	"github.com/tariff-dev/tariff/schemas"
)

// Prepaid credit packs with top-ups: no fee, no allowance, overage
// blocked. A $10 pack, then usage; the usage that runs past the pack is
// recorded as blocked overage and pauses the account; a $20 top-up lifts
// the pause at once.
func TestPrepaidCreditsWithTopUps(t *testing.T) {
	h := newHarness(t)
	prepaid := Plan{ID: "prepaid", Version: 1, Overage: OverageBlock, Thresholds: []Threshold{{Kind: ThresholdAmount, Amount: usd("2")}}}
	h.plan(day(1), prepaid)
	wantAlerts(t, "grant", h.grant(day(1), "pack-1", "10"), "")
	if e := h.a.Entitlement(day(1)); !e.Allowed || e.Reason != ReasonBalance || e.Remaining != usd("10") || e.OverageAllowed {
		t.Fatalf("entitlement after the pack: %+v", e)
	}
	wantAlerts(t, "$3", h.spend(day(2), "3"), "")
	wantAlerts(t, "$4", h.spend(day(3), "4.25"), "")
	eqAmount(t, "balance", h.balance(), "2.75")
	// $2.75 left; $5 used: $2.75 from the pack, $2.25 blocked.
	al := h.spend(day(4), "5")
	wantAlerts(t, "$5", al, "threshold($2),zero,paused")
	if got := draws(&h.fx); got != "grant:pack-1=2.75 blocked=2.25" {
		t.Errorf("draws %s", got)
	}
	if !h.a.Paused() {
		t.Fatal("not paused after blocked overage")
	}
	if e := h.a.Entitlement(day(4)); e.Allowed || e.Reason != ReasonPaused || !e.Paused || !e.Remaining.IsZero() {
		t.Fatalf("entitlement when paused: %+v", e)
	}
	// More usage arrives anyway (in flight before the gateway saw the
	// pause): recorded, no second alert.
	wantAlerts(t, "in flight", h.spend(day(4), "1"), "")
	al = h.grant(day(5), "topup-1", "20")
	wantAlerts(t, "top-up", al, "recovery,resumed")
	if al[0].Balance != usd("20") || al[0].Cause != (Cause{Kind: CauseCommand, ID: "cmd-7"}) {
		t.Errorf("recovery alert %+v", al[0])
	}
	if e := h.a.Entitlement(day(5)); !e.Allowed || e.Paused || e.Remaining != usd("20") {
		t.Fatalf("entitlement after top-up: %+v", e)
	}
	h.spend(day(6), "1.5")
	eqAmount(t, "balance", h.balance(), "18.5")
	p := h.a.CurrentPeriod()
	eqAmount(t, "blocked", p.BlockedOverage, "3.25")
	eqAmount(t, "usage", p.UsageCharge, "14.75")
	if len(p.Grants) != 2 || p.Grants[0].Drawn != usd("10") || p.Grants[1].Drawn != usd("1.5") || p.Grants[1].Remaining != usd("18.5") {
		t.Errorf("grants %+v", p.Grants)
	}
}

// Fixed fee with an included money allowance: $20 a month includes $10 of
// usage; the rest is overage at the rate card's charge.
func TestFixedFeeWithMoneyAllowance(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "team", Version: 1, Fee: usd("20"), Allowance: usd("10")})
	h.spend(day(2), "6")
	h.spend(day(3), "5")
	if got := draws(&h.fx); got != "allowance=4 overage=1" {
		t.Errorf("draws %s", got)
	}
	if e := h.a.Entitlement(day(3)); !e.Allowed || e.Reason != ReasonOverage || !e.Remaining.IsZero() {
		t.Errorf("entitlement: %+v", e)
	}
	s := BuildStatement(new(h.a.CurrentPeriod()), DefaultRounding)
	if s.Fee.String() != "20" || s.Included.String() != "10" || s.Overage.String() != "1" || s.AmountDue.String() != "21" {
		t.Errorf("statement fee %s included %s overage %s due %s", s.Fee, s.Included, s.Overage, s.AmountDue)
	}
	// The next period gives the allowance again and bills the fee again.
	h.advance(nov1.AddDate(0, 1, 0))
	if len(h.fx.Closed) != 1 || !h.fx.Closed[0].End.Equal(nov1.AddDate(0, 1, 0)) {
		t.Fatalf("closed %+v", h.fx.Closed)
	}
	eqAmount(t, "balance in December", h.balance(), "10")
	if p := h.a.CurrentPeriod(); len(p.Fees) != 1 || p.Fees[0].Amount != usd("20") {
		t.Errorf("December fees %+v", p.Fees)
	}
}

// Included tokens per model group: 1,000 GPT tokens a month. Covered
// tokens' charge is not billed; a line covered in part is billed for its
// uncovered tokens at its exact per-token charge; other models are
// overage.
func TestIncludedTokensPerModelGroup(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "tokens", Version: 1, TokenGroups: []TokenGroup{
		{Name: "gpt", Match: Match{PriceKeys: []string{"gpt-4o", "gpt-4o-mini"}}, Tokens: 1000},
	}, Thresholds: []Threshold{{Kind: ThresholdPercent, Percent: 80}}})
	const in, out = "0.0000025", "0.00001"
	// 600 in + 300 out = 900 tokens, $0.0015 + $0.003: all covered.
	wantAlerts(t, "900 tokens", h.use(charged("e1", day(2), "gpt-4o", schemas.UnitInput, 600, in, schemas.UnitOutput, 300, out)), "threshold(80% gpt)")
	if got := draws(&h.fx); got != "tokens:gpt[900]=0.0045" {
		t.Errorf("draws %s", got)
	}
	// 100 tokens left: 100 of 200 input covered ($0.00025), the other 100
	// input ($0.00025) and 100 output ($0.001) are overage.
	wantAlerts(t, "300 tokens", h.use(charged("e2", day(3), "gpt-4o", schemas.UnitInput, 200, in, schemas.UnitOutput, 100, out)), "zero")
	if got := draws(&h.fx); got != "tokens:gpt[100]=0.00025 overage=0.00125" {
		t.Errorf("draws %s", got)
	}
	// Another model never draws the group.
	h.use(charged("e3", day(3), "claude-sonnet", schemas.UnitInput, 10, "0.000003"))
	if got := draws(&h.fx); got != "overage=0.00003" {
		t.Errorf("draws %s", got)
	}
	p := h.a.CurrentPeriod()
	if len(p.Tokens) != 1 || p.Tokens[0].Used != 1000 || p.Tokens[0].Charge != usd("0.00475") {
		t.Errorf("tokens %+v", p.Tokens)
	}
	eqAmount(t, "overage", p.Overage, "0.00128")
	eqAmount(t, "usage", p.UsageCharge, "0.00603")
}

// A token group may count some units only (here: output tokens).
func TestTokenGroupUnits(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "out", Version: 1, TokenGroups: []TokenGroup{{Name: "out", Units: Units(schemas.UnitOutput), Tokens: 50}}})
	h.use(charged("e1", day(1), "m", schemas.UnitInput, 100, "0.01", schemas.UnitOutput, 80, "0.02"))
	if got := draws(&h.fx); got != "tokens:out[50]=1 overage=1.6" {
		t.Errorf("draws %s", got)
	}
}

// Pure usage-based: no plan at all (or the zero Plan): everything is
// overage, billed in arrears, and no alert fires: there is no balance to
// run out.
func TestPureUsageBased(t *testing.T) {
	h := newHarness(t)
	var al []Alert
	al = append(al, h.spend(day(3), "1.234")...)
	al = append(al, h.spend(day(20), "0.000000000000000000000000001")...)
	wantAlerts(t, "usage", al, "")
	if e := h.a.Entitlement(day(20)); !e.Allowed || e.Reason != ReasonOverage {
		t.Errorf("entitlement %+v", e)
	}
	if s, e := h.a.Period(); !s.Equal(day(3)) || !e.Equal(nov1.AddDate(0, 1, 0)) {
		t.Errorf("first period [%s, %s): want from the first event to the calendar month's end", s, e)
	}
	h.advance(nov1.AddDate(0, 1, 0))
	s := BuildStatement(&h.fx.Closed[0], DefaultRounding)
	if s.Fee.String() != "0" || s.Overage.String() != "1.23" || s.AmountDue.String() != "1.23" {
		t.Errorf("statement %+v", s)
	}
	eqAmount(t, "exact overage", h.fx.Closed[0].Overage, "1.234000000000000000000000001")
}

// Hybrid: a fee, included tokens for one group, a money allowance, credit
// packs and billed overage, in one plan. One event walks the whole order.
func TestHybridDrawOrder(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "hybrid", Version: 3, Fee: usd("49"), Allowance: usd("1"),
		TokenGroups: []TokenGroup{{Name: "mini", Match: Match{PriceKeys: []string{"gpt-4o-mini"}}, Tokens: 100}}})
	h.grant(day(1), "later", "1", func(g *Grant) { g.ExpiresAt = day(30) })
	h.grant(day(1), "sooner", "1", func(g *Grant) { g.ExpiresAt = day(10) })
	h.grant(day(1), "never", "1")
	h.grant(day(1), "low-priority", "1", func(g *Grant) { g.Priority = 5; g.ExpiresAt = day(3) })
	h.grant(day(1), "other-model", "1", func(g *Grant) { g.Restrict = Match{PriceKeys: []string{"o3"}} })
	h.grant(day(1), "team-a", "1", func(g *Grant) {
		g.Restrict = Match{Dimensions: []schemas.Dimension{{Key: "team", Value: "a"}, {Key: "team", Value: "b"}}}
	})
	// 150 tokens at $0.04: 100 covered ($4), then $2 of the remaining $2
	// ... plus a $5 request line: $7 to cover after the tokens.
	ev := charged("big", day(2), "gpt-4o-mini", schemas.UnitInput, 150, "0.04", schemas.UnitRequests, 1, "5")
	ev.Event.Dimensions = []schemas.Dimension{{Key: "team", Value: "b"}}
	h.use(ev)
	want := "tokens:mini[100]=4 allowance=1 grant:sooner=1 grant:later=1 grant:never=1 grant:team-a=1 grant:low-priority=1 overage=1"
	if got := draws(&h.fx); got != want {
		t.Errorf("draws\n got %s\nwant %s", got, want)
	}
	var sum = usd("0")
	for _, d := range h.fx.Draws {
		sum, _ = sum.Add(d.Amount)
	}
	if sum != ev.Charge {
		t.Errorf("draws add up to %s, charge %s", sum, ev.Charge)
	}
	eqAmount(t, "left: the other model's grant", h.balance(), "1")
	s := BuildStatement(new(h.a.CurrentPeriod()), DefaultRounding)
	if s.Fee.String() != "49" || s.Included.String() != "5" || s.CreditsUsed.String() != "5" || s.Overage.String() != "1" || s.AmountDue.String() != "50" {
		t.Errorf("statement fee %s included %s credits %s overage %s due %s", s.Fee, s.Included, s.CreditsUsed, s.Overage, s.AmountDue)
	}
}

// Grants of equal priority are drawn by earliest expiry, and a partial
// draw leaves the rest for the next event: no grant goes below zero.
func TestDrawSplitsAcrossGrants(t *testing.T) {
	h := newHarness(t)
	h.grant(day(1), "a", "0.3", func(g *Grant) { g.ExpiresAt = day(5) })
	h.grant(day(1), "b", "0.5", func(g *Grant) { g.ExpiresAt = day(4) })
	h.spend(day(2), "0.6")
	if got := draws(&h.fx); got != "grant:b=0.5 grant:a=0.1" {
		t.Errorf("draws %s", got)
	}
	h.spend(day(2), "0.6")
	if got := draws(&h.fx); got != "grant:a=0.2 overage=0.4" {
		t.Errorf("draws %s", got)
	}
	for _, g := range h.a.grants {
		if g.remaining.Sign() != 0 {
			t.Errorf("grant %s left %s", g.ID, g.remaining)
		}
	}
}

// A plan that ignores credits leaves grants alone.
func TestCreditsIgnored(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "no-credits", Version: 1, Credits: CreditsIgnored})
	h.grant(day(1), "g", "5")
	h.spend(day(2), "1")
	if got := draws(&h.fx); got != "overage=1" {
		t.Errorf("draws %s", got)
	}
	if e := h.a.Entitlement(day(2)); !e.Remaining.IsZero() {
		t.Errorf("entitlement counts ignored credits: %+v", e)
	}
}

// Exactness: 100,000 tiny draws of 10^-27 USD from a grant leave it at
// exactly what arithmetic says, with no rounding anywhere.
func TestExactTinyDraws(t *testing.T) {
	h := newHarness(t)
	h.grant(day(1), "g", "0.00000000000000000001") // 10^-20
	ev := spend("tiny", day(2), "0.000000000000000000000000001")
	var fx Effects
	for range 100_000 {
		fx.Reset()
		if err := h.a.ApplyUsage(ev, &fx); err != nil {
			t.Fatal(err)
		}
	}
	eqAmount(t, "left", h.balance(), "0.0000000000000000000099")
	p := h.a.CurrentPeriod()
	eqAmount(t, "drawn", p.Grants[0].Drawn, "0.0000000000000000000001")
	eqAmount(t, "usage", p.UsageCharge, "0.0000000000000000000001")
}
