package balance

import (
	"errors"
	"fmt"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// Grant is prepaid credit: a pack bought up front or a top-up. Usage that
// no allowance covers draws from grants by Priority (lower first), then
// earliest expiry (no expiry last), then the order they were granted.
type Grant struct {
	ID     string        `json:"id"`
	Amount rating.Amount `json:"amount"`
	// Currency must be Currency (or empty, meaning Currency).
	Currency string `json:"currency,omitempty"`
	// Priority orders draws: lower is drawn first. The zero value is the
	// highest priority.
	Priority int32 `json:"priority,omitempty"`
	// ExpiresAt is when the credit left stops counting (zero: never). A
	// grant is usable strictly before it.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Restrict limits the grant to some models, providers or dimensions;
	// the zero Match allows all usage.
	Restrict Match `json:"restrict,omitzero"`
}

// Times outside [1971, 2200) are refused: they are typing mistakes, and
// staying inside keeps every time exact in int64 nanoseconds since 1970.
const (
	minTimeUnix = 31536000   // 1971-01-01T00:00:00Z
	maxTimeUnix = 7258118400 // 2200-01-01T00:00:00Z
)

func timeInRange(t time.Time) bool {
	s := t.Unix()
	return s >= minTimeUnix && s < maxTimeUnix
}

func checkTime(field string, t time.Time, optional bool) error {
	if t.IsZero() {
		if optional {
			return nil
		}
		return fmt.Errorf("%s: missing time", field)
	}
	if !timeInRange(t) {
		return fmt.Errorf("%s: %s: expected a time from 1971 to 2199", field, t.UTC().Format(time.RFC3339))
	}
	return nil
}

// Validate reports every bad field at once.
func (g *Grant) Validate() error {
	var errs []error
	if g.ID == "" || len(g.ID) > schemas.MaxIDLen {
		errs = append(errs, fmt.Errorf("grant.id: %q: expected 1 to %d bytes", g.ID, schemas.MaxIDLen))
	}
	if err := checkAmount("grant.amount", g.Amount, true); err != nil {
		errs = append(errs, err)
	}
	if g.Currency != "" && g.Currency != Currency {
		errs = append(errs, fmt.Errorf("grant.currency: %q: expected %s (rated usage is in %s)", g.Currency, Currency, Currency))
	}
	if err := checkTime("grant.expires_at", g.ExpiresAt, true); err != nil {
		errs = append(errs, err)
	}
	if err := g.Restrict.validate("grant.restrict"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// grantState is a grant in an account: what is left, and what happened to
// it in the current period (for the statement).
type grantState struct {
	Grant
	seq       uint64    // order of arrival, the last tie-breaker
	grantedAt time.Time // account time the grant arrived
	remaining rating.Amount
	voided    bool
	expired   bool
	// This period's movements.
	granted, drawn, expiredAmt, voidedAmt rating.Amount
}

func (g *grantState) live() bool { return !g.voided && !g.expired && g.remaining.Sign() > 0 }

// touched reports whether the grant moved in the current period.
func (g *grantState) touched() bool {
	return !g.granted.IsZero() || !g.drawn.IsZero() || !g.expiredAmt.IsZero() || !g.voidedAmt.IsZero()
}

// drawsBefore is the draw order: priority, then earliest expiry (none
// last), then arrival.
func drawsBefore(a, b *grantState) bool {
	if a.Priority != b.Priority {
		return a.Priority < b.Priority
	}
	ae, be := a.ExpiresAt.IsZero(), b.ExpiresAt.IsZero()
	if ae != be {
		return be
	}
	if !ae && !a.ExpiresAt.Equal(b.ExpiresAt) {
		return a.ExpiresAt.Before(b.ExpiresAt)
	}
	return a.seq < b.seq
}
