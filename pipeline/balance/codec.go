package balance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// State format. An account is stored as one value (the pipeline keys it
// by partition and customer, like its other state, and writes it in the
// batch's Mutations). The first byte is the format version; a reader
// refuses versions it does not know rather than guess. Version 1:
//
//	integers   unsigned varints (signed ones zig-zag), booleans in flag bytes
//	strings    length, bytes
//	amounts    length n ≤ 16, then the n low bytes of the 16-byte
//	           two's-complement form (leading sign bytes dropped): exact,
//	           and $1.50 takes 13 bytes instead of 16
//	times      0 for the zero time, else zig-zag(Unix nanoseconds)+1, UTC
//
// then the fields in the order appendAccount writes them. Parsing checks
// every length against the bytes left before allocating, and the decoded
// account against the invariants the engine relies on, so garbage is an
// error, never a panic or a huge allocation.
const stateVersion = 1

// periodVersion is the format version of a stored PeriodUsage.
const periodVersion = 1

// ErrCorrupt means stored bytes are not a valid state of this format.
var ErrCorrupt = errors.New("corrupt balance state")

// MarshalBinary encodes the account.
func (a *Account) MarshalBinary() ([]byte, error) { return a.AppendBinary(nil), nil }

// AppendBinary appends the account's encoding to dst.
func (a *Account) AppendBinary(dst []byte) []byte {
	e := encoder{b: dst}
	e.u8(stateVersion)
	e.str(a.customer)
	e.flags(a.started, a.assigned, a.autoPaused, a.customThresholds, a.zero.fired, a.zero.announced, a.pausedSeen, a.prev != nil)
	e.time(a.clock)
	e.time(a.planFrom)
	e.time(a.anchor)
	e.time(a.start)
	e.time(a.end)
	e.plan(&a.plan)
	e.u8(uint8(a.override))
	e.amount(a.money.allowance)
	e.amount(a.money.left)
	e.uvarint(uint64(len(a.tokens)))
	for _, t := range a.tokens {
		e.varint(t.allowance)
		e.varint(t.used)
		e.amount(t.charge)
	}
	e.uvarint(uint64(len(a.grants)))
	for i := range a.grants {
		g := &a.grants[i]
		e.grant(&g.Grant)
		e.uvarint(g.seq)
		e.time(g.grantedAt)
		e.amount(g.remaining)
		e.flags(g.voided, g.expired)
		e.amount(g.granted)
		e.amount(g.drawn)
		e.amount(g.expiredAmt)
		e.amount(g.voidedAmt)
	}
	e.uvarint(a.grantSeq)
	e.uvarint(uint64(len(a.pending)))
	for i := range a.pending {
		p := &a.pending[i]
		e.str(p.commandID)
		e.plan(&p.plan)
		e.time(p.effective)
		e.time(p.anchor)
	}
	e.stats(&a.cur)
	if a.prev != nil {
		e.period(a.prev)
	}
	e.thresholds(a.thresholds)
	e.uvarint(uint64(a.gen))
	e.uvarint(uint64(len(a.checks)))
	for _, c := range a.checks {
		e.flags(c.fired)
		e.uvarint(uint64(c.count))
	}
	e.uvarint(uint64(a.zero.count))
	e.uvarint(uint64(a.recoveries))
	e.uvarint(uint64(a.pauses))
	e.uvarint(uint64(a.resumes))
	e.uvarint(uint64(len(a.applied.ids)))
	e.uvarint(uint64(a.applied.next))
	for _, h := range a.applied.ids {
		e.b = append(e.b, h[:]...)
	}
	return e.b
}

