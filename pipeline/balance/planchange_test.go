package balance

import (
	"testing"
	"time"
)

// The documented rule, same cycle: the new plan's fee and allowance are
// prorated by the time left in the period; the old fee is not refunded;
// the old plan's unused allowance lapses; what was drawn stays.
func TestPlanChangeMidPeriodProrates(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "starter", Version: 1, Fee: usd("30"), Allowance: usd("30"),
		TokenGroups: []TokenGroup{{Name: "all", Tokens: 600}}})
	h.spend(day(5), "12")
	// November has 30 days; on the 11th, 20 are left: 2/3.
	h.plan(day(11), Plan{ID: "pro", Version: 1, Fee: usd("60"), Allowance: usd("90"),
		TokenGroups: []TokenGroup{{Name: "all", Tokens: 3000}}})
	eqAmount(t, "pro allowance", h.balance(), "60")
	if e := h.a.Entitlement(day(11)); e.TokensRemaining != 2000 {
		t.Errorf("tokens %d, want 2000", e.TokensRemaining)
	}
	h.spend(day(12), "70")
	if got := draws(&h.fx); got != "allowance=60 overage=10" {
		t.Errorf("draws %s", got)
	}
	p := h.a.CurrentPeriod()
	if len(p.Fees) != 2 || p.Fees[0].Amount != usd("30") || p.Fees[1].Amount != usd("40") || !p.Fees[1].From.Equal(day(11)) {
		t.Errorf("fees %+v", p.Fees)
	}
	eqAmount(t, "period allowance", p.Allowance, "90")
	s := BuildStatement(&p, DefaultRounding)
	if s.Fee.String() != "70" || s.Included.String() != "72" || s.Overage.String() != "10" || s.AmountDue.String() != "80" {
		t.Errorf("statement fee %s included %s overage %s due %s", s.Fee, s.Included, s.Overage, s.AmountDue)
	}
	// The next period bills the new plan in full, once.
	h.advance(nov1.AddDate(0, 1, 0))
	if p := h.a.CurrentPeriod(); len(p.Fees) != 1 || p.Fees[0].PlanID != "pro" || p.Fees[0].Amount != usd("60") {
		t.Errorf("December fees %+v", p.Fees)
	}
	eqAmount(t, "December allowance", h.balance(), "90")
}

// Proration truncates at the Amount's resolution (10^-28 USD), never at
// cents: $10 × 20/30.
func TestProrationTruncatesAtAmountScale(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "a", Version: 1})
	h.plan(day(11), Plan{ID: "b", Version: 1, Fee: usd("10"), Allowance: usd("10")})
	eqAmount(t, "allowance", h.balance(), "6.6666666666666666666666666666")
	p := h.a.CurrentPeriod()
	eqAmount(t, "fee", p.Fees[1].Amount, "6.6666666666666666666666666666")
	if s := BuildStatement(&p, DefaultRounding); s.Fee.String() != "6.67" {
		t.Errorf("rounded fee %s", s.Fee)
	}
}

// A new anchor restarts the cycle: the period closes at the change, and
// the new plan's first (stub) period to its first boundary is prorated
// against the nominal period it falls in.
func TestPlanChangeWithNewAnchor(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "a", Version: 1, Fee: usd("30")})
	anchor := time.Date(2026, 10, 15, 0, 0, 0, 0, time.UTC) // bills on the 15th
	h.cmd(&Command{Kind: CommandChangePlan, At: day(11), Plan: &Plan{ID: "c", Version: 1, Fee: usd("31")}, Anchor: anchor})
	if len(h.fx.Closed) != 1 {
		t.Fatalf("closed %d periods", len(h.fx.Closed))
	}
	if c := h.fx.Closed[0]; !c.Start.Equal(nov1) || !c.End.Equal(day(11)) || c.Fees[0].Amount != usd("30") {
		t.Errorf("closed %+v", c)
	}
	// Stub [Nov 11, Nov 15) of the nominal [Oct 15, Nov 15) (31 days).
	s, e := h.a.Period()
	if !s.Equal(day(11)) || !e.Equal(day(15)) {
		t.Errorf("stub period [%s, %s)", s, e)
	}
	eqAmount(t, "stub fee", h.a.CurrentPeriod().Fees[0].Amount, "4")
	h.advance(day(16))
	if s, e := h.a.Period(); !s.Equal(day(15)) || !e.Equal(time.Date(2026, 12, 15, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("period after stub [%s, %s)", s, e)
	}
	eqAmount(t, "full fee", h.a.CurrentPeriod().Fees[0].Amount, "31")
}

