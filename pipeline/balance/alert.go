package balance

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/tariff-dev/tariff/rating"
)

// AlertKind says what an alert announces.
type AlertKind uint8

const (
	// AlertThreshold: a low-balance threshold was crossed downward.
	AlertThreshold AlertKind = iota
	// AlertZero: nothing is left: no money allowance, no usable credit,
	// no included tokens.
	AlertZero
	// AlertRecovery: after AlertZero, something is available again (a
	// top-up, a plan change, a new period).
	AlertRecovery
	// AlertPaused: the account is paused (blocked overage, exhaustion on
	// a blocking plan, or the seller's override).
	AlertPaused
	// AlertResumed: the pause ended.
	AlertResumed
)

var alertNames = []string{"threshold", "zero", "recovery", "paused", "resumed"}

func (k AlertKind) String() string               { return enumString(alertNames, uint8(k), "alert") }
func (k AlertKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *AlertKind) UnmarshalText(b []byte) error {
	v, err := enumParse(alertNames, b, "alert")
	*k = AlertKind(v)
	return err
}

// CauseKind says what kind of input made an alert happen.
type CauseKind uint8

const (
	CauseUsage    CauseKind = iota // a usage event (ID: its idempotency key)
	CauseCommand                   // a command (ID: the command id)
	CauseExpiry                    // a grant expired (ID: the grant id)
	CausePeriod                    // a new billing period began
	CauseSchedule                  // a scheduled plan change took effect (ID: its command id)
)

var causeNames = []string{"usage", "command", "expiry", "period", "schedule"}

func (k CauseKind) String() string               { return enumString(causeNames, uint8(k), "cause") }
func (k CauseKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *CauseKind) UnmarshalText(b []byte) error {
	v, err := enumParse(causeNames, b, "cause")
	*k = CauseKind(v)
	return err
}

// Cause is the input that produced an alert.
type Cause struct {
	Kind CauseKind `json:"kind"`
	ID   string    `json:"id,omitempty"`
}

// Alert is one crossing. Each crossing is announced exactly once per
// account state: a level re-arms only when the balance goes back above
// it (a top-up, a plan change, a new period), and the next crossing is a
// new alert with a new Seq.
//
// Key is the idempotency key receivers deduplicate on. It is derived from
// the customer, the kind, the threshold and the crossing's number, never
// from the cause or the time, so an input applied again after a crash (or
// a crossing reached on replay through another input) yields the same key.
type Alert struct {
	Key        string    `json:"key"`
	CustomerID string    `json:"customer_id"`
	Kind       AlertKind `json:"kind"`
	// Threshold and Bucket are set for AlertThreshold. Bucket is
	// "allowance" for the money allowance, the token group's name for a
	// token group, empty for an amount threshold (the whole balance).
	Threshold Threshold `json:"threshold,omitzero"`
	Bucket    string    `json:"bucket,omitempty"`
	// Balance is the money available after the input: money allowance
	// left plus usable credits. TokensLeft is the included tokens left.
	Balance    rating.Amount `json:"balance"`
	TokensLeft int64         `json:"tokens_left"`
	Paused     bool          `json:"paused"`
	Cause      Cause         `json:"cause"`
	// At is the time of the cause: the event's time, the command's time,
	// the expiry or the period boundary.
	At  time.Time `json:"at"`
	Seq uint32    `json:"seq"` // crossing number of this level
}

type checkState struct {
	fired bool
	count uint32
}

type zeroState struct {
	fired     bool // nothing is available
	announced bool // ... and an AlertZero said so (a recovery is owed)
	count     uint32
}

func (a *Account) effectiveThresholds() []Threshold {
	if a.customThresholds {
		return a.thresholds
	}
	return a.plan.Thresholds
}

// eachCheck visits every (threshold, bucket) level in emission order.
// bucket is -1 for the balance, 0 for the money allowance and g+1 for
// token group g. A percent threshold has one level per allowance.
func (a *Account) eachCheck(fn func(i int, t Threshold, bucket int)) {
	i := 0
	for _, t := range a.effectiveThresholds() {
		if t.Kind == ThresholdAmount {
			fn(i, t, -1)
			i++
			continue
		}
		if a.plan.Allowance.Sign() > 0 {
			fn(i, t, 0)
			i++
		}
		for g := range a.plan.TokenGroups {
			fn(i, t, g+1)
			i++
		}
	}
}

func (a *Account) numChecks() int {
	n := 0
	a.eachCheck(func(int, Threshold, int) { n++ })
	return n
}

