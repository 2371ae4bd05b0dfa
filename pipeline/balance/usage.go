package balance

import (
	"fmt"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/sinks"
)

// Source says what covered (part of) an event's charge.
type Source uint8

const (
	// SourceTokens: included tokens of a token group (Ref: the group).
	SourceTokens Source = iota
	// SourceAllowance: the plan's included money allowance.
	SourceAllowance
	// SourceGrant: a credit grant (Ref: the grant id).
	SourceGrant
	// SourceOverage: nothing covered it; billed in arrears.
	SourceOverage
	// SourceBlocked: nothing covered it and the plan blocks overage. The
	// usage happened, so it is recorded (and billed unless waived); the
	// account is paused.
	SourceBlocked
)

var sourceNames = []string{"tokens", "allowance", "grant", "overage", "blocked"}

func (s Source) String() string               { return enumString(sourceNames, uint8(s), "source") }
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
func (s *Source) UnmarshalText(b []byte) error {
	v, err := enumParse(sourceNames, b, "source")
	*s = Source(v)
	return err
}

// Draw is one part of an event's charge and what covered it. The parts of
// an event add up to its charge exactly.
type Draw struct {
	EventID string        `json:"event_id"`
	Source  Source        `json:"source"`
	Ref     string        `json:"ref,omitempty"`    // token group name or grant id
	Tokens  int64         `json:"tokens,omitempty"` // included tokens drawn (SourceTokens)
	Amount  rating.Amount `json:"amount"`
}

// Effects collects what applying inputs produced, for the caller to
// publish once the account state is durable: alerts, the draw ledger and
// closed periods. The caller owns it; Reset keeps capacity so a batch can
// reuse one.
type Effects struct {
	Alerts []Alert
	Draws  []Draw
	Closed []PeriodUsage
}

// Reset empties fx and keeps its capacity.
func (fx *Effects) Reset() {
	clear(fx.Closed)
	fx.Alerts, fx.Draws, fx.Closed = fx.Alerts[:0], fx.Draws[:0], fx.Closed[:0]
}

// ApplyUsage applies one rated event, in the order events arrive for this
// customer. First the clock advances to the event's time (expiring credit,
// closing periods). Then its charge is drawn:
//
//  1. included tokens of the first token group that matches the event
//     and has tokens left, line by line (the charge of the covered tokens
//     is not billed);
//  2. the included money allowance;
//  3. grants whose restriction matches, by priority, then earliest
//     expiry, then arrival (if the plan lets credits apply);
//  4. the rest is overage, or blocked overage on a blocking plan, which
//     pauses the account. Usage is never dropped.
//
// No source goes below zero; a draw splits across as many sources as it
// takes. An event timed before the current period counts in the current
// period (a closed period never reopens) and is reported as late usage.
//
// ApplyUsage does not deduplicate events: the pipeline applies each event
// once (idempotency keys and offsets stored with the state). It fails,
// leaving the account unchanged, for another customer's event, a time
// outside [1971, 2200), a negative charge or lines that do not add up to
// it; and, after the clock has advanced, for a period usage beyond
// MaxPeriodUSD.
func (a *Account) ApplyUsage(ev *sinks.RatedEvent, fx *Effects) error {
	if fx == nil {
		fx = &Effects{}
	}
	if ev.Event.CustomerID != a.customer {
		return a.checkCustomer(ev.Event.CustomerID, "event "+ev.Event.ID)
	}
	if !timeInRange(ev.Event.Time) {
		return fmt.Errorf("event %s: time %s: expected a time from 1971 to 2199", ev.Event.ID, ev.Event.Time.UTC().Format(time.RFC3339))
	}
	if ev.Charge.Sign() < 0 {
		return fmt.Errorf("event %s: charge %s: expected a non-negative amount", ev.Event.ID, ev.Charge)
	}
	if err := checkLines(ev); err != nil {
		return err
	}
	a.advance(ev.Event.Time, fx)
	// Every period total below is a part of the usage total, so checking
	// that one for overflow checks them all.
	usage, ok := a.cur.usage.Add(ev.Charge)
	if !ok || usage.Cmp(maxPeriodUsage()) > 0 {
		return fmt.Errorf("event %s: period usage of %s would exceed %d %s: %w", ev.Event.ID, a.customer, MaxPeriodUSD, Currency, ErrLimit)
	}
	a.cur.usage = usage
	a.cur.events++
	if ev.Event.Time.Before(a.start) {
		a.cur.late = mustAdd(a.cur.late, ev.Charge)
	}
	id := ev.Event.ID
	rest := ev.Charge

	if gi := a.tokenGroupFor(ev); gi >= 0 {
		if covered, tokens := a.drawTokens(gi, ev); tokens > 0 {
			rest = mustSub(rest, covered)
			fx.Draws = append(fx.Draws, Draw{EventID: id, Source: SourceTokens, Ref: a.plan.TokenGroups[gi].Name, Tokens: tokens, Amount: covered})
		}
	}
	if rest.Sign() > 0 && a.money.left.Sign() > 0 {
		d := minAmount(rest, a.money.left)
		a.money.left = mustSub(a.money.left, d)
		a.cur.included = mustAdd(a.cur.included, d)
		rest = mustSub(rest, d)
		fx.Draws = append(fx.Draws, Draw{EventID: id, Source: SourceAllowance, Amount: d})
	}
	if rest.Sign() > 0 && a.creditsApply() {
		for i := range a.grants {
			g := &a.grants[i]
			if !g.live() || !g.Restrict.matches(ev) {
				continue
			}
			d := minAmount(rest, g.remaining)
			g.remaining = mustSub(g.remaining, d)
			g.drawn = mustAdd(g.drawn, d)
			rest = mustSub(rest, d)
			fx.Draws = append(fx.Draws, Draw{EventID: id, Source: SourceGrant, Ref: g.ID, Amount: d})
			if rest.Sign() == 0 {
				break
			}
		}
	}
	if rest.Sign() > 0 {
		if a.overageAllowed() {
			a.cur.overage = mustAdd(a.cur.overage, rest)
			fx.Draws = append(fx.Draws, Draw{EventID: id, Source: SourceOverage, Amount: rest})
		} else {
			a.cur.blocked = mustAdd(a.cur.blocked, rest)
			a.autoPaused = true
			fx.Draws = append(fx.Draws, Draw{EventID: id, Source: SourceBlocked, Amount: rest})
		}
	}
	if !a.overageAllowed() && a.exhausted() {
		a.autoPaused = true
	}
	a.evaluate(Cause{Kind: CauseUsage, ID: id}, ev.Event.Time.UTC(), fx)
	return nil
}

