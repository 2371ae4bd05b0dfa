package balance

import (
	"testing"
	"time"

	"github.com/tariff-dev/tariff/schemas"
)

// Exactly one alert per downward crossing; none repeated while usage goes
// on below a level; a top-up that lifts the balance above zero recovers
// and re-arms the levels it rises above, and the next crossing is a new
// alert with a new key.
func TestAlertCrossings(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "p", Version: 1, Allowance: usd("100"), Thresholds: []Threshold{
		{Kind: ThresholdAmount, Amount: usd("5")},
		{Kind: ThresholdPercent, Percent: 100},
		{Kind: ThresholdPercent, Percent: 80},
	}})
	wantAlerts(t, "$50", h.spend(day(2), "50"), "")
	wantAlerts(t, "$29.99", h.spend(day(2), "29.99"), "")
	wantAlerts(t, "80% exactly", h.spend(day(2), "0.01"), "threshold(80% allowance)")
	wantAlerts(t, "below 80%", h.spend(day(2), "5"), "")
	wantAlerts(t, "to $5", h.spend(day(3), "10"), "threshold($5)")
	wantAlerts(t, "to zero", h.spend(day(3), "5"), "threshold(100% allowance),zero")
	for i := range 3 {
		if al := h.spend(day(4), "1"); len(al) != 0 {
			t.Fatalf("usage %d at zero: %s", i, kinds(al))
		}
	}
	al := append([]Alert(nil), h.grant(day(5), "topup", "50")...)
	wantAlerts(t, "top-up", al, "recovery")
	if al[0].Balance != usd("50") {
		t.Errorf("recovery balance %s", al[0].Balance)
	}
	// The allowance is still used up (80%, 100% stay fired); $5 re-armed.
	wantAlerts(t, "to $4", h.spend(day(6), "46"), "threshold($5)")
	al = append(al, h.fx.Alerts...)
	wantAlerts(t, "to zero again", h.spend(day(6), "4"), "zero")
	al = append(al, h.fx.Alerts...)
	if al[1].Seq != 2 || al[2].Seq != 2 {
		t.Errorf("second crossings numbered %d, %d", al[1].Seq, al[2].Seq)
	}
	// Keys are distinct across crossings.
	seen := map[string]bool{}
	for _, a := range al {
		if seen[a.Key] {
			t.Errorf("key %s repeated", a.Key)
		}
		seen[a.Key] = true
	}
	// A new period refills the allowance: recovery (zero was announced),
	// every level re-armed silently.
	wantAlerts(t, "new period", h.advance(nov1.AddDate(0, 1, 0)), "recovery")
	wantAlerts(t, "December 80%", h.spend(nov1.AddDate(0, 1, 1), "80"), "threshold(80% allowance)")
}

// Percent thresholds apply to each allowance: money and every token group.
func TestPercentThresholdPerBucket(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "p", Version: 1, Allowance: usd("10"), TokenGroups: []TokenGroup{{Name: "g", Tokens: 10}},
		Thresholds: []Threshold{{Kind: ThresholdPercent, Percent: 50}}})
	tokens := append([]Alert(nil), h.use(charged("e1", day(2), "m", schemas.UnitInput, 5, "1"))...)
	wantAlerts(t, "tokens", tokens, "threshold(50% g)")
	wantAlerts(t, "money", h.spend(day(2), "5"), "threshold(50% allowance)")
	if len(tokens) == 1 && len(h.fx.Alerts) == 1 && tokens[0].Key == h.fx.Alerts[0].Key {
		t.Error("two buckets' crossings share a key")
	}
}

// Setting a threshold below the current balance is not a crossing; the
// next usage that crosses it is.
func TestSetThresholdsSilentWhenAlreadyBelow(t *testing.T) {
	h := newHarness(t)
	h.grant(day(1), "g", "10")
	h.spend(day(2), "8")
	wantAlerts(t, "set", h.cmd(&Command{Kind: CommandSetThresholds, At: day(2), Thresholds: []Threshold{
		{Kind: ThresholdAmount, Amount: usd("5")}, {Kind: ThresholdAmount, Amount: usd("1")}}}), "")
	wantAlerts(t, "cross $1", h.spend(day(3), "1.5"), "threshold($1)")
	// Back to the plan's (none).
	h.cmd(&Command{Kind: CommandSetThresholds, At: day(3)})
	wantAlerts(t, "to zero", h.spend(day(3), "0.5"), "zero")
}

