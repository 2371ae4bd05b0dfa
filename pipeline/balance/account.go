package balance

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tariff-dev/tariff/rating"
)

var (
	// ErrWrongCustomer means an event or command was given to another
	// customer's account: a routing bug in the caller.
	ErrWrongCustomer = errors.New("belongs to another customer")
	// ErrUnknownGrant means a void names a grant the account does not hold.
	ErrUnknownGrant = errors.New("unknown grant")
	// ErrLimit means a command would exceed one of the documented bounds.
	ErrLimit = errors.New("limit exceeded")
)

// PauseOverride is the seller's manual override of pausing.
type PauseOverride uint8

const (
	// PauseAuto follows the plan: paused when a blocking plan runs out.
	PauseAuto PauseOverride = iota
	// PauseForced pauses the account whatever its balance.
	PauseForced
	// PauseLifted never pauses it: usage nothing covers is billed as
	// overage even on a blocking plan.
	PauseLifted
)

var pauseNames = []string{"auto", "pause", "resume"}

func (p PauseOverride) String() string               { return enumString(pauseNames, uint8(p), "pause") }
func (p PauseOverride) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
func (p *PauseOverride) UnmarshalText(b []byte) error {
	v, err := enumParse(pauseNames, b, "pause")
	*p = PauseOverride(v)
	return err
}

// Account is one customer's balances. It is a plain value owned by the
// goroutine of the customer's partition: methods are not safe for
// concurrent use. Readers elsewhere (the entitlement API) take a View.
//
// Every method is deterministic: the same account state and the same
// inputs in the same order give the same state, alerts and draws. Time
// only moves through inputs: an event's time, a command's time, AdvanceTo.
type Account struct {
	customer string
	started  bool      // clock and period are set
	clock    time.Time // the latest time the account has seen

	plan     Plan
	assigned bool // false: the zero Plan on calendar months
	planFrom time.Time
	anchor   time.Time
	pending  []pendingChange // scheduled plan changes, by effective time

	start, end time.Time // current period [start, end)
	money      moneyBucket
	tokens     []tokenBucket // parallel to plan.TokenGroups

	grants   []grantState // in draw order
	grantSeq uint64

	cur  periodStats
	prev *PeriodUsage // the last closed period

	autoPaused bool
	override   PauseOverride

	customThresholds bool
	thresholds       []Threshold // the account's own, when customThresholds
	gen              uint32      // bumped whenever the threshold checks change
	checks           []checkState
	zero             zeroState
	recoveries       uint32
	pauses, resumes  uint32
	pausedSeen       bool

	applied idRing
}

type moneyBucket struct{ allowance, left rating.Amount }

type tokenBucket struct {
	allowance, used int64
	charge          rating.Amount // charge covered
}

type pendingChange struct {
	commandID string
	plan      Plan
	effective time.Time
	anchor    time.Time
}

type periodStats struct {
	fees      []FeeLine
	allowance rating.Amount // money allowance given this period (prorated parts)
	included  rating.Amount // money allowance drawn
	tokens    []TokenUsage  // token groups of plans left during the period
	overage   rating.Amount
	blocked   rating.Amount
	usage     rating.Amount
	late      rating.Amount
	events    int64
}

// NewAccount returns the account of a customer that has seen nothing yet:
// on the zero Plan (pure usage-based, calendar months) until a plan is
// assigned.
func NewAccount(customer string) *Account { return &Account{customer: customer} }

// Customer returns the account's customer id.
func (a *Account) Customer() string { return a.customer }

// Clock returns the latest time the account has seen (zero before any).
func (a *Account) Clock() time.Time { return a.clock }

// Plan returns the plan in force (the zero Plan before any assignment).
// The result shares slices with the account: do not modify it.
func (a *Account) Plan() Plan { return a.plan }

// Period returns the current billing period.
func (a *Account) Period() (start, end time.Time) { return a.start, a.end }

// Paused reports whether the account is paused now.
func (a *Account) Paused() bool {
	return a.override == PauseForced || (a.override == PauseAuto && a.autoPaused)
}

func (a *Account) overageAllowed() bool {
	return a.plan.Overage == OverageBill || a.override == PauseLifted
}

func (a *Account) creditsApply() bool { return a.plan.Credits == CreditsApply }

// available returns the money balance (money allowance left plus usable
// credits) and the included tokens left across groups.
func (a *Account) available() (money rating.Amount, tokens int64) {
	money = a.money.left
	if a.creditsApply() {
		for i := range a.grants {
			if g := &a.grants[i]; g.live() {
				money = mustAdd(money, g.remaining)
			}
		}
	}
	for i := range a.tokens {
		tokens += a.tokens[i].allowance - a.tokens[i].used
	}
	return money, tokens
}

func (a *Account) exhausted() bool {
	m, t := a.available()
	return m.Sign() <= 0 && t <= 0
}

// liftPause ends an automatic pause once something is available again. It
// runs after a grant, a plan change and a new period: the events that
// add balance.
func (a *Account) liftPause() {
	if a.autoPaused && !a.exhausted() {
		a.autoPaused = false
	}
}

