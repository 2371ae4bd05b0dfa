package balance

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// CommandKind says what a command does.
type CommandKind uint8

const (
	// CommandGrant adds a Grant (a prepaid pack or a top-up). It lifts an
	// automatic pause at once when it makes anything available.
	CommandGrant CommandKind = iota + 1
	// CommandVoidGrant cancels what is left of grant GrantID.
	CommandVoidGrant
	// CommandChangePlan puts Plan in force at EffectiveAt (now when zero
	// or past), optionally re-anchoring the cycle at Anchor.
	CommandChangePlan
	// CommandSetThresholds replaces the account's alert thresholds; nil
	// Thresholds returns to the plan's.
	CommandSetThresholds
	// CommandSetPause sets the pause override.
	CommandSetPause
)

var commandNames = []string{"", "grant", "void_grant", "change_plan", "set_thresholds", "set_pause"}

func (k CommandKind) String() string               { return enumString(commandNames, uint8(k), "command") }
func (k CommandKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *CommandKind) UnmarshalText(b []byte) error {
	v, err := enumParse(commandNames, b, "command")
	*k = CommandKind(v)
	return err
}

// Command is an administrative change to one account. Commands travel on
// Kafka keyed by customer id, so they are ordered with the customer's
// usage; the JSON form is the wire form.
type Command struct {
	// ID is the idempotency key: a command id applied before is a no-op.
	ID         string      `json:"id"`
	CustomerID string      `json:"customer_id"`
	Kind       CommandKind `json:"kind"`
	// At is when the command was issued (the admin API's clock); applying
	// it advances the account to At first.
	At time.Time `json:"at"`

	Grant   *Grant `json:"grant,omitempty"`    // CommandGrant
	GrantID string `json:"grant_id,omitempty"` // CommandVoidGrant

	Plan        *Plan     `json:"plan,omitempty"`        // CommandChangePlan
	EffectiveAt time.Time `json:"effective_at,omitzero"` // CommandChangePlan; zero: at once
	Anchor      time.Time `json:"anchor,omitzero"`       // CommandChangePlan; zero: keep the cycle

	Thresholds []Threshold   `json:"thresholds"`      // CommandSetThresholds
	Pause      PauseOverride `json:"pause,omitempty"` // CommandSetPause
}

// MaxPending bounds scheduled plan changes per account.
const MaxPending = 8

// Validate reports every bad field at once.
func (c *Command) Validate() error {
	var errs []error
	if c.ID == "" || len(c.ID) > schemas.MaxIDLen {
		errs = append(errs, fmt.Errorf("command.id: %q: expected 1 to %d bytes", c.ID, schemas.MaxIDLen))
	}
	if c.CustomerID == "" || len(c.CustomerID) > schemas.MaxIDLen {
		errs = append(errs, fmt.Errorf("command.customer_id: %q: expected 1 to %d bytes", c.CustomerID, schemas.MaxIDLen))
	}
	if err := checkTime("command.at", c.At, false); err != nil {
		errs = append(errs, err)
	}
	switch c.Kind {
	case CommandGrant:
		if c.Grant == nil {
			errs = append(errs, errors.New("command.grant: missing grant"))
		} else if err := c.Grant.Validate(); err != nil {
			errs = append(errs, err)
		}
	case CommandVoidGrant:
		if c.GrantID == "" || len(c.GrantID) > schemas.MaxIDLen {
			errs = append(errs, fmt.Errorf("command.grant_id: %q: expected 1 to %d bytes", c.GrantID, schemas.MaxIDLen))
		}
	case CommandChangePlan:
		if c.Plan == nil {
			errs = append(errs, errors.New("command.plan: missing plan"))
		} else if err := c.Plan.Validate(); err != nil {
			errs = append(errs, err)
		}
		if err := checkTime("command.effective_at", c.EffectiveAt, true); err != nil {
			errs = append(errs, err)
		}
		if err := checkTime("command.anchor", c.Anchor, true); err != nil {
			errs = append(errs, err)
		}
	case CommandSetThresholds:
		if err := validateThresholds("command.thresholds", c.Thresholds); err != nil {
			errs = append(errs, err)
		}
	case CommandSetPause:
		if c.Pause > PauseLifted {
			errs = append(errs, fmt.Errorf("command.pause: %d: expected auto, pause or resume", c.Pause))
		}
	default:
		errs = append(errs, fmt.Errorf("command.kind: %d: expected grant, void_grant, change_plan, set_thresholds or set_pause", c.Kind))
	}
	return errors.Join(errs...)
}