// UnmarshalBinary decodes an account written by MarshalBinary.
func (a *Account) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	if v := d.u8(); d.err == nil && v != stateVersion {
		return fmt.Errorf("%w: format version %d, expected %d", ErrCorrupt, v, stateVersion)
	}
	var n Account
	n.customer = d.str()
	var hasPrev bool
	d.flags(&n.started, &n.assigned, &n.autoPaused, &n.customThresholds, &n.zero.fired, &n.zero.announced, &n.pausedSeen, &hasPrev)
	n.clock = d.time()
	n.planFrom = d.time()
	n.anchor = d.time()
	n.start = d.time()
	n.end = d.time()
	n.plan = d.plan()
	n.override = PauseOverride(d.u8())
	n.money.allowance = d.amount()
	n.money.left = d.amount()
	if k := d.count(3); k > 0 {
		n.tokens = make([]tokenBucket, k)
		for i := range n.tokens {
			n.tokens[i] = tokenBucket{allowance: d.varint(), used: d.varint(), charge: d.amount()}
		}
	}
	if k := d.count(8); k > 0 {
		n.grants = make([]grantState, k)
		for i := range n.grants {
			g := &n.grants[i]
			g.Grant = d.grant()
			g.seq = d.uvarint()
			g.grantedAt = d.time()
			g.remaining = d.amount()
			d.flags(&g.voided, &g.expired)
			g.granted = d.amount()
			g.drawn = d.amount()
			g.expiredAmt = d.amount()
			g.voidedAmt = d.amount()
		}
	}
	n.grantSeq = d.uvarint()
	if k := d.count(4); k > 0 {
		n.pending = make([]pendingChange, k)
		for i := range n.pending {
			p := &n.pending[i]
			p.commandID = d.str()
			p.plan = d.plan()
			p.effective = d.time()
			p.anchor = d.time()
		}
	}
	n.cur = d.stats()
	if hasPrev {
		p := d.period()
		n.prev = &p
	}
	n.thresholds = d.thresholds()
	n.gen = d.u32()
	if k := d.count(2); k > 0 {
		n.checks = make([]checkState, k)
		for i := range n.checks {
			d.flags(&n.checks[i].fired)
			n.checks[i].count = d.u32()
		}
	}
	n.zero.count = d.u32()
	n.recoveries = d.u32()
	n.pauses = d.u32()
	n.resumes = d.u32()
	k := d.count(16)
	n.applied.next = int(d.uvarint())
	if k > 0 {
		n.applied.ids = make([][16]byte, k)
		for i := range n.applied.ids {
			copy(n.applied.ids[i][:], d.bytes(16))
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, d.err)
	}
	if err := n.check(); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	*a = n
	return nil
}