// below reports whether a level is crossed: consumed ≥ percent of the
// allowance, or the balance at or below the amount. An allowance of zero
// (prorated away) has nothing to cross.
func (a *Account) below(t Threshold, bucket int, money rating.Amount) bool {
	switch {
	case bucket < 0:
		return money.Cmp(t.Amount) <= 0
	case bucket == 0:
		al := a.money.allowance
		if al.Sign() <= 0 {
			return false
		}
		return geScaled(mustSub(al, a.money.left), 100, al, int64(t.Percent))
	default:
		b := &a.tokens[bucket-1]
		if b.allowance <= 0 {
			return false
		}
		return geTokens(b.used, b.allowance, t.Percent)
	}
}

// resetChecks rebuilds the levels after the thresholds or the plan's
// allowances changed. Levels already crossed start fired, silently: a
// threshold set below the current balance is not a crossing. The new
// generation keeps the keys of later crossings distinct from earlier ones.
func (a *Account) resetChecks() {
	a.gen++
	money, _ := a.available()
	a.checks = a.checks[:0]
	a.eachCheck(func(_ int, t Threshold, bucket int) {
		a.checks = append(a.checks, checkState{fired: a.below(t, bucket, money)})
	})
}

// evaluate compares every level with the state after an input and emits
// an alert for each downward crossing, the zero alert, a recovery, and
// pause changes, in that order.
func (a *Account) evaluate(cause Cause, at time.Time, fx *Effects) {
	money, tokens := a.available()
	a.eachCheck(func(i int, t Threshold, bucket int) {
		st := &a.checks[i]
		switch below := a.below(t, bucket, money); {
		case below && !st.fired:
			st.fired = true
			st.count++
			fx.Alerts = append(fx.Alerts, a.newAlert(AlertThreshold, t, bucket, st.count, money, tokens, cause, at))
		case !below && st.fired:
			st.fired = false // re-armed
		}
	})
	switch zero := money.Sign() <= 0 && tokens <= 0; {
	case zero && !a.zero.fired:
		a.zero.fired, a.zero.announced = true, true
		a.zero.count++
		fx.Alerts = append(fx.Alerts, a.newAlert(AlertZero, Threshold{}, -1, a.zero.count, money, tokens, cause, at))
	case !zero && a.zero.fired:
		a.zero.fired = false
		if a.zero.announced {
			a.zero.announced = false
			a.recoveries++
			fx.Alerts = append(fx.Alerts, a.newAlert(AlertRecovery, Threshold{}, -1, a.recoveries, money, tokens, cause, at))
		}
	}
	if p := a.Paused(); p != a.pausedSeen {
		a.pausedSeen = p
		if p {
			a.pauses++
			fx.Alerts = append(fx.Alerts, a.newAlert(AlertPaused, Threshold{}, -1, a.pauses, money, tokens, cause, at))
		} else {
			a.resumes++
			fx.Alerts = append(fx.Alerts, a.newAlert(AlertResumed, Threshold{}, -1, a.resumes, money, tokens, cause, at))
		}
	}
}

func (a *Account) newAlert(k AlertKind, t Threshold, bucket int, seq uint32, money rating.Amount, tokens int64, cause Cause, at time.Time) Alert {
	al := Alert{CustomerID: a.customer, Kind: k, Balance: money, TokensLeft: tokens, Paused: a.Paused(),
		Cause: cause, At: at, Seq: seq}
	if k == AlertThreshold {
		al.Threshold = t
		switch {
		case bucket == 0:
			al.Bucket = "allowance"
		case bucket > 0:
			al.Bucket = a.plan.TokenGroups[bucket-1].Name
		}
	}
	al.Key = a.alertKey(k, t, bucket, seq)
	return al
}

// alertKey hashes what identifies a crossing: customer, kind, for a
// threshold its generation, bucket and level, and the crossing number.
func (a *Account) alertKey(k AlertKind, t Threshold, bucket int, seq uint32) string {
	b := make([]byte, 0, len(a.customer)+64)
	b = append(b, "tariff.balance.alert\x00"...)
	b = append(b, a.customer...)
	b = append(b, 0, byte(k))
	if k == AlertThreshold {
		b = binary.BigEndian.AppendUint32(b, a.gen)
		b = binary.BigEndian.AppendUint32(b, uint32(int32(bucket)))
		b = append(b, byte(t.Kind), t.Percent)
		b = t.Amount.AppendBinary(b)
	}
	b = binary.BigEndian.AppendUint32(b, seq)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
