package balance

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// Currency is the one currency balances are kept in: rating prices every
// event in USD, so a plan or a grant in another currency could only be
// converted with a rate, and a rate would make balances inexact. A grant
// naming another currency is refused.
const Currency = "USD"

// MinorDigits is the number of decimal places of Currency (cents).
const MinorDigits = 2

// Bounds that keep an account's state small and every loop short. Commands
// beyond them are refused with the field named.
const (
	MaxTokenGroups = 16
	MaxThresholds  = 8
	MaxMatchItems  = 256 // price keys, providers or dimensions in one Match
	MaxGrants      = 256 // live grants per account
	MinInterval    = time.Hour
	MaxInterval    = 366 * 24 * time.Hour
	// MaxTokens bounds an included token allowance (10^15 tokens).
	MaxTokens = 1_000_000_000_000_000
	// MaxAmountUSD bounds a fee, an allowance, a grant and a threshold
	// amount, so that an account's available balance (allowance plus
	// MaxGrants grants) stays far inside the Amount range and every sum
	// of it is exact.
	MaxAmountUSD = 10_000_000
	// MaxFeeLines bounds plan changes per period.
	MaxFeeLines = 64
	// MaxPeriodUSD bounds one account's usage charge in one period. An
	// event beyond it is refused (ApplyUsage fails): it keeps every period
	// total and statement sum exact within the Amount range.
	MaxPeriodUSD = 1_000_000_000
)

// maxAmount and maxPeriodUsage are the two limits as Amounts, built from
// their exact binary form (10^35 and 10^37 units of 10^-28 USD) so that
// the hot path compares without parsing or allocating.
func maxAmount() rating.Amount {
	b := [16]byte{0x00, 0x13, 0x42, 0x61, 0x72, 0xc7, 0x4d, 0x82, 0x2b, 0x87, 0x8f, 0xe8, 0, 0, 0, 0}
	return amountFrom16(b)
}

func maxPeriodUsage() rating.Amount {
	b := [16]byte{0x07, 0x85, 0xee, 0x10, 0xd5, 0xda, 0x46, 0xd9, 0x00, 0xf4, 0x36, 0xa0, 0, 0, 0, 0}
	return amountFrom16(b)
}

func amountFrom16(b [16]byte) rating.Amount {
	a, err := rating.AmountFromBinary(b[:])
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return a
}

// checkAmount refuses a negative amount (or a non-positive one when
// positive is set) and one above MaxAmountUSD.
func checkAmount(field string, a rating.Amount, positive bool) error {
	if a.Sign() < 0 || positive && a.Sign() == 0 {
		kind := "non-negative"
		if positive {
			kind = "positive"
		}
		return fmt.Errorf("%s: %s: expected a %s amount", field, a, kind)
	}
	if a.Cmp(maxAmount()) > 0 {
		return fmt.Errorf("%s: %s: expected at most %d %s", field, a, MaxAmountUSD, Currency)
	}
	return nil
}

// CycleKind says how billing periods are laid out.
type CycleKind uint8

const (
	// CycleMonthly: periods start on the anchor's day of month at the
	// anchor's time of day (UTC); a day the month lacks is its last day
	// (anchor Jan 31 → Feb 28 → Mar 31).
	CycleMonthly CycleKind = iota
	// CycleInterval: periods of a fixed Interval from the anchor.
	CycleInterval
)

var cycleNames = []string{"monthly", "interval"}

func (k CycleKind) String() string               { return enumString(cycleNames, uint8(k), "cycle") }
func (k CycleKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *CycleKind) UnmarshalText(b []byte) error {
	v, err := enumParse(cycleNames, b, "cycle")
	*k = CycleKind(v)
	return err
}

// Cycle is a plan's billing period. The anchor is per customer (set when
// the plan is assigned), so two customers on one plan may bill on
// different days.
type Cycle struct {
	Kind CycleKind `json:"kind"`
	// Interval is the period length of CycleInterval, between MinInterval
	// and MaxInterval; zero for CycleMonthly.
	Interval time.Duration `json:"interval,omitempty"`
}