// check verifies the invariants the engine relies on (indexes in range,
// amounts bounded, the period's parts adding up to its usage), so that a
// decoded account can never make a method panic. It goes in stages: a
// later stage indexes what an earlier one checked.
func (a *Account) check() error {
	var errs []error
	bad := func(f string, args ...any) { errs = append(errs, fmt.Errorf(f, args...)) }
	if a.assigned {
		if err := a.plan.Validate(); err != nil {
			errs = append(errs, err)
		}
	} else if !isZeroPlan(&a.plan) {
		bad("plan %q without an assignment", a.plan.ID)
	}
	if a.override > PauseLifted {
		bad("pause override %d", a.override)
	}
	if len(a.tokens) != len(a.plan.TokenGroups) {
		bad("%d token buckets for %d groups", len(a.tokens), len(a.plan.TokenGroups))
	}
	if len(a.grants) > MaxGrants || len(a.pending) > MaxPending {
		bad("%d grants, %d pending plan changes", len(a.grants), len(a.pending))
	}
	if !a.customThresholds && len(a.thresholds) > 0 {
		bad("account thresholds without the override")
	}
	if err := validateThresholds("thresholds", a.thresholds); err != nil {
		errs = append(errs, err)
	}
	if len(a.applied.ids) > appliedIDs || a.applied.next < 0 || a.applied.next >= appliedIDs ||
		len(a.applied.ids) < appliedIDs && a.applied.next != 0 {
		bad("command id ring %d/%d", len(a.applied.ids), a.applied.next)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	if a.started {
		// Within these bounds no time difference saturates a Duration.
		epoch := calendarAnchor()
		for _, t := range []time.Time{a.clock, a.anchor, a.start, a.end} {
			if t.Before(epoch) || t.Unix() >= maxTimeUnix+400*24*3600 {
				bad("time %s out of range", t)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		if !a.start.Before(a.end) || a.clock.Before(a.start) || !a.clock.Before(a.end) {
			bad("period [%s, %s) with clock %s", a.start, a.end, a.clock)
		} else if ps, pe := a.plan.Cycle.periodAt(a.anchor, a.start); ps.After(a.start) || !pe.Equal(a.end) {
			bad("period [%s, %s) off its cycle", a.start, a.end)
		}
	} else if !a.clock.IsZero() || len(a.tokens) > 0 || len(a.grants) > 0 || len(a.pending) > 0 || a.prev != nil {
		bad("state on an account that has not started")
	}
	max := maxAmount()
	inRange := func(f string, x rating.Amount) {
		if x.Sign() < 0 || x.Cmp(max) > 0 {
			bad("%s %s out of range", f, x)
		}
	}
	inRange("allowance", a.money.allowance)
	inRange("allowance left", a.money.left)
	if a.money.left.Cmp(a.money.allowance) > 0 {
		bad("allowance left %s above %s", a.money.left, a.money.allowance)
	}
	// What the period gave covers what was drawn plus what is left.
	if s, ok := a.cur.included.Add(a.money.left); !ok || s.Cmp(a.cur.allowance) > 0 {
		bad("allowance drawn %s and left %s exceed the period's %s", a.cur.included, a.money.left, a.cur.allowance)
	}
	for i, t := range a.tokens {
		if t.used < 0 || t.used > t.allowance || t.allowance > MaxTokens {
			bad("token bucket %d: %d of %d", i, t.used, t.allowance)
		}
	}
	for i := range a.grants {
		g := &a.grants[i]
		if err := g.Validate(); err != nil {
			errs = append(errs, err)
		}
		for _, x := range []rating.Amount{g.remaining, g.granted, g.drawn, g.expiredAmt, g.voidedAmt} {
			inRange("grant "+g.ID, x)
		}
		// A grant's movements only redistribute its amount.
		if len(errs) == 0 {
			sum := mustAdd(mustAdd(g.remaining, g.drawn), mustAdd(g.expiredAmt, g.voidedAmt))
			if sum.Cmp(g.Amount) > 0 || !g.granted.IsZero() && g.granted != g.Amount {
				bad("grant %s: movements %s exceed its amount %s", g.ID, sum, g.Amount)
			}
			if g.remaining.Sign() > 0 && (g.voided || g.expired) {
				bad("grant %s: %s left after it ended", g.ID, g.remaining)
			}
		}
		if g.seq == 0 || g.seq > a.grantSeq {
			bad("grant %s sequence %d of %d", g.ID, g.seq, a.grantSeq)
		}
		if i > 0 && !drawsBefore(&a.grants[i-1], g) {
			bad("grants out of order at %s", g.ID)
		}
		for j := range i {
			if a.grants[j].ID == g.ID {
				bad("grant %s twice", g.ID)
			}
		}
	}
	for i := range a.pending {
		p := &a.pending[i]
		if err := p.plan.Validate(); err != nil {
			errs = append(errs, err)
		}
		if !p.effective.After(a.clock) || i > 0 && p.effective.Before(a.pending[i-1].effective) {
			bad("pending plan change %s out of order", p.commandID)
		}
	}
	if len(a.cur.fees) > maxFeeLinesStored {
		bad("%d fee lines", len(a.cur.fees))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	cur := a.snapshot(a.end)
	if err := cur.check(); err != nil {
		errs = append(errs, err)
	}
	if a.prev != nil {
		if err := a.prev.check(); err != nil {
			errs = append(errs, err)
		}
	}
	if n := a.numChecks(); len(a.checks) != n {
		bad("%d threshold states for %d levels", len(a.checks), n)
	}
	return errors.Join(errs...)
}

func isZeroPlan(p *Plan) bool {
	return p.ID == "" && p.Version == 0 && p.Cycle == (Cycle{}) && p.Fee.IsZero() && p.Allowance.IsZero() &&
		len(p.TokenGroups) == 0 && p.Overage == OverageBill && p.Credits == CreditsApply && len(p.Thresholds) == 0
}

// check verifies that a period's parts are in range and add up.
func (p *PeriodUsage) check() error {
	max, maxUsage := maxAmount(), maxPeriodUsage()
	if len(p.Fees) > maxFeeLinesStored {
		return fmt.Errorf("period: %d fee lines", len(p.Fees))
	}
	for _, f := range p.Fees {
		if f.Amount.Sign() < 0 || f.Amount.Cmp(max) > 0 {
			return fmt.Errorf("period: fee %s out of range", f.Amount)
		}
	}
	if len(p.Grants) > MaxGrants || len(p.Tokens) > maxFeeLinesStored*MaxTokenGroups {
		return fmt.Errorf("period: %d grants, %d token lines", len(p.Grants), len(p.Tokens))
	}
	if p.Allowance.Sign() < 0 || p.Allowance.Cmp(maxUsage) > 0 || p.Included.Sign() < 0 || p.Included.Cmp(p.Allowance) > 0 {
		return fmt.Errorf("period: included %s of allowance %s", p.Included, p.Allowance)
	}
	if p.UsageCharge.Sign() < 0 || p.UsageCharge.Cmp(maxUsage) > 0 || p.LateCharge.Sign() < 0 || p.LateCharge.Cmp(p.UsageCharge) > 0 || p.Events < 0 {
		return fmt.Errorf("period: usage %s, late %s, %d events", p.UsageCharge, p.LateCharge, p.Events)
	}
	sum := p.Included
	ok := true
	add := func(x rating.Amount) {
		if x.Sign() < 0 {
			ok = false
		}
		if ok {
			sum, ok = sum.Add(x)
		}
	}
	for _, t := range p.Tokens {
		if t.Used < 0 || t.Allowance < 0 {
			ok = false
		}
		add(t.Charge)
	}
	for _, g := range p.Grants {
		add(g.Drawn)
		for _, x := range []rating.Amount{g.Granted, g.Drawn, g.Expired, g.Voided, g.Remaining} {
			if x.Sign() < 0 || x.Cmp(max) > 0 {
				ok = false
			}
		}
	}
	add(p.Overage)
	add(p.BlockedOverage)
	if !ok || sum != p.UsageCharge {
		return fmt.Errorf("period: parts add up to %s, usage is %s", sum, p.UsageCharge)
	}
	return nil
}

// maxFeeLinesStored bounds a period's fee lines: the opening line, plan
// changes until MaxFeeLines, then the scheduled changes accepted before.
const maxFeeLinesStored = 1 + MaxFeeLines + MaxPending

// MarshalBinary encodes a closed period for storage.
func (p *PeriodUsage) MarshalBinary() ([]byte, error) {
	e := encoder{}
	e.u8(periodVersion)
	e.period(p)
	return e.b, nil
}

// UnmarshalBinary decodes a period written by MarshalBinary.
func (p *PeriodUsage) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	if v := d.u8(); d.err == nil && v != periodVersion {
		return fmt.Errorf("%w: period format version %d, expected %d", ErrCorrupt, v, periodVersion)
	}
	n := d.period()
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, d.err)
	}
	if err := n.check(); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	*p = n
	return nil
}

type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)       { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) flags(fs ...bool) {
	var v uint8
	for i, f := range fs {
		if f {
			v |= 1 << i
		}
	}
	e.u8(v)
}