// NextChange returns the next time at which AdvanceTo would change the
// account with no other input (a period end, a grant expiry, a scheduled
// plan change), or the zero time if the account has not started. The
// pipeline can keep accounts in a timer queue by it instead of sweeping.
func (a *Account) NextChange() time.Time {
	if !a.started {
		return time.Time{}
	}
	_, t := a.nextStep()
	return t
}

// AdvanceTo moves the account's clock to now: credit expiring at or before
// now stops counting, scheduled plan changes take effect and finished
// periods close, each at its own time and in time order, with the alerts
// they cause. A now before the clock, or outside [1971, 2200), changes
// nothing. Closed periods are appended to fx.Closed.
//
// AdvanceTo is an input like a usage event: for a replay to produce the
// same state, the pipeline must apply the same AdvanceTo calls in the same
// place of the stream (for example as tick records on the input topic, or
// by calling it only with event and command times). Alert keys do not
// depend on the cause, so a crossing reached through another path on
// replay still carries the same key.
func (a *Account) AdvanceTo(now time.Time, fx *Effects) {
	if !timeInRange(now) || !a.started {
		return
	}
	if fx == nil {
		fx = &Effects{}
	}
	a.advance(now, fx)
}

type step uint8

const (
	stepExpire step = iota
	stepPlan
	stepRoll
)

// nextStep returns the earliest time-driven change. At equal times expiry
// comes first (credit expiring at a period's end belongs to that period),
// then a scheduled plan change (one at a period boundary is prorated to
// nothing in the old period and billed in full by the new one), then the
// period roll.
func (a *Account) nextStep() (step, time.Time) {
	s, at := stepRoll, a.end
	if len(a.pending) > 0 && !a.pending[0].effective.After(at) {
		s, at = stepPlan, a.pending[0].effective
	}
	for i := range a.grants {
		g := &a.grants[i]
		if g.expired || g.voided || g.ExpiresAt.IsZero() {
			continue
		}
		if !g.ExpiresAt.After(at) {
			s, at = stepExpire, g.ExpiresAt
		}
	}
	return s, at
}

func (a *Account) advance(now time.Time, fx *Effects) {
	now = now.UTC()
	if !a.started {
		a.begin(now)
		return
	}
	for {
		s, at := a.nextStep()
		if at.After(now) {
			break
		}
		if at.After(a.clock) {
			a.clock = at
		}
		switch s {
		case stepExpire:
			a.expire(at, fx)
		case stepPlan:
			p := a.pending[0]
			a.pending = slices.Delete(a.pending, 0, 1)
			a.changePlan(&p.plan, at, p.anchor, fx)
			a.evaluate(Cause{Kind: CauseSchedule, ID: p.commandID}, at, fx)
		case stepRoll:
			a.roll(fx)
		}
	}
	if now.After(a.clock) {
		a.clock = now
	}
}

// begin starts a new account's clock and first period (calendar month of
// the zero Plan).
func (a *Account) begin(t time.Time) {
	a.started = true
	a.clock = t
	a.anchor = calendarAnchor()
	var ps time.Time
	ps, a.end = a.plan.Cycle.periodAt(a.anchor, t)
	a.start = t // the account's first period starts when it does
	a.openPeriod(a.end.Sub(t), a.end.Sub(ps))
	a.resetChecks()
	a.zero.fired = a.exhausted() // nothing to announce: it never had a balance
}

// openPeriod gives the plan's fee and allowances for the part remaining/
// length of the current period.
func (a *Account) openPeriod(remaining, length time.Duration) {
	p := &a.plan
	// One line per plan in force, even with no fee, except a plan put in
	// force at the very end of a period (a change scheduled at the
	// boundary), which the next period bills in full.
	if a.assigned && remaining > 0 {
		a.cur.fees = append(a.cur.fees, FeeLine{PlanID: p.ID, PlanVersion: p.Version, From: a.end.Add(-remaining),
			Amount: prorate(p.Fee, remaining, length)})
	}
	al := prorate(p.Allowance, remaining, length)
	a.money = moneyBucket{allowance: al, left: al}
	a.cur.allowance = mustAdd(a.cur.allowance, al)
	a.tokens = a.tokens[:0]
	for i := range p.TokenGroups {
		a.tokens = append(a.tokens, tokenBucket{allowance: prorateTokens(p.TokenGroups[i].Tokens, remaining, length)})
	}
}

// expire ends every grant whose expiry is at.
func (a *Account) expire(at time.Time, fx *Effects) {
	for i := range a.grants {
		g := &a.grants[i]
		if g.expired || g.voided || !g.ExpiresAt.Equal(at) {
			continue
		}
		g.expired = true
		g.expiredAmt = mustAdd(g.expiredAmt, g.remaining)
		g.remaining = rating.Amount{}
		a.evaluate(Cause{Kind: CauseExpiry, ID: g.ID}, at, fx)
	}
}

