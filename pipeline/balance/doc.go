// Package balance is the pure core of tariff's balances: plans, credit
// grants, draw-down, alerts, entitlement and statements for one customer
// account. It does no I/O, reads no clock and keeps no globals: time
// arrives with the inputs (an event's time, a command's time, AdvanceTo),
// and the same state plus the same inputs in the same order always gives
// the same state, alerts and draws. The pipeline owns persistence (the
// account's MarshalBinary value in the partition's Badger state and
// changelog, written with the batch's offsets), delivery of alerts, and
// the entitlement API.
//
// # Model
//
// A Plan (immutable, versioned) has a billing Cycle (monthly on the
// anchor's day of month, clamped to short months, or a fixed interval), a
// fixed Fee per period, an included Allowance in money and/or TokenGroups
// (included tokens per period for a set of price keys, providers or
// dimensions, counting chosen token units), an Overage policy (bill or
// block), a Credits policy and default alert Thresholds. The four pricing
// models are configurations of it: pure usage-based is the zero Plan;
// prepaid is grants on a plan with OverageBlock; a subscription is Fee
// with Allowance or TokenGroups; a hybrid is any mix, one plan per
// segment.
//
// An Account holds its plan (a copy, so replay never depends on a
// catalogue), its cycle anchor, the current period, what is left of the
// allowances, its grants, the period's totals, the pause state, the alert
// state and the ids of its last 32 commands. An account that has seen no
// plan is on the zero Plan with calendar-month periods.
//
// # Draw-down
//
// ApplyUsage takes a rated event's exact charge and covers it, in order:
//
//  1. included tokens of the first token group that matches the event and
//     has tokens left, line by line in unit order; the charge of covered
//     tokens is not billed (a line covered in part is split at its exact
//     per-token charge);
//  2. the money allowance;
//  3. grants whose restriction matches, by Priority (lower first), then
//     earliest expiry (none last), then arrival; only when the plan's
//     credits apply;
//  4. overage; on a blocking plan, blocked overage: the usage happened, so
//     it is recorded and billed like overage unless the seller waives it,
//     and the account is paused.
//
// No source goes below zero; the Draws of an event add up to its charge
// exactly. Credit expires at ExpiresAt exactly (usable strictly before),
// found by AdvanceTo even without usage; NextChange says when the next
// time-driven change is due. Usage timed before the current period counts
// in the current one (closed periods never reopen) and is reported as
// LateCharge, which is what separates a statement from ClickHouse's
// totals by event time.
//
// # Plan changes
//
// A plan change takes effect at its EffectiveAt, or at once when that is
// zero or already past (never retroactively: what was drawn stays drawn).
//
//   - Same cycle, no new anchor: the period goes on. The new plan's fee
//     and allowances are prorated by the time left in the period. The old
//     plan's fee is not refunded (fees are billed in advance) and its
//     unused allowance lapses.
//   - A new anchor, another cycle, or the account's first plan: the period
//     closes at the change and a new one starts there, ending at the new
//     cycle's next boundary; fee and allowances are prorated by the part
//     of that nominal period that is left (in full when the change is at
//     the anchor).
//   - A change scheduled at a period boundary is applied before the next
//     period opens: nothing in the old period, the full fee in the new.
//
// Proration is by the nanosecond and truncates toward zero at the
// Amount's resolution (10^-28 USD) and at whole tokens. That is the
// definition of a prorated amount, not invoice rounding.
//
// # Alerts
//
// After every input the account compares its levels with its state: every
// percent threshold on every allowance (money, each token group), every
// amount threshold on the money balance (money allowance left plus usable
// credits, restricted grants included), zero (no money, no included
// tokens left), and the pause state. A level fires once when crossed
// downward and re-arms only when the balance rises above it again (a
// top-up, a plan change, a new period); re-arming is silent, except that
// leaving zero after a zero alert is a recovery alert. Thresholds set (or
// reset by a plan change) below the current balance start fired, silently.
// An account that never had a balance has no zero alert to give.
//
// An alert's Key hashes the customer, the kind, the threshold and its
// crossing number, never the cause or the time, so the same crossing
// reached again on replay (even through another input, a usage event
// instead of a tick) carries the same key: receivers deduplicate on it.
// Alerts, draws and closed periods are returned in Effects; publish them
// only after the state that produced them is durable.
//
// # Commands
//
// Grants, voids, plan changes, thresholds and pause overrides arrive as
// Commands in the customer's stream. A command id among the account's
// last 32 is a no-op; beyond that, commands are idempotent by content (a
// grant id already held, a void already done, the plan version in force).
// A grant that makes anything available lifts an automatic pause at once.
//
// # Entitlement
//
// Entitlement(now) answers from the account without allocating; View()
// copies what it needs into an immutable value for readers on other
// goroutines. Both count credit expiring by now out and, past the
// period's end, the next period's allowances in.
//
// # Rounding
//
// Balances, draws and period totals are exact rating.Amounts. The only
// rounding to the currency's minor unit is BuildStatement, with the mode
// it is given (DefaultRounding: half-even): each presented amount is its
// exact value rounded once, and AmountDue is the exact total rounded once,
// with a rounding adjustment line so the presented lines add up.
//
// # Limits
//
// Fees, allowances, grants and threshold amounts are at most 10^7 USD,
// one account's usage in one period at most 10^9 USD, grants per account
// 256, token groups 16, thresholds 8, scheduled plan changes 8, plan
// changes per period 64, times within [1971, 2200). Within them every sum
// is exact and no method can overflow or panic; beyond them an input is
// refused with an error naming the field.
package balance
