package balance

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tariff-dev/tariff/rating"
)

// PackedCredits is how many usable credits a PackedView holds. Two keep
// the packed form at 120 bytes: within the 128 bytes Go maps store
// inline, with room for a caller's partition number.
// Accounts with more usable credits than this are rare; their views do
// not pack (Pack reports it) and are kept whole by the caller.
const PackedCredits = 2

// PackedView is a View without pointers: times as Unix nanoseconds (0 for
// the zero time), the plan id as a small interned number, flags in a
// byte. Arrays or maps of PackedViews hold nothing the garbage collector
// must look into, where Views cost several objects and pointers per
// customer on every GC cycle.
// Its Entitlement answers exactly as the View's it was packed from.
type PackedView struct {
	moneyLeft, nextMoney   rating.Amount
	periodEnd, clock       int64 // Unix nanoseconds; 0: zero time
	tokensLeft, nextTokens int64
	planVersion            uint32
	plan                   uint16 // index in planIDs; 0: no plan
	flags                  uint8
	nCredits               uint8
	credits                [PackedCredits]packedCredit
}

type packedCredit struct {
	expires int64 // Unix nanoseconds; 0: never
	amount  rating.Amount
}

// Bits of PackedView.flags; the pause override takes bits 3 and 4.
const (
	flagPaused = 1 << iota
	flagAutoPaused
	flagOverage
	overrideShift = iota
	overrideMask  = 3
)

// planIDs interns plan ids for PackedView: a deployment has a handful of
// plans, so a process-wide table stays small. ids only grows, and is
// replaced whole (copy on write), so Unpack reads it without a lock.
var planIDs struct {
	mu    sync.RWMutex
	index map[string]uint16
	ids   atomic.Pointer[[]string] // ids[0] is ""
}

// maxPlanIDs bounds the intern table to its index type; a view whose plan
// id does not fit is not packed.
const maxPlanIDs = 1 << 16

func internPlan(id string) (uint16, bool) {
	if id == "" {
		return 0, true
	}
	planIDs.mu.RLock()
	n, ok := planIDs.index[id]
	planIDs.mu.RUnlock()
	if ok {
		return n, true
	}
	planIDs.mu.Lock()
	defer planIDs.mu.Unlock()
	if n, ok := planIDs.index[id]; ok {
		return n, true
	}
	var old []string
	if p := planIDs.ids.Load(); p != nil {
		old = *p
	} else {
		old = []string{""}
	}
	if len(old) >= maxPlanIDs {
		return 0, false
	}
	ids := make([]string, len(old)+1, len(old)+1+len(old)/4)
	copy(ids, old)
	ids[len(old)] = id
	if planIDs.index == nil {
		planIDs.index = make(map[string]uint16)
	}
	n = uint16(len(old))
	planIDs.index[id] = n
	planIDs.ids.Store(&ids)
	return n, true
}

func planID(n uint16) string {
	if n == 0 {
		return ""
	}
	return (*planIDs.ids.Load())[n]
}

// packTime returns t as Unix nanoseconds, 0 for the zero time; false when
// t has no such form (outside int64 nanoseconds, or exactly the epoch,
// which 0 already means). Account times are within [1971, 2200), so this
// only guards the invariant.
func packTime(t time.Time) (int64, bool) {
	if t.IsZero() {
		return 0, true
	}
	n := t.UnixNano()
	if n == 0 || !time.Unix(0, n).Equal(t) {
		return 0, false
	}
	return n, true
}

func unpackTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// beforeNano is now.Before(time.Unix(0, n)), exact for every now (its
// UnixNano would be undefined past 2262) and without building a Time.
func beforeNano(now time.Time, n int64) bool {
	s, ns := n/1e9, n%1e9
	if ns < 0 {
		s, ns = s-1, ns+1e9
	}
	sec := now.Unix()
	return sec < s || sec == s && int64(now.Nanosecond()) < ns
}

// Pack returns the view's packed form. It is false, and the packed form
// unusable, when the view has more than PackedCredits usable credits (or,
// never for an account's view, a time or plan id that does not pack):
// keep the View itself then.
func (v *View) Pack() (PackedView, bool) {
	var p PackedView
	if len(v.credits) > PackedCredits {
		return PackedView{}, false
	}
	var ok [3]bool
	p.periodEnd, ok[0] = packTime(v.periodEnd)
	p.clock, ok[1] = packTime(v.clock)
	p.plan, ok[2] = internPlan(v.planID)
	if !ok[0] || !ok[1] || !ok[2] {
		return PackedView{}, false
	}
	for i, c := range v.credits {
		exp, ok := packTime(c.expires)
		if !ok {
			return PackedView{}, false
		}
		p.credits[i] = packedCredit{expires: exp, amount: c.amount}
	}
	p.nCredits = uint8(len(v.credits))
	p.moneyLeft, p.nextMoney = v.moneyLeft, v.nextMoney
	p.tokensLeft, p.nextTokens = v.tokensLeft, v.nextTokens
	p.planVersion = v.planVersion
	if v.paused {
		p.flags |= flagPaused
	}
	if v.autoPaused {
		p.flags |= flagAutoPaused
	}
	if v.overageAllowed {
		p.flags |= flagOverage
	}
	p.flags |= uint8(v.override&overrideMask) << overrideShift
	return p, true
}

// Unpack returns the View that p was packed from; its times are in UTC.
// It allocates the credit slice when there are credits.
func (p *PackedView) Unpack() View {
	v := View{
		paused:         p.flags&flagPaused != 0,
		autoPaused:     p.flags&flagAutoPaused != 0,
		override:       PauseOverride(p.flags >> overrideShift & overrideMask),
		overageAllowed: p.flags&flagOverage != 0,
		periodEnd:      unpackTime(p.periodEnd),
		moneyLeft:      p.moneyLeft,
		tokensLeft:     p.tokensLeft,
		nextMoney:      p.nextMoney,
		nextTokens:     p.nextTokens,
		planID:         planID(p.plan),
		planVersion:    p.planVersion,
		clock:          unpackTime(p.clock),
	}
	if p.nCredits > 0 {
		v.credits = make([]credit, p.nCredits)
		for i := range v.credits {
			c := &p.credits[i]
			v.credits[i] = credit{expires: unpackTime(c.expires), amount: c.amount}
		}
	}
	return v
}

// Entitlement is p.Unpack().Entitlement(now), computed on the packed form
// without allocating.
func (p *PackedView) Entitlement(now time.Time) Entitlement {
	var credits rating.Amount
	for i := range int(p.nCredits) {
		if c := &p.credits[i]; c.expires == 0 || beforeNano(now, c.expires) {
			credits = mustAdd(credits, c.amount)
		}
	}
	money, tokens := p.moneyLeft, p.tokensLeft
	rolled := p.periodEnd != 0 && !beforeNano(now, p.periodEnd)
	if rolled {
		money, tokens = p.nextMoney, p.nextTokens
	}
	liftable := PauseOverride(p.flags>>overrideShift&overrideMask) == PauseAuto && p.flags&flagAutoPaused != 0
	return answer(p.flags&flagPaused != 0, p.flags&flagOverage != 0, rolled && liftable, mustAdd(money, credits), tokens)
}