// roll closes the current period at its end and opens the next with the
// plan's full fee and allowances.
func (a *Account) roll(fx *Effects) {
	at := a.end
	a.closePeriod(at, fx)
	a.start, a.end = a.plan.Cycle.periodAt(a.anchor, at)
	if !a.start.Equal(at) {
		panic("BUG: period does not start at the previous period's end")
	}
	a.openPeriod(a.end.Sub(a.start), a.end.Sub(a.start))
	a.liftPause()
	a.evaluate(Cause{Kind: CausePeriod}, at, fx)
}

// closePeriod records the current period as ending at end, hands it to fx
// and resets the period's counters. Finished grants (used up, expired or
// voided) leave the account here: their last movements are in the closed
// period.
func (a *Account) closePeriod(end time.Time, fx *Effects) {
	p := a.snapshot(end)
	fx.Closed = append(fx.Closed, p)
	a.prev = &p
	a.cur = periodStats{}
	a.grants = slices.DeleteFunc(a.grants, func(g grantState) bool { return !g.live() })
	for i := range a.grants {
		g := &a.grants[i]
		g.granted, g.drawn, g.expiredAmt, g.voidedAmt = rating.Amount{}, rating.Amount{}, rating.Amount{}, rating.Amount{}
	}
}

// freezeTokens moves the token groups of the plan in force into the
// period's record, before a plan change replaces them.
func (a *Account) freezeTokens() {
	for i := range a.tokens {
		if b := &a.tokens[i]; b.used > 0 {
			a.cur.tokens = append(a.cur.tokens, TokenUsage{PlanID: a.plan.ID, Group: a.plan.TokenGroups[i].Name,
				Allowance: b.allowance, Used: b.used, Charge: b.charge})
		}
	}
	a.tokens = a.tokens[:0]
}

// changePlan puts p in force at t (t ≥ the clock). The rule:
//
//   - Same cycle, no new anchor: the current period goes on. The new
//     plan's fee and allowances are prorated by the time left in the
//     period. The old plan's fee is not refunded (fees are billed in
//     advance) and its unused allowance lapses; what was drawn stays.
//   - A new anchor, a different cycle, or the first plan of the account:
//     the current period closes at t (unless it starts at t) and a new one
//     starts at t, ending at the next boundary of the new cycle; the fee
//     and allowances are prorated by the part of that nominal period that
//     is left (the full amounts when t is the anchor).
//
// Proration is by the nanosecond and truncates at 10^-28 USD and at whole
// tokens.
func (a *Account) changePlan(p *Plan, t time.Time, anchor time.Time, fx *Effects) {
	restart := !anchor.IsZero() || !a.assigned || p.Cycle != a.plan.Cycle
	if restart {
		if anchor.IsZero() {
			anchor = t
		}
		if t.After(a.start) {
			a.closePeriod(t, fx)
		} else {
			a.freezeTokens()
		}
		a.anchor = anchor.UTC()
	} else {
		a.freezeTokens()
	}
	a.plan = p.clone()
	a.plan.Thresholds = normalizeThresholds(a.plan.Thresholds)
	a.assigned = true
	a.planFrom = t
	var length time.Duration
	if restart {
		var ps time.Time
		ps, a.end = a.plan.Cycle.periodAt(a.anchor, t)
		a.start = t
		length = a.end.Sub(ps)
	} else {
		length = a.end.Sub(a.start)
	}
	a.openPeriod(a.end.Sub(t), length)
	a.resetChecks()
	a.liftPause()
}

// snapshot builds the record of the current period as ending at end.
func (a *Account) snapshot(end time.Time) PeriodUsage {
	p := PeriodUsage{
		CustomerID:     a.customer,
		Start:          a.start,
		End:            end,
		Fees:           slices.Clone(a.cur.fees),
		Allowance:      a.cur.allowance,
		Included:       a.cur.included,
		Tokens:         slices.Clone(a.cur.tokens),
		Overage:        a.cur.overage,
		BlockedOverage: a.cur.blocked,
		UsageCharge:    a.cur.usage,
		LateCharge:     a.cur.late,
		Events:         a.cur.events,
	}
	for i := range a.tokens {
		b := &a.tokens[i]
		p.Tokens = append(p.Tokens, TokenUsage{PlanID: a.plan.ID, Group: a.plan.TokenGroups[i].Name,
			Allowance: b.allowance, Used: b.used, Charge: b.charge})
	}
	for i := range a.grants {
		g := &a.grants[i]
		if g.touched() || g.live() {
			p.Grants = append(p.Grants, GrantUsage{GrantID: g.ID, Granted: g.granted, Drawn: g.drawn,
				Expired: g.expiredAmt, Voided: g.voidedAmt, Remaining: g.remaining})
		}
	}
	return p
}

// CurrentPeriod returns the record of the period in progress, as of the
// account's clock (End is the period's scheduled end).
func (a *Account) CurrentPeriod() PeriodUsage { return a.snapshot(a.end) }

// LastPeriod returns the last closed period, if any.
func (a *Account) LastPeriod() (PeriodUsage, bool) {
	if a.prev == nil {
		return PeriodUsage{}, false
	}
	return *a.prev, true
}

func (a *Account) checkCustomer(id, what string) error {
	if id != a.customer {
		return fmt.Errorf("%s for customer %q applied to account %q: %w", what, id, a.customer, ErrWrongCustomer)
	}
	return nil
}