// Alert keys depend on the crossing, not on the input that caused it: a
// replay from the stored state reaches the same crossings with the same
// keys, even when one arrives through another input (an expiry found by
// a usage event instead of a tick).
func TestAlertKeysDeterministicAcrossReplay(t *testing.T) {
	h := newHarness(t)
	exp := day(10)
	h.grant(day(1), "promo", "5", func(g *Grant) { g.ExpiresAt = exp })
	h.cmd(&Command{Kind: CommandSetThresholds, At: day(1), Thresholds: []Threshold{{Kind: ThresholdAmount, Amount: usd("1")}}})
	state, _ := h.a.MarshalBinary()

	// First run: a tick expires the credit, then usage.
	first := append([]Alert(nil), h.advance(exp)...)
	first = append(first, h.spend(exp.Add(time.Hour), "1")...)

	// Replay from the stored state, without the tick.
	var b Account
	if err := b.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	var fx Effects
	if err := b.ApplyUsage(spend("ev-x", exp.Add(time.Hour), "1"), &fx); err != nil {
		t.Fatal(err)
	}
	if kinds(first) != kinds(fx.Alerts) {
		t.Fatalf("first %s, replay %s", kinds(first), kinds(fx.Alerts))
	}
	for i := range first {
		if first[i].Key != fx.Alerts[i].Key {
			t.Errorf("alert %d: key %s on first run, %s on replay", i, first[i].Key, fx.Alerts[i].Key)
		}
	}
	// The same inputs replayed give identical alerts, field for field.
	var c Account
	_ = c.UnmarshalBinary(state)
	var fx1, fx2 Effects
	_ = b.UnmarshalBinary(state)
	b.AdvanceTo(exp, &fx1)
	c.AdvanceTo(exp, &fx2)
	if len(fx1.Alerts) != len(fx2.Alerts) || fx1.Alerts[0] != fx2.Alerts[0] {
		t.Errorf("replay differs: %+v vs %+v", fx1.Alerts, fx2.Alerts)
	}
}

// A seller's pause and resume overrides: forced pause alerts and blocks;
// resume lets a blocking plan bill overage instead of pausing.
func TestPauseOverride(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "prepaid", Version: 1, Overage: OverageBlock})
	h.grant(day(1), "g", "1")
	wantAlerts(t, "pause", h.cmd(&Command{Kind: CommandSetPause, At: day(2), Pause: PauseForced}), "paused")
	if e := h.a.Entitlement(day(2)); e.Allowed || e.Reason != ReasonPaused {
		t.Errorf("forced pause: %+v", e)
	}
	wantAlerts(t, "resume", h.cmd(&Command{Kind: CommandSetPause, At: day(3), Pause: PauseLifted}), "resumed")
	wantAlerts(t, "usage past balance", h.spend(day(4), "3"), "zero")
	if got := draws(&h.fx); got != "grant:g=1 overage=2" {
		t.Errorf("draws %s", got)
	}
	if e := h.a.Entitlement(day(4)); !e.Allowed || e.Reason != ReasonOverage {
		t.Errorf("lifted: %+v", e)
	}
	// Back to auto: exhausted on a blocking plan means paused.
	wantAlerts(t, "auto", h.cmd(&Command{Kind: CommandSetPause, At: day(5), Pause: PauseAuto}), "")
	wantAlerts(t, "usage", h.spend(day(5), "1"), "paused")
}

// A top-up lifts a pause at once, in the same input: the entitlement right
// after the command is allowed.
func TestTopUpLiftsPauseAtOnce(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "prepaid", Version: 1, Overage: OverageBlock})
	h.grant(day(1), "g", "2")
	wantAlerts(t, "exhaust exactly", h.spend(day(2), "2"), "zero,paused")
	if got := draws(&h.fx); got != "grant:g=2" {
		t.Errorf("draws %s", got)
	}
	if e := h.a.Entitlement(day(2)); e.Allowed || e.Reason != ReasonPaused {
		t.Errorf("exhausted: %+v", e)
	}
	wantAlerts(t, "top-up", h.grant(day(2).Add(time.Second), "g2", "10"), "recovery,resumed")
	if e := h.a.Entitlement(day(2).Add(time.Second)); !e.Allowed || e.Paused || e.Remaining != usd("10") {
		t.Errorf("after top-up: %+v", e)
	}
	v := h.a.View()
	if e := v.Entitlement(day(2).Add(time.Second)); !e.Allowed {
		t.Errorf("view after top-up: %+v", e)
	}
}

// A void takes what is left of a grant and can cross levels.
func TestVoidGrant(t *testing.T) {
	h := newHarness(t)
	h.grant(day(1), "g", "10")
	h.spend(day(2), "4")
	wantAlerts(t, "void", h.cmd(&Command{Kind: CommandVoidGrant, At: day(3), GrantID: "g"}), "zero")
	p := h.a.CurrentPeriod()
	if p.Grants[0].Voided != usd("6") || p.Grants[0].Drawn != usd("4") || !p.Grants[0].Remaining.IsZero() {
		t.Errorf("grant %+v", p.Grants[0])
	}
	if _, err := h.a.Apply(&Command{ID: "v2", CustomerID: cust, Kind: CommandVoidGrant, At: day(3), GrantID: "nope"}, nil); err == nil {
		t.Error("void of an unknown grant accepted")
	}
	changed, err := h.a.Apply(&Command{ID: "v3", CustomerID: cust, Kind: CommandVoidGrant, At: day(3), GrantID: "g"}, nil)
	if err != nil || changed {
		t.Errorf("second void: changed %v err %v", changed, err)
	}
	// Finished grants leave the account when the period closes.
	h.advance(nov1.AddDate(0, 1, 0))
	if len(h.a.grants) != 0 {
		t.Errorf("%d grants kept", len(h.a.grants))
	}
}
