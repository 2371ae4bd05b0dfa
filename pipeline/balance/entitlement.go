package balance

import (
	"slices"
	"time"

	"github.com/tariff-dev/tariff/rating"
)

// Reason explains an entitlement answer.
type Reason uint8

const (
	// ReasonBalance: allowance, included tokens or credit is left.
	ReasonBalance Reason = iota
	// ReasonOverage: nothing is left, and overage is billed.
	ReasonOverage
	// ReasonPaused: the account is paused (by the seller, or after usage
	// beyond the balance on a blocking plan).
	ReasonPaused
	// ReasonExhausted: nothing is left and the plan blocks overage.
	ReasonExhausted
)

var reasonNames = []string{"balance", "overage", "paused", "exhausted"}

func (r Reason) String() string               { return enumString(reasonNames, uint8(r), "reason") }
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }
func (r *Reason) UnmarshalText(b []byte) error {
	v, err := enumParse(reasonNames, b, "reason")
	*r = Reason(v)
	return err
}

// Entitlement answers "may this customer use more now?".
type Entitlement struct {
	Allowed bool   `json:"allowed"`
	Reason  Reason `json:"reason"`
	// Remaining is the money available: money allowance left plus usable
	// credits (restricted grants included). TokensRemaining is the
	// included tokens left across token groups.
	Remaining       rating.Amount `json:"remaining"`
	TokensRemaining int64         `json:"tokens_remaining"`
	OverageAllowed  bool          `json:"overage_allowed"`
	Paused          bool          `json:"paused"`
}

// View is a compact, immutable copy of what Entitlement needs, for
// readers on other goroutines: the partition worker publishes a new View
// after each durable batch (for example in an atomic map snapshot), and
// the entitlement API answers from it without locks.
type View struct {
	paused, autoPaused bool
	override           PauseOverride
	overageAllowed     bool
	periodEnd          time.Time
	moneyLeft          rating.Amount
	tokensLeft         int64
	// What a new period would give (the plan's full allowances).
	nextMoney  rating.Amount
	nextTokens int64
	credits    []credit // usable credit by expiry, none when credits do not apply
	// For people: the plan in force and the account's clock.
	planID      string
	planVersion uint32
	clock       time.Time
}

// Plan returns the id and version of the plan in force ("" for none).
func (v *View) Plan() (id string, version uint32) { return v.planID, v.planVersion }

// Clock returns how far the account has advanced (its last input's time).
func (v *View) Clock() time.Time { return v.clock }

type credit struct {
	expires time.Time // zero: never
	amount  rating.Amount
}

// View returns the account's entitlement view. It allocates one slice for
// the usable grants.
func (a *Account) View() View {
	v := a.viewCore()
	if a.creditsApply() {
		for i := range a.grants {
			if g := &a.grants[i]; g.live() {
				v.credits = append(v.credits, credit{expires: g.ExpiresAt, amount: g.remaining})
			}
		}
		v.credits = slices.Clip(v.credits)
	}
	return v
}

func (a *Account) viewCore() View {
	v := View{
		paused:         a.Paused(),
		autoPaused:     a.autoPaused,
		override:       a.override,
		overageAllowed: a.overageAllowed(),
		periodEnd:      a.end,
		moneyLeft:      a.money.left,
		nextMoney:      a.plan.Allowance,
		planID:         a.plan.ID,
		planVersion:    a.plan.Version,
		clock:          a.clock,
	}
	for i := range a.tokens {
		v.tokensLeft += a.tokens[i].allowance - a.tokens[i].used
	}
	for i := range a.plan.TokenGroups {
		v.nextTokens += a.plan.TokenGroups[i].Tokens
	}
	return v
}

// Entitlement answers from the view as of now: credit expired by now does
// not count, and if now is past the period's end the next period's full
// allowance counts (and an automatic pause it would lift is lifted). A
// scheduled plan change not yet applied is not anticipated. No allocation.
func (v *View) Entitlement(now time.Time) Entitlement {
	var credits rating.Amount
	for _, c := range v.credits {
		if c.expires.IsZero() || now.Before(c.expires) {
			credits = mustAdd(credits, c.amount)
		}
	}
	return v.entitlement(now, credits)
}

// Entitlement is View().Entitlement(now) without the copy, for the
// account's own goroutine.
func (a *Account) Entitlement(now time.Time) Entitlement {
	v := a.viewCore()
	var credits rating.Amount
	if a.creditsApply() {
		for i := range a.grants {
			g := &a.grants[i]
			if g.live() && (g.ExpiresAt.IsZero() || now.Before(g.ExpiresAt)) {
				credits = mustAdd(credits, g.remaining)
			}
		}
	}
	return v.entitlement(now, credits)
}

func (v *View) entitlement(now time.Time, credits rating.Amount) Entitlement {
	money, tokens := v.moneyLeft, v.tokensLeft
	rolled := !v.periodEnd.IsZero() && !now.Before(v.periodEnd)
	if rolled {
		money, tokens = v.nextMoney, v.nextTokens
	}
	lift := rolled && v.override == PauseAuto && v.autoPaused
	return answer(v.paused, v.overageAllowed, lift, mustAdd(money, credits), tokens)
}

// answer decides from the money (credits included) and tokens that count
// now; lift says a new period has started since an automatic pause, which
// it lifts if anything is left. PackedView shares it, so that both forms
// answer alike.
func answer(paused, overageAllowed, lift bool, money rating.Amount, tokens int64) Entitlement {
	e := Entitlement{OverageAllowed: overageAllowed, Paused: paused, Remaining: money, TokensRemaining: tokens}
	left := money.Sign() > 0 || tokens > 0
	if lift && left {
		e.Paused = false // the new period lifts the pause
	}
	switch {
	case e.Paused:
		e.Reason = ReasonPaused
	case left:
		e.Allowed, e.Reason = true, ReasonBalance
	case e.OverageAllowed:
		e.Allowed, e.Reason = true, ReasonOverage
	default:
		e.Reason = ReasonExhausted
	}
	return e
}