func (e *encoder) amount(a rating.Amount) {
	var buf [16]byte
	b := a.AppendBinary(buf[:0])
	sign := byte(0)
	if b[0]&0x80 != 0 {
		sign = 0xff
	}
	// Drop leading sign bytes while the next byte keeps the sign bit; zero
	// takes no bytes at all.
	i := 0
	for i < 15 && b[i] == sign && b[i+1]&0x80 == sign&0x80 {
		i++
	}
	if i == 15 && b[15] == 0 {
		i = 16
	}
	e.u8(uint8(16 - i))
	e.b = append(e.b, b[i:]...)
}

func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.uvarint(0)
		return
	}
	n := t.UnixNano()
	e.uvarint(uint64(n<<1^n>>63) + 1)
}

func (e *encoder) match(m *Match) {
	e.uvarint(uint64(len(m.PriceKeys)))
	for _, s := range m.PriceKeys {
		e.str(s)
	}
	e.uvarint(uint64(len(m.Providers)))
	for _, s := range m.Providers {
		e.str(s)
	}
	e.uvarint(uint64(len(m.Dimensions)))
	for _, d := range m.Dimensions {
		e.str(d.Key)
		e.str(d.Value)
	}
}

func (e *encoder) thresholds(ts []Threshold) {
	e.uvarint(uint64(len(ts)))
	for _, t := range ts {
		e.u8(uint8(t.Kind))
		e.u8(t.Percent)
		e.amount(t.Amount)
	}
}