// A change scheduled at the period boundary costs nothing in the old
// period and the full fee in the new one; the old plan is not billed for
// the new period.
func TestScheduledPlanChangeAtBoundary(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "a", Version: 1, Fee: usd("30")})
	dec1 := nov1.AddDate(0, 1, 0)
	h.cmd(&Command{Kind: CommandChangePlan, At: day(20), Plan: &Plan{ID: "b", Version: 1, Fee: usd("50")}, EffectiveAt: dec1})
	if h.a.Plan().ID != "a" || !h.a.NextChange().Equal(dec1) {
		t.Fatalf("plan %s next %s", h.a.Plan().ID, h.a.NextChange())
	}
	h.advance(dec1)
	nov := h.fx.Closed[0]
	if len(nov.Fees) != 1 || nov.Fees[0].PlanID != "a" {
		t.Errorf("November fees %+v", nov.Fees)
	}
	if p := h.a.CurrentPeriod(); h.a.Plan().ID != "b" || len(p.Fees) != 1 || p.Fees[0].Amount != usd("50") {
		t.Errorf("December plan %s fees %+v", h.a.Plan().ID, p.Fees)
	}
}

// The first plan of an account starts its cycle when assigned: full fee,
// full allowance, periods anchored there.
func TestFirstPlanAnchorsAtAssignment(t *testing.T) {
	h := newHarness(t)
	h.spend(day(3), "1") // before any plan: pure usage, calendar month
	h.plan(day(17), Plan{ID: "a", Version: 1, Fee: usd("30"), Allowance: usd("5")})
	if len(h.fx.Closed) != 1 || !h.fx.Closed[0].End.Equal(day(17)) {
		t.Fatalf("closed %+v", h.fx.Closed)
	}
	if s, e := h.a.Period(); !s.Equal(day(17)) || !e.Equal(time.Date(2026, 12, 17, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("period [%s, %s)", s, e)
	}
	eqAmount(t, "allowance", h.balance(), "5")
	eqAmount(t, "fee", h.a.CurrentPeriod().Fees[0].Amount, "30")
}

// The plan version in force assigned again is a no-op (no second fee).
func TestSamePlanAgainIsNoOp(t *testing.T) {
	h := newHarness(t)
	p := Plan{ID: "a", Version: 2, Fee: usd("30")}
	h.plan(nov1, p)
	changed, err := h.a.Apply(&Command{ID: "again", CustomerID: cust, Kind: CommandChangePlan, At: day(3), Plan: &p}, nil)
	if err != nil || changed {
		t.Fatalf("changed %v err %v", changed, err)
	}
	if n := len(h.a.CurrentPeriod().Fees); n != 1 {
		t.Errorf("%d fee lines", n)
	}
}

// A plan change that adds balance lifts an automatic pause and recovers.
func TestPlanChangeLiftsPause(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "prepaid", Version: 1, Overage: OverageBlock})
	wantAlerts(t, "blocked", h.spend(day(2), "1"), "paused")
	wantAlerts(t, "upgrade", h.plan(day(3), Plan{ID: "sub", Version: 1, Allowance: usd("10"), Overage: OverageBlock}), "resumed")
	if h.a.Paused() {
		t.Error("still paused")
	}
}