// MarshalJSON writes the interval as a duration string ("168h0m0s").
func (c Cycle) MarshalJSON() ([]byte, error) {
	type wire struct {
		Kind     CycleKind `json:"kind"`
		Interval string    `json:"interval,omitempty"`
	}
	w := wire{Kind: c.Kind}
	if c.Interval != 0 {
		w.Interval = c.Interval.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the interval as a duration string ("168h").
func (c *Cycle) UnmarshalJSON(b []byte) error {
	var w struct {
		Kind     CycleKind `json:"kind"`
		Interval string    `json:"interval"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Cycle{Kind: w.Kind}
	if w.Interval != "" {
		d, err := time.ParseDuration(w.Interval)
		if err != nil {
			return fmt.Errorf("cycle.interval: %q: expected a duration such as 168h", w.Interval)
		}
		c.Interval = d
	}
	return nil
}

// periodAt returns the period [start, end) of the cycle anchored at anchor
// that contains t.
func (c Cycle) periodAt(anchor, t time.Time) (start, end time.Time) {
	if c.Kind == CycleInterval {
		d := t.Sub(anchor)
		k := int64(d / c.Interval)
		if d < 0 && d%c.Interval != 0 {
			k--
		}
		start = anchor.Add(time.Duration(k) * c.Interval)
		return start, start.Add(c.Interval)
	}
	k := (t.Year()-anchor.Year())*12 + int(t.Month()) - int(anchor.Month())
	start = monthBoundary(anchor, k)
	if start.After(t) {
		k--
		start = monthBoundary(anchor, k)
	} else if next := monthBoundary(anchor, k+1); !next.After(t) {
		k++
		start = next
	}
	return start, monthBoundary(anchor, k+1)
}

// monthBoundary is the k-th monthly boundary after anchor, computed from
// the anchor every time so that a short month does not drift the day.
func monthBoundary(anchor time.Time, k int) time.Time {
	y, m := anchor.Year(), int(anchor.Month())-1+k
	y += m / 12
	m %= 12
	if m < 0 {
		m += 12
		y--
	}
	month := time.Month(m + 1)
	day := anchor.Day()
	if last := time.Date(y, month+1, 0, 0, 0, 0, 0, time.UTC).Day(); day > last {
		day = last
	}
	return time.Date(y, month, day, anchor.Hour(), anchor.Minute(), anchor.Second(), anchor.Nanosecond(), time.UTC)
}

// OveragePolicy says what happens to usage nothing else covers.
type OveragePolicy uint8

const (
	// OverageBill bills it at the rate card's charge, in arrears.
	OverageBill OveragePolicy = iota
	// OverageBlock refuses it: the usage still happened and is recorded
	// (as blocked overage, billed unless the seller waives it), and the
	// account is paused until a top-up, a plan change or the next period.
	OverageBlock
)

var overageNames = []string{"bill", "block"}

func (p OveragePolicy) String() string               { return enumString(overageNames, uint8(p), "overage") }
func (p OveragePolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
func (p *OveragePolicy) UnmarshalText(b []byte) error {
	v, err := enumParse(overageNames, b, "overage")
	*p = OveragePolicy(v)
	return err
}

// CreditPolicy says whether grants are drawn on this plan.
type CreditPolicy uint8

const (
	CreditsApply CreditPolicy = iota
	// CreditsIgnored keeps grants untouched (they still expire) while the
	// plan is in force; they count again after a change to a plan where
	// they apply.
	CreditsIgnored
)

var creditNames = []string{"apply", "ignored"}

func (p CreditPolicy) String() string               { return enumString(creditNames, uint8(p), "credits") }
func (p CreditPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
func (p *CreditPolicy) UnmarshalText(b []byte) error {
	v, err := enumParse(creditNames, b, "credits")
	*p = CreditPolicy(v)
	return err
}

// UnitSet is a set of unit types, one bit per schemas.Unit. The empty set
// means every token unit.
type UnitSet uint16

// Units builds a set.
func Units(us ...schemas.Unit) UnitSet {
	var s UnitSet
	for _, u := range us {
		s |= 1 << u
	}
	return s
}

// MarshalJSON writes the set as unit names (["input","output"]).
func (s UnitSet) MarshalJSON() ([]byte, error) {
	names := make([]string, 0, schemas.NumUnits)
	for u := range schemas.NumUnits {
		if s&(1<<u) != 0 {
			names = append(names, u.String())
		}
	}
	return json.Marshal(names)
}

// UnmarshalJSON reads unit names.
func (s *UnitSet) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf("units: expected a list of unit names: %w", err)
	}
	var v UnitSet
	for _, n := range names {
		u, ok := schemas.ParseUnit(n)
		if !ok {
			return fmt.Errorf("units: %q: expected a unit name such as input or output", n)
		}
		v |= 1 << u
	}
	*s = v
	return nil
}

// Has reports whether u is in the set.
func (s UnitSet) Has(u schemas.Unit) bool {
	if s == 0 {
		return u.IsToken()
	}
	return u < schemas.NumUnits && s&(1<<u) != 0
}

// Match selects usage by price-list entry, provider and dimensions. Each
// non-empty list must match (AND between lists); within a list any item
// may match (OR). For dimensions, every key listed must be present on the
// event with one of the values listed for that key. The zero Match
// matches everything.
type Match struct {
	// PriceKeys are price-list entries (sinks.RatedEvent.PriceKey).
	PriceKeys []string `json:"price_keys,omitempty"`
	// Providers are the priced entry's providers (RatedEvent.Provider, or
	// the event's own when the entry has none).
	Providers  []string            `json:"providers,omitempty"`
	Dimensions []schemas.Dimension `json:"dimensions,omitempty"`
}

func (m *Match) matches(ev *sinks.RatedEvent) bool {
	if len(m.PriceKeys) > 0 && !slices.Contains(m.PriceKeys, ev.PriceKey) {
		return false
	}
	if len(m.Providers) > 0 {
		p := ev.Provider
		if p == "" {
			p = ev.Event.Provider
		}
		if !slices.Contains(m.Providers, p) {
			return false
		}
	}
	for i, d := range m.Dimensions {
		if slices.IndexFunc(m.Dimensions[:i], func(x schemas.Dimension) bool { return x.Key == d.Key }) >= 0 {
			continue // this key was decided at its first occurrence
		}
		if !m.dimensionMatches(d.Key, ev.Event.Dimensions) {
			return false
		}
	}
	return true
}

func (m *Match) dimensionMatches(key string, dims []schemas.Dimension) bool {
	for _, e := range dims {
		if e.Key != key {
			continue
		}
		for _, d := range m.Dimensions {
			if d.Key == key && d.Value == e.Value {
				return true
			}
		}
	}
	return false
}

func (m *Match) validate(field string) error {
	var errs []error
	if n := len(m.PriceKeys); n > MaxMatchItems {
		errs = append(errs, fmt.Errorf("%s.price_keys: %d entries, expected at most %d", field, n, MaxMatchItems))
	}
	if n := len(m.Providers); n > MaxMatchItems {
		errs = append(errs, fmt.Errorf("%s.providers: %d entries, expected at most %d", field, n, MaxMatchItems))
	}
	if n := len(m.Dimensions); n > MaxMatchItems {
		errs = append(errs, fmt.Errorf("%s.dimensions: %d entries, expected at most %d", field, n, MaxMatchItems))
	}
	for i, s := range m.PriceKeys {
		if s == "" || len(s) > schemas.MaxIDLen {
			errs = append(errs, fmt.Errorf("%s.price_keys[%d]: %q: expected 1 to %d bytes", field, i, s, schemas.MaxIDLen))
		}
	}
	for i, s := range m.Providers {
		if s == "" || len(s) > schemas.MaxIDLen {
			errs = append(errs, fmt.Errorf("%s.providers[%d]: %q: expected 1 to %d bytes", field, i, s, schemas.MaxIDLen))
		}
	}
	for i, d := range m.Dimensions {
		if d.Key == "" || len(d.Key) > schemas.MaxIDLen || len(d.Value) > schemas.MaxIDLen {
			errs = append(errs, fmt.Errorf("%s.dimensions[%d]: key %q: expected a key of 1 to %d bytes", field, i, d.Key, schemas.MaxIDLen))
		}
	}
	return errors.Join(errs...)
}

// TokenGroup is an included allowance of tokens per period for a set of
// models. Matching usage draws tokens from it in the order of the event's
// lines (unit order); the charge of the covered tokens is not billed.
type TokenGroup struct {
	Name  string `json:"name"`
	Match Match  `json:"match"`
	// Units are the unit types that count; empty means every token unit.
	Units UnitSet `json:"units,omitempty"`
	// Tokens included per full period.
	Tokens int64 `json:"tokens"`
}

// ThresholdKind says what a low-balance threshold measures.
type ThresholdKind uint8

const (
	// ThresholdPercent fires when Percent of an allowance is consumed. It
	// applies to each allowance of the plan separately: the money
	// allowance and every token group.
	ThresholdPercent ThresholdKind = iota
	// ThresholdAmount fires when the available money balance (money
	// allowance left plus usable credits) falls to Amount or below.
	ThresholdAmount
)

var thresholdNames = []string{"percent", "amount"}

func (k ThresholdKind) String() string               { return enumString(thresholdNames, uint8(k), "threshold") }
func (k ThresholdKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *ThresholdKind) UnmarshalText(b []byte) error {
	v, err := enumParse(thresholdNames, b, "threshold")
	*k = ThresholdKind(v)
	return err
}

// Threshold is a low-balance alert level. The zero-balance alert is always
// on and is not configured as a threshold.
type Threshold struct {
	Kind    ThresholdKind `json:"kind"`
	Percent uint8         `json:"percent,omitempty"` // 1..100, for ThresholdPercent
	Amount  rating.Amount `json:"amount"`            // ≥ 0, for ThresholdAmount
}

func (t Threshold) String() string {
	if t.Kind == ThresholdPercent {
		return fmt.Sprintf("%d%%", t.Percent)
	}
	return "$" + t.Amount.String()
}

// normalizeThresholds returns a sorted copy: percentages ascending, then
// amounts descending, i.e. in the order a falling balance crosses them,
// which is the order their alerts are emitted in.
func normalizeThresholds(ts []Threshold) []Threshold {
	if len(ts) == 0 {
		return nil
	}
	out := slices.Clone(ts)
	slices.SortStableFunc(out, func(a, b Threshold) int {
		if a.Kind != b.Kind {
			return int(a.Kind) - int(b.Kind)
		}
		if a.Kind == ThresholdPercent {
			return int(a.Percent) - int(b.Percent)
		}
		return b.Amount.Cmp(a.Amount)
	})
	return out
}

func validateThresholds(field string, ts []Threshold) error {
	var errs []error
	if len(ts) > MaxThresholds {
		errs = append(errs, fmt.Errorf("%s: %d thresholds, expected at most %d", field, len(ts), MaxThresholds))
	}
	for i, t := range ts {
		switch t.Kind {
		case ThresholdPercent:
			if t.Percent < 1 || t.Percent > 100 {
				errs = append(errs, fmt.Errorf("%s[%d].percent: %d: expected 1 to 100", field, i, t.Percent))
			}
			if !t.Amount.IsZero() {
				errs = append(errs, fmt.Errorf("%s[%d].amount: %s: expected none on a percent threshold", field, i, t.Amount))
			}
		case ThresholdAmount:
			if err := checkAmount(fmt.Sprintf("%s[%d].amount", field, i), t.Amount, false); err != nil {
				errs = append(errs, err)
			}
			if t.Percent != 0 {
				errs = append(errs, fmt.Errorf("%s[%d].percent: %d: expected none on an amount threshold", field, i, t.Percent))
			}
		default:
			errs = append(errs, fmt.Errorf("%s[%d].kind: %d: expected percent or amount", field, i, t.Kind))
		}
		for j := range i {
			if ts[j] == t {
				errs = append(errs, fmt.Errorf("%s[%d]: %s repeats %s[%d]", field, i, t, field, j))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Plan is one version of a pricing plan. Plans are immutable: a change is
// a new Version. An account keeps a copy of the plan it is on, so that
// replaying its state never depends on a catalogue that has changed since.
//
// Pure usage-based: the zero Plan (no fee, no allowance, overage billed).
// Prepaid: no fee or allowance, grants, OverageBlock. Subscription: Fee
// plus Allowance or TokenGroups. Hybrid: any combination.
type Plan struct {
	ID      string `json:"id"`
	Version uint32 `json:"version"`
	Cycle   Cycle  `json:"cycle"`
	// Fee is the recurring fixed fee per period, billed in advance at the
	// start of each period; it never draws from credits.
	Fee rating.Amount `json:"fee"`
	// Allowance is included usage per period in money, drawn by the
	// charge of any usage after the token groups.
	Allowance rating.Amount `json:"allowance"`
	// TokenGroups are included tokens per period for sets of models. An
	// event draws from the first group that matches it and has tokens
	// left (so groups may overlap: a narrow group, then a catch-all),
	// before Allowance.
	TokenGroups []TokenGroup  `json:"token_groups,omitempty"`
	Overage     OveragePolicy `json:"overage"`
	Credits     CreditPolicy  `json:"credits"`
	// Thresholds are the default alert levels of accounts on this plan;
	// a SetThresholds command overrides them per account.
	Thresholds []Threshold `json:"thresholds,omitempty"`
}

// Validate reports every bad field at once.
func (p *Plan) Validate() error {
	var errs []error
	if p.ID == "" || len(p.ID) > schemas.MaxIDLen {
		errs = append(errs, fmt.Errorf("plan.id: %q: expected 1 to %d bytes", p.ID, schemas.MaxIDLen))
	}
	switch p.Cycle.Kind {
	case CycleMonthly:
		if p.Cycle.Interval != 0 {
			errs = append(errs, fmt.Errorf("plan.cycle.interval: %s: expected none on a monthly cycle", p.Cycle.Interval))
		}
	case CycleInterval:
		if p.Cycle.Interval < MinInterval || p.Cycle.Interval > MaxInterval {
			errs = append(errs, fmt.Errorf("plan.cycle.interval: %s: expected %s to %s", p.Cycle.Interval, MinInterval, MaxInterval))
		}
	default:
		errs = append(errs, fmt.Errorf("plan.cycle.kind: %d: expected monthly or interval", p.Cycle.Kind))
	}
	if err := checkAmount("plan.fee", p.Fee, false); err != nil {
		errs = append(errs, err)
	}
	if err := checkAmount("plan.allowance", p.Allowance, false); err != nil {
		errs = append(errs, err)
	}
	if n := len(p.TokenGroups); n > MaxTokenGroups {
		errs = append(errs, fmt.Errorf("plan.token_groups: %d groups, expected at most %d", n, MaxTokenGroups))
	}
	for i := range p.TokenGroups {
		g := &p.TokenGroups[i]
		f := fmt.Sprintf("plan.token_groups[%d]", i)
		if g.Name == "" || len(g.Name) > schemas.MaxIDLen {
			errs = append(errs, fmt.Errorf("%s.name: %q: expected 1 to %d bytes", f, g.Name, schemas.MaxIDLen))
		}
		for j := range i {
			if p.TokenGroups[j].Name == g.Name {
				errs = append(errs, fmt.Errorf("%s.name: %q repeats plan.token_groups[%d]", f, g.Name, j))
				break
			}
		}
		if g.Tokens <= 0 || g.Tokens > MaxTokens {
			errs = append(errs, fmt.Errorf("%s.tokens: %d: expected 1 to %d", f, g.Tokens, int64(MaxTokens)))
		}
		for u := schemas.Unit(0); u < 16; u++ {
			if g.Units&(1<<u) != 0 && !u.IsToken() {
				errs = append(errs, fmt.Errorf("%s.units: %s: expected token units only", f, u))
			}
		}
		if err := g.Match.validate(f + ".match"); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Overage > OverageBlock {
		errs = append(errs, fmt.Errorf("plan.overage: %d: expected bill or block", p.Overage))
	}
	if p.Credits > CreditsIgnored {
		errs = append(errs, fmt.Errorf("plan.credits: %d: expected apply or ignored", p.Credits))
	}
	if err := validateThresholds("plan.thresholds", p.Thresholds); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// clone returns a deep copy, so that an account never shares slices with
// a command the caller may reuse.
func (p *Plan) clone() Plan {
	c := *p
	c.TokenGroups = slices.Clone(p.TokenGroups)
	for i := range c.TokenGroups {
		c.TokenGroups[i].Match = c.TokenGroups[i].Match.clone()
	}
	c.Thresholds = slices.Clone(p.Thresholds)
	return c
}

func (m Match) clone() Match {
	return Match{PriceKeys: slices.Clone(m.PriceKeys), Providers: slices.Clone(m.Providers), Dimensions: slices.Clone(m.Dimensions)}
}

// samePlan reports whether two plans are the same version of the same plan.
func samePlan(a, b *Plan) bool { return a.ID == b.ID && a.Version == b.Version }

// calendarAnchor anchors the periods of an account that has no plan yet
// (the zero Plan: pure usage-based): calendar months, UTC.
func calendarAnchor() time.Time { return time.Unix(0, 0).UTC() }