func (e *encoder) plan(p *Plan) {
	e.str(p.ID)
	e.uvarint(uint64(p.Version))
	e.u8(uint8(p.Cycle.Kind))
	e.varint(int64(p.Cycle.Interval))
	e.amount(p.Fee)
	e.amount(p.Allowance)
	e.uvarint(uint64(len(p.TokenGroups)))
	for i := range p.TokenGroups {
		g := &p.TokenGroups[i]
		e.str(g.Name)
		e.match(&g.Match)
		e.uvarint(uint64(g.Units))
		e.varint(g.Tokens)
	}
	e.u8(uint8(p.Overage))
	e.u8(uint8(p.Credits))
	e.thresholds(p.Thresholds)
}

func (e *encoder) grant(g *Grant) {
	e.str(g.ID)
	e.amount(g.Amount)
	e.varint(int64(g.Priority))
	e.time(g.ExpiresAt)
	e.match(&g.Restrict)
}

func (e *encoder) fees(fs []FeeLine) {
	e.uvarint(uint64(len(fs)))
	for _, f := range fs {
		e.str(f.PlanID)
		e.uvarint(uint64(f.PlanVersion))
		e.time(f.From)
		e.amount(f.Amount)
	}
}

func (e *encoder) tokenUsage(ts []TokenUsage) {
	e.uvarint(uint64(len(ts)))
	for _, t := range ts {
		e.str(t.PlanID)
		e.str(t.Group)
		e.varint(t.Allowance)
		e.varint(t.Used)
		e.amount(t.Charge)
	}
}

func (e *encoder) stats(s *periodStats) {
	e.fees(s.fees)
	e.amount(s.allowance)
	e.amount(s.included)
	e.tokenUsage(s.tokens)
	e.amount(s.overage)
	e.amount(s.blocked)
	e.amount(s.usage)
	e.amount(s.late)
	e.varint(s.events)
}

func (e *encoder) period(p *PeriodUsage) {
	e.str(p.CustomerID)
	e.time(p.Start)
	e.time(p.End)
	e.fees(p.Fees)
	e.amount(p.Allowance)
	e.amount(p.Included)
	e.tokenUsage(p.Tokens)
	e.uvarint(uint64(len(p.Grants)))
	for _, g := range p.Grants {
		e.str(g.GrantID)
		e.amount(g.Granted)
		e.amount(g.Drawn)
		e.amount(g.Expired)
		e.amount(g.Voided)
		e.amount(g.Remaining)
	}
	e.amount(p.Overage)
	e.amount(p.BlockedOverage)
	e.amount(p.UsageCharge)
	e.amount(p.LateCharge)
	e.varint(p.Events)
}

// decoder reads what encoder writes. The first error sticks; later reads
// return zero values, so callers check d.err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(f string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(f, args...)
	}
	d.b = nil
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail("%d bytes wanted, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	b := d.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("counter %d out of range", v)
		return 0
	}
	return uint32(v)
}

// count reads a slice length and refuses one that the remaining bytes
// cannot hold at minSize bytes per element.
func (d *decoder) count(minSize int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.b)/minSize) {
		d.fail("%d elements in %d bytes", v, len(d.b))
		return 0
	}
	return int(v)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err == nil && n > schemas.MaxIDLen {
		d.fail("string of %d bytes", n)
	}
	return string(d.bytes(int(n)))
}

func (d *decoder) flags(fs ...*bool) {
	v := d.u8()
	if v>>len(fs) != 0 {
		d.fail("unknown flags %#x", v)
	}
	for i, f := range fs {
		*f = v&(1<<i) != 0
	}
}

func (d *decoder) amount() rating.Amount {
	n := int(d.u8())
	if n > 16 {
		d.fail("amount of %d bytes", n)
		return rating.Amount{}
	}
	b := d.bytes(n)
	if d.err != nil {
		return rating.Amount{}
	}
	var buf [16]byte
	if n > 0 && b[0]&0x80 != 0 {
		for i := range 16 - n {
			buf[i] = 0xff
		}
	}
	copy(buf[16-n:], b)
	a, err := rating.AmountFromBinary(buf[:])
	if err != nil {
		d.fail("%v", err)
	}
	return a
}