// Apply applies one command in stream order and reports whether it
// changed anything. Idempotency has two layers:
//
//   - the ids of the last appliedIDs commands are kept in the account, so
//     a redelivered or retried command within that window is a no-op;
//   - beyond it, the commands are idempotent by content: a grant whose id
//     the account holds, a void of a grant already voided or expired, and
//     a change to the plan version in force (with no new anchor) change
//     nothing. Grants leave the account at the end of the period after
//     they are finished, so the admin API should also refuse a reused
//     grant id.
//
// An invalid command (see Validate), a void of an unknown grant, a grant
// already expired at the account's clock, or one beyond MaxGrants is
// refused with an error and leaves the account unchanged, except that its
// clock may have advanced to c.At.
func (a *Account) Apply(c *Command, fx *Effects) (bool, error) {
	if fx == nil {
		fx = &Effects{}
	}
	if err := a.checkCustomer(c.CustomerID, "command "+c.ID); err != nil {
		return false, err
	}
	if err := c.Validate(); err != nil {
		return false, fmt.Errorf("command %s: %w", c.ID, err)
	}
	h := commandHash(c.ID)
	if a.applied.has(h) {
		return false, nil
	}
	a.advance(c.At, fx)
	now := a.clock
	changed := true
	var err error
	switch c.Kind {
	case CommandGrant:
		changed, err = a.grant(c.Grant, now)
	case CommandVoidGrant:
		changed, err = a.void(c.GrantID)
	case CommandChangePlan:
		changed, err = a.schedulePlan(c, now, fx)
	case CommandSetThresholds:
		a.customThresholds = c.Thresholds != nil
		a.thresholds = normalizeThresholds(c.Thresholds)
		a.resetChecks()
	case CommandSetPause:
		changed = a.override != c.Pause
		a.override = c.Pause
	}
	if err != nil {
		return false, fmt.Errorf("command %s: %w", c.ID, err)
	}
	a.applied.add(h)
	if changed {
		a.evaluate(Cause{Kind: CauseCommand, ID: c.ID}, now, fx)
	}
	return changed, nil
}

func (a *Account) grant(g *Grant, now time.Time) (bool, error) {
	for i := range a.grants {
		if a.grants[i].ID == g.ID {
			return false, nil
		}
	}
	if !g.ExpiresAt.IsZero() && !g.ExpiresAt.After(now) {
		return false, fmt.Errorf("grant.expires_at: %s: expected a time after the account's clock %s",
			g.ExpiresAt.UTC().Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	}
	if len(a.grants) >= MaxGrants {
		return false, fmt.Errorf("grant %s: account holds %d grants: %w", g.ID, len(a.grants), ErrLimit)
	}
	a.grantSeq++
	gs := grantState{Grant: *g, seq: a.grantSeq, grantedAt: now, remaining: g.Amount, granted: g.Amount}
	gs.Currency = Currency
	gs.ExpiresAt = gs.ExpiresAt.UTC()
	gs.Restrict = g.Restrict.clone()
	i := 0
	for i < len(a.grants) && drawsBefore(&a.grants[i], &gs) {
		i++
	}
	a.grants = slices.Insert(a.grants, i, gs)
	a.liftPause()
	return true, nil
}

func (a *Account) void(id string) (bool, error) {
	for i := range a.grants {
		g := &a.grants[i]
		if g.ID != id {
			continue
		}
		if g.voided || g.expired {
			return false, nil
		}
		g.voided = true
		g.voidedAmt = mustAdd(g.voidedAmt, g.remaining)
		g.remaining = rating.Amount{}
		return true, nil
	}
	return false, fmt.Errorf("grant_id %q: %w", id, ErrUnknownGrant)
}

// schedulePlan applies a plan change now, or keeps it for AdvanceTo when
// it is effective later. A past effective time means now: balances drawn
// since cannot be redrawn, so changes are never retroactive.
func (a *Account) schedulePlan(c *Command, now time.Time, fx *Effects) (bool, error) {
	if c.EffectiveAt.After(now) {
		if len(a.pending) >= MaxPending || len(a.cur.fees) >= MaxFeeLines {
			return false, fmt.Errorf("plan change: %d changes already scheduled: %w", len(a.pending), ErrLimit)
		}
		pc := pendingChange{commandID: c.ID, plan: c.Plan.clone(), effective: c.EffectiveAt.UTC(), anchor: c.Anchor.UTC()}
		if c.Anchor.IsZero() {
			pc.anchor = time.Time{}
		}
		i := 0
		for i < len(a.pending) && !a.pending[i].effective.After(pc.effective) {
			i++
		}
		a.pending = slices.Insert(a.pending, i, pc)
		return true, nil
	}
	if c.Anchor.IsZero() && a.assigned && samePlan(c.Plan, &a.plan) {
		return false, nil
	}
	if len(a.cur.fees) >= MaxFeeLines {
		return false, fmt.Errorf("plan change: %d plan changes this period: %w", len(a.cur.fees), ErrLimit)
	}
	a.changePlan(c.Plan, now, c.Anchor, fx)
	return true, nil
}

// appliedIDs is how many recent command ids an account remembers. Admin
// API retries and redelivered batches repeat a command within a few
// commands of the original; 32 leaves room while keeping the state small
// (16 bytes each).
const appliedIDs = 32

// idRing holds 128-bit hashes of the last appliedIDs command ids. A hash
// collision between two live commands of one customer has probability
// about 2^-128 × 32, far below any hardware error rate.
type idRing struct {
	ids  [][16]byte
	next int
}

func commandHash(id string) [16]byte {
	s := sha256.Sum256([]byte(id))
	var h [16]byte
	copy(h[:], s[:16])
	return h
}

func (r *idRing) has(h [16]byte) bool { return slices.Contains(r.ids, h) }

func (r *idRing) add(h [16]byte) {
	if len(r.ids) < appliedIDs {
		r.ids = append(r.ids, h)
		return
	}
	r.ids[r.next] = h
	r.next = (r.next + 1) % appliedIDs
}
