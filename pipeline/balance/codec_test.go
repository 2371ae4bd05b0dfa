package balance

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// op is one random input of the property tests.
type op struct {
	ev  *sinks.RatedEvent
	cmd *Command
	adv time.Time
}

var testPlans = []Plan{
	{ID: "payg", Version: 1},
	{ID: "prepaid", Version: 1, Overage: OverageBlock, Thresholds: []Threshold{{Kind: ThresholdAmount, Amount: rating.MustAmount("3")}}},
	{ID: "team", Version: 1, Fee: rating.MustAmount("20"), Allowance: rating.MustAmount("10"),
		Thresholds: []Threshold{{Kind: ThresholdPercent, Percent: 80}, {Kind: ThresholdPercent, Percent: 100}}},
	{ID: "tokens", Version: 2, Fee: rating.MustAmount("9.99"), TokenGroups: []TokenGroup{
		{Name: "gpt", Match: Match{PriceKeys: []string{"gpt-4o"}}, Tokens: 5000},
		{Name: "out", Units: Units(schemas.UnitOutput), Tokens: 2000}},
		Thresholds: []Threshold{{Kind: ThresholdPercent, Percent: 50}}},
	{ID: "weekly", Version: 1, Cycle: Cycle{Kind: CycleInterval, Interval: 7 * 24 * time.Hour}, Fee: rating.MustAmount("3"),
		Allowance: rating.MustAmount("2.5"), Overage: OverageBlock, Credits: CreditsIgnored},
}

// randomOps returns a reproducible stream of inputs: usage on three models
// with sub-cent charges, grants with priorities, expiries and
// restrictions, voids, plan changes (now, scheduled, re-anchored),
// thresholds, pause overrides and ticks; mostly forward in time, with late
// events.
func randomOps(r *rand.Rand, n int) []op {
	t := time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC)
	models := []string{"gpt-4o", "claude-sonnet", "o3"}
	var ops []op
	grants := 0
	for i := range n {
		t = t.Add(time.Duration(r.IntN(12*3600)) * time.Second)
		id := fmt.Sprintf("op-%d", i)
		switch k := r.IntN(20); {
		case k < 11:
			at := t
			if r.IntN(10) == 0 {
				at = t.Add(-time.Duration(r.IntN(20*24)) * time.Hour)
			}
			price := fmt.Sprintf("0.%06d%d", r.IntN(1000), r.IntN(10))
			ev := charged(id, at, models[r.IntN(3)], schemas.UnitInput, r.IntN(3000), price, schemas.UnitOutput, r.IntN(1500), price+"7")
			if r.IntN(3) == 0 {
				ev.Event.Dimensions = []schemas.Dimension{{Key: "team", Value: []string{"a", "b"}[r.IntN(2)]}}
			}
			ops = append(ops, op{ev: ev})
		case k < 14:
			grants++
			g := &Grant{ID: fmt.Sprintf("g%d", grants), Amount: rating.MustAmount(fmt.Sprintf("%d.%d", r.IntN(8), 1+r.IntN(99))), Priority: int32(r.IntN(3))}
			if r.IntN(2) == 0 {
				g.ExpiresAt = t.Add(time.Duration(1+r.IntN(30*24)) * time.Hour)
			}
			switch r.IntN(4) {
			case 0:
				g.Restrict.PriceKeys = []string{models[r.IntN(3)]}
			case 1:
				g.Restrict.Dimensions = []schemas.Dimension{{Key: "team", Value: "a"}}
			}
			ops = append(ops, op{cmd: &Command{ID: id, Kind: CommandGrant, At: t, Grant: g}})
			if r.IntN(5) == 0 { // a retry of the same command
				ops = append(ops, op{cmd: &Command{ID: id, Kind: CommandGrant, At: t, Grant: g}})
			}
		case k == 14 && grants > 0:
			ops = append(ops, op{cmd: &Command{ID: id, Kind: CommandVoidGrant, At: t, GrantID: fmt.Sprintf("g%d", 1+r.IntN(grants))}})
		case k == 15:
			p := testPlans[r.IntN(len(testPlans))]
			c := &Command{ID: id, Kind: CommandChangePlan, At: t, Plan: &p}
			switch r.IntN(4) {
			case 0:
				c.EffectiveAt = t.Add(time.Duration(r.IntN(40*24)) * time.Hour)
			case 1:
				c.Anchor = t.Add(time.Duration(r.IntN(20*24)) * time.Hour)
			}
			ops = append(ops, op{cmd: c})
		case k == 16:
			var ts []Threshold
			if r.IntN(3) > 0 {
				ts = []Threshold{{Kind: ThresholdAmount, Amount: rating.MustAmount(fmt.Sprint(r.IntN(5)))}, {Kind: ThresholdPercent, Percent: uint8(1 + r.IntN(100))}}
			}
			ops = append(ops, op{cmd: &Command{ID: id, Kind: CommandSetThresholds, At: t, Thresholds: ts}})
		case k == 17:
			ops = append(ops, op{cmd: &Command{ID: id, Kind: CommandSetPause, At: t, Pause: PauseOverride(r.IntN(3))}})
		default:
			t = t.Add(time.Duration(r.IntN(5*24)) * time.Hour)
			ops = append(ops, op{adv: t})
		}
	}
	return ops
}