func (d *decoder) time() time.Time {
	v := d.uvarint()
	if v == 0 || d.err != nil {
		return time.Time{}
	}
	v--
	n := int64(v>>1) ^ -int64(v&1)
	return time.Unix(0, n).UTC()
}

func (d *decoder) strs() []string {
	k := d.count(1)
	if k == 0 {
		return nil
	}
	out := make([]string, k)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *decoder) match() Match {
	m := Match{PriceKeys: d.strs(), Providers: d.strs()}
	if k := d.count(2); k > 0 {
		m.Dimensions = make([]schemas.Dimension, k)
		for i := range m.Dimensions {
			m.Dimensions[i] = schemas.Dimension{Key: d.str(), Value: d.str()}
		}
	}
	return m
}

func (d *decoder) thresholds() []Threshold {
	k := d.count(3)
	if k == 0 {
		return nil
	}
	out := make([]Threshold, k)
	for i := range out {
		out[i] = Threshold{Kind: ThresholdKind(d.u8()), Percent: d.u8(), Amount: d.amount()}
	}
	return out
}

func (d *decoder) plan() Plan {
	p := Plan{ID: d.str(), Version: d.u32()}
	p.Cycle = Cycle{Kind: CycleKind(d.u8()), Interval: time.Duration(d.varint())}
	p.Fee = d.amount()
	p.Allowance = d.amount()
	if k := d.count(6); k > 0 {
		p.TokenGroups = make([]TokenGroup, k)
		for i := range p.TokenGroups {
			g := &p.TokenGroups[i]
			g.Name = d.str()
			g.Match = d.match()
			if u := d.uvarint(); u > 1<<16-1 {
				d.fail("unit set %#x", u)
			} else {
				g.Units = UnitSet(u)
			}
			g.Tokens = d.varint()
		}
	}
	p.Overage = OveragePolicy(d.u8())
	p.Credits = CreditPolicy(d.u8())
	p.Thresholds = d.thresholds()
	return p
}

func (d *decoder) grant() Grant {
	g := Grant{ID: d.str(), Amount: d.amount(), Currency: Currency}
	if v := d.varint(); v < -1<<31 || v > 1<<31-1 {
		d.fail("priority %d", v)
	} else {
		g.Priority = int32(v)
	}
	g.ExpiresAt = d.time()
	g.Restrict = d.match()
	return g
}

func (d *decoder) fees() []FeeLine {
	k := d.count(4)
	if k == 0 {
		return nil
	}
	out := make([]FeeLine, k)
	for i := range out {
		out[i] = FeeLine{PlanID: d.str(), PlanVersion: d.u32(), From: d.time(), Amount: d.amount()}
	}
	return out
}

func (d *decoder) tokenUsage() []TokenUsage {
	k := d.count(5)
	if k == 0 {
		return nil
	}
	out := make([]TokenUsage, k)
	for i := range out {
		out[i] = TokenUsage{PlanID: d.str(), Group: d.str(), Allowance: d.varint(), Used: d.varint(), Charge: d.amount()}
	}
	return out
}

func (d *decoder) stats() periodStats {
	return periodStats{
		fees:      d.fees(),
		allowance: d.amount(),
		included:  d.amount(),
		tokens:    d.tokenUsage(),
		overage:   d.amount(),
		blocked:   d.amount(),
		usage:     d.amount(),
		late:      d.amount(),
		events:    d.varint(),
	}
}

func (d *decoder) period() PeriodUsage {
	p := PeriodUsage{CustomerID: d.str(), Start: d.time(), End: d.time(), Fees: d.fees(),
		Allowance: d.amount(), Included: d.amount(), Tokens: d.tokenUsage()}
	if k := d.count(6); k > 0 {
		p.Grants = make([]GrantUsage, k)
		for i := range p.Grants {
			p.Grants[i] = GrantUsage{GrantID: d.str(), Granted: d.amount(), Drawn: d.amount(),
				Expired: d.amount(), Voided: d.amount(), Remaining: d.amount()}
		}
	}
	p.Overage = d.amount()
	p.BlockedOverage = d.amount()
	p.UsageCharge = d.amount()
	p.LateCharge = d.amount()
	p.Events = d.varint()
	return p
}
