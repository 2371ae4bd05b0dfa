package balance

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/rating"
)

// PeriodUsage is the exact record of one billing period of one account:
// what the statement is built from. All amounts are exact; nothing is
// rounded here.
//
// UsageCharge is the charge of every event applied in the period and
// always equals Included + the tokens' Charge + the grants' Drawn +
// Overage + BlockedOverage. It agrees with ClickHouse's sum(charge) over
// the same customer and period except for late events: LateCharge is the
// part timed before Start (ClickHouse counts it in its own period).
type PeriodUsage struct {
	CustomerID string    `json:"customer_id"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"` // scheduled end, or when a plan change closed it
	Fees       []FeeLine `json:"fees,omitempty"`
	// Allowance is the money allowance the period gave (prorated parts
	// across plan changes); Included is how much of it usage drew.
	Allowance      rating.Amount `json:"allowance"`
	Included       rating.Amount `json:"included"`
	Tokens         []TokenUsage  `json:"tokens,omitempty"`
	Grants         []GrantUsage  `json:"grants,omitempty"`
	Overage        rating.Amount `json:"overage"`
	BlockedOverage rating.Amount `json:"blocked_overage"`
	UsageCharge    rating.Amount `json:"usage_charge"`
	LateCharge     rating.Amount `json:"late_charge"`
	Events         int64         `json:"events"`
}

// FeeLine is one plan's fixed fee for (part of) the period, billed in
// advance: the full fee at the start of a period, a prorated fee when a
// plan starts during one.
type FeeLine struct {
	PlanID      string        `json:"plan_id"`
	PlanVersion uint32        `json:"plan_version"`
	From        time.Time     `json:"from"`
	Amount      rating.Amount `json:"amount"`
}

// TokenUsage is one token group's allowance in the period.
type TokenUsage struct {
	PlanID    string        `json:"plan_id"`
	Group     string        `json:"group"`
	Allowance int64         `json:"allowance"`
	Used      int64         `json:"used"`
	Charge    rating.Amount `json:"charge"` // charge of the covered tokens, not billed
}

// GrantUsage is one grant's movements in the period.
type GrantUsage struct {
	GrantID   string        `json:"grant_id"`
	Granted   rating.Amount `json:"granted"` // added in this period
	Drawn     rating.Amount `json:"drawn"`
	Expired   rating.Amount `json:"expired"`
	Voided    rating.Amount `json:"voided"`
	Remaining rating.Amount `json:"remaining"` // at the period's end
}

// DefaultRounding is the rounding mode statements use unless the seller
// chooses another: half-even, unbiased across many invoices.
const DefaultRounding = rating.RoundHalfEven

// Statement is a period as presented: every amount rounded to the
// currency's minor unit.
type Statement struct {
	CustomerID  string              `json:"customer_id"`
	Currency    string              `json:"currency"`
	Start       time.Time           `json:"start"`
	End         time.Time           `json:"end"`
	Rounding    rating.RoundingMode `json:"-"`
	Fees        []StatementFee      `json:"fees,omitempty"`
	Fee         decimal.Decimal     `json:"fee"`
	Included    decimal.Decimal     `json:"included"` // usage covered by allowance and included tokens
	Tokens      []StatementTokens   `json:"tokens,omitempty"`
	Credits     []StatementCredit   `json:"credits,omitempty"`
	CreditsUsed decimal.Decimal     `json:"credits_used"`
	Overage     decimal.Decimal     `json:"overage"`
	Blocked     decimal.Decimal     `json:"blocked_overage"`
	UsageCharge decimal.Decimal     `json:"usage_charge"`
	LateCharge  decimal.Decimal     `json:"late_charge"`
	// AmountDue is fee + overage + blocked overage, rounded once from the
	// exact sum. Adjustment is AmountDue minus the sum of the rounded
	// Fee, Overage and Blocked lines, so the presented lines add up.
	AmountDue  decimal.Decimal `json:"amount_due"`
	Adjustment decimal.Decimal `json:"rounding_adjustment"`
}

type StatementFee struct {
	PlanID      string          `json:"plan_id"`
	PlanVersion uint32          `json:"plan_version"`
	From        time.Time       `json:"from"`
	Amount      decimal.Decimal `json:"amount"`
}

type StatementTokens struct {
	PlanID    string          `json:"plan_id"`
	Group     string          `json:"group"`
	Allowance int64           `json:"allowance"`
	Used      int64           `json:"used"`
	Value     decimal.Decimal `json:"value"`
}

type StatementCredit struct {
	GrantID   string          `json:"grant_id"`
	Granted   decimal.Decimal `json:"granted"`
	Drawn     decimal.Decimal `json:"drawn"`
	Expired   decimal.Decimal `json:"expired"`
	Voided    decimal.Decimal `json:"voided"`
	Remaining decimal.Decimal `json:"remaining"`
}

// BuildStatement presents a period. It is the one place balances are
// rounded: every amount shown is its exact value rounded once, with mode,
// to MinorDigits; totals are summed exactly and then rounded, never summed
// from rounded parts. An overflow while summing exact totals (beyond
// 1.7e10 USD) panics as a broken invariant: period totals are bounded by
// the checks in ApplyUsage and the plan limits.
func BuildStatement(p *PeriodUsage, mode rating.RoundingMode) Statement {
	r := func(a rating.Amount) decimal.Decimal { return a.RoundForInvoice(MinorDigits, mode) }
	s := Statement{CustomerID: p.CustomerID, Currency: Currency, Start: p.Start, End: p.End, Rounding: mode}
	var fee, included, credits rating.Amount
	for _, f := range p.Fees {
		fee = mustAdd(fee, f.Amount)
		s.Fees = append(s.Fees, StatementFee{PlanID: f.PlanID, PlanVersion: f.PlanVersion, From: f.From, Amount: r(f.Amount)})
	}
	included = p.Included
	for _, t := range p.Tokens {
		included = mustAdd(included, t.Charge)
		s.Tokens = append(s.Tokens, StatementTokens{PlanID: t.PlanID, Group: t.Group, Allowance: t.Allowance, Used: t.Used, Value: r(t.Charge)})
	}
	for _, g := range p.Grants {
		credits = mustAdd(credits, g.Drawn)
		s.Credits = append(s.Credits, StatementCredit{GrantID: g.GrantID, Granted: r(g.Granted), Drawn: r(g.Drawn),
			Expired: r(g.Expired), Voided: r(g.Voided), Remaining: r(g.Remaining)})
	}
	s.Fee, s.Included, s.CreditsUsed = r(fee), r(included), r(credits)
	s.Overage, s.Blocked = r(p.Overage), r(p.BlockedOverage)
	s.UsageCharge, s.LateCharge = r(p.UsageCharge), r(p.LateCharge)
	due := mustAdd(mustAdd(fee, p.Overage), p.BlockedOverage)
	s.AmountDue = r(due)
	s.Adjustment = s.AmountDue.Sub(s.Fee).Sub(s.Overage).Sub(s.Blocked)
	return s
}