func (o op) apply(a *Account, fx *Effects) error {
	switch {
	case o.ev != nil:
		o.ev.Event.CustomerID = a.customer
		return a.ApplyUsage(o.ev, fx)
	case o.cmd != nil:
		o.cmd.CustomerID = a.customer
		_, err := a.Apply(o.cmd, fx)
		if errors.Is(err, ErrUnknownGrant) || errors.Is(err, ErrLimit) {
			err = nil // refused commands are part of the stream
		}
		return err
	default:
		a.AdvanceTo(o.adv, fx)
		return nil
	}
}

// Property: for random streams, (1) the state survives an encoding round
// trip byte for byte at every step, (2) an account decoded mid-stream
// behaves exactly like the original for the rest of the stream (same
// alerts, draws, closed periods and state), (3) no alert key repeats and
// zero/recovery and paused/resumed alternate, and (4) money is conserved:
// every charge is drawn exactly once, period totals equal the draws, and
// each grant's amount equals drawn + expired + voided + remaining.
func TestRandomStreamsRoundTripAndConserve(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		ops := randomOps(r, 400)
		a := NewAccount(cust)
		var b *Account
		split := r.IntN(len(ops))
		var fx, fxb Effects
		var charged, drawn, periodUsage rating.Amount
		bySource := map[Source]rating.Amount{}
		perGrant := map[string]rating.Amount{}
		var closed []PeriodUsage
		keys := map[string]bool{}
		lastZero, lastPause := AlertRecovery, AlertResumed
		for i, o := range ops {
			if i == split {
				st, _ := a.MarshalBinary()
				b = new(Account)
				if err := b.UnmarshalBinary(st); err != nil {
					t.Fatalf("seed %d op %d: %v", seed, i, err)
				}
			}
			fx.Reset()
			if err := o.apply(a, &fx); err != nil {
				t.Fatalf("seed %d op %d: %v", seed, i, err)
			}
			if b != nil {
				fxb.Reset()
				if err := o.apply(b, &fxb); err != nil {
					t.Fatalf("seed %d op %d (decoded): %v", seed, i, err)
				}
				if fmt.Sprint(fx) != fmt.Sprint(fxb) {
					t.Fatalf("seed %d op %d: effects differ after decoding\n%+v\n%+v", seed, i, fx, fxb)
				}
			}
			if o.ev != nil {
				charged, _ = charged.Add(o.ev.Charge)
			}
			for _, d := range fx.Draws {
				drawn, _ = drawn.Add(d.Amount)
				bySource[d.Source], _ = bySource[d.Source].Add(d.Amount)
				if d.Source == SourceGrant {
					perGrant[d.Ref], _ = perGrant[d.Ref].Add(d.Amount)
				}
			}
			closed = append(closed, fx.Closed...)
			// Exactly once: no key twice in a stream; zero and recovery
			// alternate, and so do paused and resumed.
			for _, al := range fx.Alerts {
				if keys[al.Key] {
					t.Fatalf("seed %d op %d: alert key %s repeated (%s)", seed, i, al.Key, al.Kind)
				}
				keys[al.Key] = true
				switch al.Kind {
				case AlertZero, AlertRecovery:
					if al.Kind == lastZero {
						t.Fatalf("seed %d op %d: two %s alerts in a row", seed, i, al.Kind)
					}
					lastZero = al.Kind
				case AlertPaused, AlertResumed:
					if al.Kind == lastPause {
						t.Fatalf("seed %d op %d: two %s alerts in a row", seed, i, al.Kind)
					}
					lastPause = al.Kind
				}
			}
			st, _ := a.MarshalBinary()
			var c Account
			if err := c.UnmarshalBinary(st); err != nil {
				t.Fatalf("seed %d op %d: decode: %v", seed, i, err)
			}
			if st2, _ := c.MarshalBinary(); !bytes.Equal(st, st2) {
				t.Fatalf("seed %d op %d: round trip changes the state", seed, i)
			}
		}
		if sa, _ := a.MarshalBinary(); b != nil {
			if sb, _ := b.MarshalBinary(); !bytes.Equal(sa, sb) {
				t.Fatalf("seed %d: decoded account ends in another state", seed)
			}
		}
		if drawn != charged {
			t.Fatalf("seed %d: drawn %s, charged %s", seed, drawn, charged)
		}
		all := append(closed, a.CurrentPeriod())
		var over, blocked, included rating.Amount
		grantMoves := map[string][4]rating.Amount{} // granted, drawn, expired+voided, last remaining
		for _, p := range all {
			periodUsage, _ = periodUsage.Add(p.UsageCharge)
			over, _ = over.Add(p.Overage)
			blocked, _ = blocked.Add(p.BlockedOverage)
			included, _ = included.Add(p.Included)
			for _, tu := range p.Tokens {
				included, _ = included.Add(tu.Charge)
			}
			for _, g := range p.Grants {
				m := grantMoves[g.GrantID]
				m[0], _ = m[0].Add(g.Granted)
				m[1], _ = m[1].Add(g.Drawn)
				m[2], _ = m[2].Add(g.Expired)
				m[2], _ = m[2].Add(g.Voided)
				m[3] = g.Remaining
				grantMoves[g.GrantID] = m
			}
			if s := BuildStatement(&p, DefaultRounding); !s.AmountDue.Sub(s.Fee).Sub(s.Overage).Sub(s.Blocked).Equal(s.Adjustment) {
				t.Fatalf("seed %d: statement lines do not add up: %+v", seed, s)
			}
		}
		if periodUsage != charged || over != bySource[SourceOverage] || blocked != bySource[SourceBlocked] {
			t.Fatalf("seed %d: periods usage %s overage %s blocked %s; events %s, draws %v", seed, periodUsage, over, blocked, charged, bySource)
		}
		incDraws, _ := bySource[SourceAllowance].Add(bySource[SourceTokens])
		if included != incDraws {
			t.Fatalf("seed %d: included %s, draws %s", seed, included, incDraws)
		}
		for id, m := range grantMoves {
			if m[1] != perGrant[id] {
				t.Fatalf("seed %d: grant %s drawn %s in periods, %s in draws", seed, id, m[1], perGrant[id])
			}
			sum, _ := m[1].Add(m[2])
			sum, _ = sum.Add(m[3])
			if sum != m[0] {
				t.Fatalf("seed %d: grant %s: granted %s ≠ drawn %s + expired/voided %s + remaining %s", seed, id, m[0], m[1], m[2], m[3])
			}
		}
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, testPlans[3])
	h.grant(day(1), "g", "5")
	good, _ := h.a.MarshalBinary()
	var a Account
	for name, b := range map[string][]byte{
		"empty":    nil,
		"version":  append([]byte{9}, good[1:]...),
		"trailing": append(append([]byte(nil), good...), 0),
		"short":    good[:len(good)-1],
	} {
		if err := a.UnmarshalBinary(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	var p PeriodUsage
	pb, _ := new(h.a.CurrentPeriod()).MarshalBinary()
	if err := p.UnmarshalBinary(pb); err != nil || p.Fees[0].Amount != usd("9.99") {
		t.Errorf("period round trip: %v %+v", err, p)
	}
	if len(good) > 400 {
		t.Errorf("state of a small account is %d bytes", len(good))
	}
	t.Logf("state: %d bytes with a 2-group plan and one grant", len(good))
}

// FuzzUnmarshalAccount: stored bytes from anywhere (a corrupt disk, a
// foreign changelog record) never panic the parser, and whatever parses
// is a state every method can run on.
func FuzzUnmarshalAccount(f *testing.F) {
	for seed := range uint64(6) {
		r := rand.New(rand.NewPCG(seed, 1))
		a := NewAccount(cust)
		var fx Effects
		for _, o := range randomOps(r, 60) {
			_ = o.apply(a, &fx)
		}
		b, _ := a.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1})
	f.Add([]byte{1, 0, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Account
		if err := a.UnmarshalBinary(data); err != nil {
			return
		}
		b, _ := a.MarshalBinary()
		var c Account
		if err := c.UnmarshalBinary(b); err != nil {
			t.Fatalf("re-encoded state refused: %v", err)
		}
		var fx Effects
		now := a.Clock().Add(36 * time.Hour)
		_ = a.Entitlement(now)
		v := a.View()
		_ = v.Entitlement(now)
		ev := spend("fz", now, "1.5")
		ev.Event.CustomerID = a.Customer()
		_ = a.ApplyUsage(ev, &fx)
		_, _ = a.Apply(&Command{ID: "fz", CustomerID: a.Customer(), Kind: CommandGrant, At: now, Grant: &Grant{ID: "fz", Amount: usd("1")}}, &fx)
		a.AdvanceTo(now.Add(24*time.Hour), &fx)
		_ = BuildStatement(new(a.CurrentPeriod()), DefaultRounding)
		if err := a.check(); err != nil {
			t.Fatalf("state broken by methods: %v", err)
		}
	})
}

func FuzzUnmarshalPeriod(f *testing.F) {
	p := PeriodUsage{CustomerID: cust, Start: nov1, End: day(30), Fees: []FeeLine{{PlanID: "p", Amount: usd("1")}},
		Grants: []GrantUsage{{GrantID: "g", Drawn: usd("2")}}, UsageCharge: usd("2")}
	b, _ := p.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var p PeriodUsage
		if p.UnmarshalBinary(data) == nil {
			_ = BuildStatement(&p, rating.RoundUp)
		}
	})
}

func TestLimitsAsAmounts(t *testing.T) {
	if maxAmount() != usd("10000000") || maxPeriodUsage() != usd("1000000000") {
		t.Fatalf("limits %s %s", maxAmount(), maxPeriodUsage())
	}
}
