package balance

import (
	"testing"
	"time"
)

// Expired credit stops counting at its expiry time exactly, with no usage:
// AdvanceTo expires it and alerts at the expiry time, and the entitlement
// view already excludes it at that instant.
func TestExpiryAtExactTimeWithoutUsage(t *testing.T) {
	h := newHarness(t)
	exp := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	h.grant(day(1), "promo", "5", func(g *Grant) { g.ExpiresAt = exp })
	h.grant(day(1), "paid", "3")
	h.spend(day(2), "1") // drawn from promo (earliest expiry)
	v := h.a.View()
	if e := v.Entitlement(exp.Add(-time.Nanosecond)); e.Remaining != usd("7") {
		t.Errorf("just before expiry: %s", e.Remaining)
	}
	if e := v.Entitlement(exp); e.Remaining != usd("3") {
		t.Errorf("at expiry: %s", e.Remaining)
	}
	if e := h.a.Entitlement(exp); e.Remaining != usd("3") {
		t.Errorf("account at expiry: %s", e.Remaining)
	}
	if next := h.a.NextChange(); !next.Equal(exp) {
		t.Errorf("NextChange %s, want the expiry", next)
	}
	wantAlerts(t, "before", h.advance(exp.Add(-time.Nanosecond)), "")
	eqAmount(t, "balance before", h.balance(), "7")
	// Thresholds: $5 low-balance.
	h.cmd(&Command{Kind: CommandSetThresholds, At: exp.Add(-time.Nanosecond), Thresholds: []Threshold{{Kind: ThresholdAmount, Amount: usd("5")}}})
	al := h.advance(exp.Add(time.Hour))
	wantAlerts(t, "expiry", al, "threshold($5)")
	if len(al) == 1 && (!al[0].At.Equal(exp) || al[0].Cause != (Cause{Kind: CauseExpiry, ID: "promo"}) || al[0].Balance != usd("3")) {
		t.Errorf("expiry alert %+v", al[0])
	}
	eqAmount(t, "balance after", h.balance(), "3")
	p := h.a.CurrentPeriod()
	if p.Grants[0].GrantID != "promo" || p.Grants[0].Expired != usd("4") || p.Grants[0].Drawn != usd("1") {
		t.Errorf("promo %+v", p.Grants[0])
	}
	// Usage timed before the expiry but arriving after it cannot revive it.
	h.spend(exp.Add(-time.Minute), "1")
	if got := draws(&h.fx); got != "grant:paid=1" {
		t.Errorf("late draw %s", got)
	}
}

// A grant already expired at the account's clock is refused.
func TestGrantExpiredOnArrival(t *testing.T) {
	h := newHarness(t)
	h.spend(day(5), "1")
	g := &Grant{ID: "old", Amount: usd("1"), ExpiresAt: day(4)}
	_, err := h.a.Apply(&Command{ID: "c", CustomerID: cust, Kind: CommandGrant, At: day(5), Grant: g}, nil)
	if err == nil {
		t.Fatal("expired grant accepted")
	}
}

// Monthly periods anchored on the 31st land on each month's last day
// without drifting; interval periods tile from their anchor both ways.
func TestCyclePeriods(t *testing.T) {
	anchor := time.Date(2026, 1, 31, 9, 30, 0, 0, time.UTC)
	m := Cycle{Kind: CycleMonthly}
	for _, c := range []struct{ t, start, end string }{
		{"2026-01-31T09:30:00Z", "2026-01-31T09:30:00Z", "2026-02-28T09:30:00Z"},
		{"2026-02-28T09:29:59Z", "2026-01-31T09:30:00Z", "2026-02-28T09:30:00Z"},
		{"2026-03-15T00:00:00Z", "2026-02-28T09:30:00Z", "2026-03-31T09:30:00Z"},
		{"2028-02-29T10:00:00Z", "2028-02-29T09:30:00Z", "2028-03-31T09:30:00Z"},
		{"2025-12-31T09:30:00Z", "2025-12-31T09:30:00Z", "2026-01-31T09:30:00Z"},
		{"2025-12-01T00:00:00Z", "2025-11-30T09:30:00Z", "2025-12-31T09:30:00Z"},
	} {
		at, _ := time.Parse(time.RFC3339, c.t)
		s, e := m.periodAt(anchor, at)
		if s.Format(time.RFC3339) != c.start || e.Format(time.RFC3339) != c.end {
			t.Errorf("monthly at %s: [%s, %s), want [%s, %s)", c.t, s.Format(time.RFC3339), e.Format(time.RFC3339), c.start, c.end)
		}
	}
	w := Cycle{Kind: CycleInterval, Interval: 7 * 24 * time.Hour}
	for _, off := range []time.Duration{-8 * 24 * time.Hour, -time.Nanosecond, 0, 3 * 24 * time.Hour, 7 * 24 * time.Hour} {
		at := anchor.Add(off)
		s, e := w.periodAt(anchor, at)
		if s.After(at) || !e.After(at) || e.Sub(s) != w.Interval || s.Sub(anchor)%w.Interval != 0 {
			t.Errorf("interval at %+v: [%s, %s)", off, s, e)
		}
	}
}

// A weekly plan rolls every 7 days from its anchor; an idle account
// catches up every missed period in one AdvanceTo, each closed at its
// own boundary.
func TestIntervalRollCatchUp(t *testing.T) {
	h := newHarness(t)
	week := 7 * 24 * time.Hour
	h.plan(nov1, Plan{ID: "weekly", Version: 1, Cycle: Cycle{Kind: CycleInterval, Interval: week}, Fee: usd("5"), Allowance: usd("2")})
	h.spend(day(2), "3")
	h.advance(nov1.Add(3*week + time.Hour))
	if len(h.fx.Closed) != 3 {
		t.Fatalf("%d periods closed, want 3", len(h.fx.Closed))
	}
	for i, p := range h.fx.Closed {
		if !p.Start.Equal(nov1.Add(time.Duration(i)*week)) || !p.End.Equal(nov1.Add(time.Duration(i+1)*week)) {
			t.Errorf("period %d [%s, %s)", i, p.Start, p.End)
		}
		if len(p.Fees) != 1 || p.Fees[0].Amount != usd("5") {
			t.Errorf("period %d fees %+v", i, p.Fees)
		}
	}
	eqAmount(t, "first period overage", h.fx.Closed[0].Overage, "1")
	if last, ok := h.a.LastPeriod(); !ok || !last.Start.Equal(nov1.Add(2*week)) {
		t.Errorf("last period %+v", last)
	}
}

// Late usage (timed before the current period) counts in the current
// period and is reported as late, so the statement reconciles with
// ClickHouse's per-event-time totals.
func TestLateUsage(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "p", Version: 1})
	h.advance(nov1.AddDate(0, 1, 0))
	h.spend(day(30), "2")
	p := h.a.CurrentPeriod()
	eqAmount(t, "late", p.LateCharge, "2")
	eqAmount(t, "usage", p.UsageCharge, "2")
	if !p.Start.Equal(nov1.AddDate(0, 1, 0)) {
		t.Errorf("period start %s", p.Start)
	}
}