// tokenGroupFor returns the index of the first token group with tokens
// left that ev matches, or -1.
func (a *Account) tokenGroupFor(ev *sinks.RatedEvent) int {
	for i := range a.tokens {
		if a.tokens[i].used < a.tokens[i].allowance && a.plan.TokenGroups[i].Match.matches(ev) {
			return i
		}
	}
	return -1
}

// drawTokens covers the event's counted lines from group gi, in line
// order, and returns the charge covered. A line covered in part is charged
// for the rest: its charge per token is exact (see mulDiv).
func (a *Account) drawTokens(gi int, ev *sinks.RatedEvent) (rating.Amount, int64) {
	b := &a.tokens[gi]
	units := a.plan.TokenGroups[gi].Units
	var covered rating.Amount
	var tokens int64
	for _, l := range ev.Lines {
		left := b.allowance - b.used
		if left <= 0 {
			break
		}
		if l.Quantity <= 0 || !units.Has(l.Unit) {
			continue
		}
		k := min(left, l.Quantity)
		c := l.Charge
		if k < l.Quantity {
			c = mulDiv(l.Charge, k, l.Quantity)
		}
		var ok bool
		if covered, ok = covered.Add(c); !ok {
			panic("BUG: covered charge exceeds the event charge range")
		}
		b.used += k
		tokens += k
	}
	b.charge = mustAdd(b.charge, covered)
	return covered, tokens
}

// checkLines verifies what the draw relies on: lines with non-negative
// quantities and charges that add up to the event's charge.
func checkLines(ev *sinks.RatedEvent) error {
	var sum rating.Amount
	for _, l := range ev.Lines {
		if l.Quantity < 0 || l.Charge.Sign() < 0 {
			return fmt.Errorf("event %s: %s line: quantity %d, charge %s: expected non-negative values", ev.Event.ID, l.Unit, l.Quantity, l.Charge)
		}
		var ok bool
		if sum, ok = sum.Add(l.Charge); !ok {
			return fmt.Errorf("event %s: lines: %w", ev.Event.ID, rating.ErrOverflow)
		}
	}
	if sum != ev.Charge {
		return fmt.Errorf("event %s: charge %s: expected the sum of its lines, %s", ev.Event.ID, ev.Charge, sum)
	}
	return nil
}
