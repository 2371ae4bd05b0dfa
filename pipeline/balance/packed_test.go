package balance

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/tariff-dev/tariff/schemas"
)

// randomAccount drives a fresh account through the real engine with a
// random plan, grants (with and without expiry), usage of money and
// tokens, pause overrides and time passing.
func randomAccount(t *testing.T, rng *rand.Rand) *harness {
	h := newHarness(t)
	at := nov1.Add(time.Duration(rng.IntN(24*30)) * time.Hour)
	step := func() time.Time {
		at = at.Add(time.Duration(rng.Int64N(int64(72 * time.Hour))))
		return at
	}
	if rng.IntN(5) > 0 {
		p := Plan{ID: fmt.Sprintf("plan-%d", rng.IntN(4)), Version: uint32(rng.IntN(3) + 1),
			Allowance: usd([]string{"0", "2", "10"}[rng.IntN(3)]),
			Overage:   OveragePolicy(rng.IntN(2)), Credits: CreditPolicy(rng.IntN(2))}
		if rng.IntN(2) == 0 {
			p.Cycle = Cycle{Kind: CycleInterval, Interval: time.Duration(1+rng.IntN(24*20)) * time.Hour}
		}
		for i := range rng.IntN(3) {
			p.TokenGroups = append(p.TokenGroups, TokenGroup{Name: fmt.Sprintf("g%d", i), Tokens: int64(1 + rng.IntN(100))})
		}
		h.plan(at, p)
	}
	for i := range rng.IntN(5) {
		h.grant(step(), fmt.Sprintf("grant-%d", i), []string{"0.5", "1", "3"}[rng.IntN(3)], func(g *Grant) {
			if rng.IntN(2) == 0 {
				g.ExpiresAt = at.Add(time.Duration(1+rng.IntN(24*40)) * time.Hour)
			}
		})
	}
	for range rng.IntN(6) {
		switch rng.IntN(4) {
		case 0:
			h.use(charged(fmt.Sprintf("tok-%d", h.n), step(), "gpt-4o", schemas.UnitInput, 1+rng.IntN(80), "0.01"))
			h.n++
		case 1:
			h.cmd(&Command{Kind: CommandSetPause, At: step(), Pause: PauseOverride(rng.IntN(3))})
		default:
			h.spend(step(), []string{"0.25", "1", "4"}[rng.IntN(3)])
		}
	}
	if rng.IntN(3) == 0 {
		h.advance(step())
	}
	return h
}

// probeTimes are the moments where the answer may change (just before,
// at and just after every credit expiry, the period's end and the
// clock), and some others, in several locations and with a monotonic
// reading.
func probeTimes(v *View, rng *rand.Rand) []time.Time {
	var edges []time.Time
	for _, c := range v.credits {
		if !c.expires.IsZero() {
			edges = append(edges, c.expires)
		}
	}
	if !v.periodEnd.IsZero() {
		edges = append(edges, v.periodEnd)
	}
	edges = append(edges, v.clock)
	var out []time.Time
	for _, e := range edges {
		out = append(out, e.Add(-time.Nanosecond), e, e.Add(time.Nanosecond), e.Add(-time.Second))
	}
	for range 8 {
		out = append(out, v.clock.Add(time.Duration(rng.Int64N(int64(120*24*time.Hour)))-24*time.Hour))
	}
	zone := time.FixedZone("UTC-7", -7*3600)
	for i, n := 0, len(out); i < n; i++ {
		out = append(out, out[i].In(zone))
	}
	return append(out, time.Now(), time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC))
}

func sameView(t *testing.T, what string, got, want View) {
	t.Helper()
	if !got.periodEnd.Equal(want.periodEnd) || !got.clock.Equal(want.clock) ||
		got.periodEnd.IsZero() != want.periodEnd.IsZero() || len(got.credits) != len(want.credits) {
		t.Fatalf("%s: unpacked %+v, want %+v", what, got, want)
	}
	for i := range got.credits {
		if !got.credits[i].expires.Equal(want.credits[i].expires) || got.credits[i].expires.IsZero() != want.credits[i].expires.IsZero() {
			t.Fatalf("%s: credit %d unpacked %+v, want %+v", what, i, got.credits[i], want.credits[i])
		}
	}
	// Compare the rest on copies: the credits share the callers' arrays.
	got.credits, want.credits = slices.Clone(got.credits), slices.Clone(want.credits)
	got.periodEnd, got.clock, want.periodEnd, want.clock = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	for i := range got.credits {
		got.credits[i].expires, want.credits[i].expires = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: unpacked %+v, want %+v", what, got, want)
	}
}

// The packed view answers exactly like the View and the account, at the
// boundary times too, over many accounts built through the engine.
func TestPackedViewMatchesView(t *testing.T) {
	var seen struct {
		packed, unpackable, paused, autoPaused, forced, lifted, rolled, expired, lift, tokens, overage, exhausted, noPlan int
	}
	for seed := range uint64(3000) {
		rng := rand.New(rand.NewPCG(seed, 0x7061636b))
		h := randomAccount(t, rng)
		v := h.a.View()
		what := fmt.Sprintf("seed %d", seed)
		p, ok := v.Pack()
		if len(v.credits) > PackedCredits {
			if ok {
				t.Fatalf("%s: %d credits packed into %d", what, len(v.credits), PackedCredits)
			}
			seen.unpackable++
			continue
		}
		if !ok {
			t.Fatalf("%s: view with %d credits does not pack: %+v", what, len(v.credits), v)
		}
		seen.packed++
		u := p.Unpack()
		sameView(t, what, u, v)
		if id, ver := u.Plan(); id != v.planID || ver != v.planVersion {
			t.Fatalf("%s: plan %q v%d, want %q v%d", what, id, ver, v.planID, v.planVersion)
		}
		switch {
		case v.override == PauseForced:
			seen.forced++
		case v.override == PauseLifted:
			seen.lifted++
		case v.autoPaused:
			seen.autoPaused++
		}
		if v.paused {
			seen.paused++
		}
		if v.planID == "" {
			seen.noPlan++
		}
		for _, at := range probeTimes(&v, rng) {
			want := v.Entitlement(at)
			if got := p.Entitlement(at); got != want {
				t.Fatalf("%s at %s: packed %+v, view %+v (view %+v)", what, at, got, want, v)
			}
			if acc := h.a.Entitlement(at); acc != want {
				t.Fatalf("%s at %s: account %+v, view %+v", what, at, acc, want)
			}
			rolled := !v.periodEnd.IsZero() && !at.Before(v.periodEnd)
			if rolled {
				seen.rolled++
			}
			if rolled && v.paused && !want.Paused {
				seen.lift++
			}
			for _, c := range v.credits {
				if !c.expires.IsZero() && !at.Before(c.expires) {
					seen.expired++
				}
			}
			switch want.Reason {
			case ReasonOverage:
				seen.overage++
			case ReasonExhausted:
				seen.exhausted++
			}
			if want.TokensRemaining > 0 {
				seen.tokens++
			}
		}
	}
	// The accounts must have covered every case, or the comparison above
	// proves less than it claims.
	t.Logf("covered: %+v", seen)
	for name, n := range map[string]int{"packed": seen.packed, "unpackable": seen.unpackable, "paused": seen.paused,
		"auto paused": seen.autoPaused, "forced": seen.forced, "lifted": seen.lifted, "rolled": seen.rolled,
		"expired credit": seen.expired, "pause lifted by a roll": seen.lift, "tokens": seen.tokens,
		"overage": seen.overage, "exhausted": seen.exhausted, "no plan": seen.noPlan} {
		if n < 10 {
			t.Errorf("only %d accounts or answers with %s", n, name)
		}
	}
}

func TestBeforeNano(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ns := []int64{1, -1, 1e9, -1e9, 1e9 - 1, -1e9 + 1, 1<<63 - 1, -1 << 63, 1_700_000_000_123_456_789}
	for range 1000 {
		ns = append(ns, int64(rng.Uint64()))
	}
	for _, n := range ns {
		t0 := time.Unix(0, n)
		for _, now := range []time.Time{t0, t0.Add(-1), t0.Add(1), t0.Add(-time.Second), t0.Add(time.Second),
			time.Time{}, time.Now(), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 5, time.UTC)} {
			if got, want := beforeNano(now, n), now.Before(t0); got != want {
				t.Fatalf("beforeNano(%s, %d) = %v, want %v", now, n, got, want)
			}
		}
	}
}

func TestPackTimeRefusesWhatItCannotHold(t *testing.T) {
	for _, tm := range []time.Time{time.Unix(0, 0), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if n, ok := packTime(tm); ok {
			t.Errorf("packTime(%s) = %d, want refused", tm, n)
		}
	}
	v := View{clock: time.Unix(0, 0)}
	if _, ok := v.Pack(); ok {
		t.Error("a view at the epoch packed: its clock would read as zero")
	}
}

// PackedView must stay free of pointers (or the garbage collector scans
// every entry again) and small enough that a map value of it and a
// partition number is stored inline.
func TestPackedViewLayout(t *testing.T) {
	if s := unsafe.Sizeof(PackedView{}); s > 120 {
		t.Errorf("PackedView is %d bytes, want at most 120", s)
	}
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		switch ty.Kind() {
		case reflect.Struct:
			for i := range ty.NumField() {
				walk(ty.Field(i).Type, path+"."+ty.Field(i).Name)
			}
		case reflect.Array:
			walk(ty.Elem(), path+"[]")
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			t.Errorf("%s is a %s: PackedView must hold no pointers", path, ty.Kind())
		}
	}
	walk(reflect.TypeFor[PackedView](), "PackedView")
}

func TestPackedEntitlementDoesNotAllocate(t *testing.T) {
	h := newHarness(t)
	h.plan(nov1, Plan{ID: "sub", Version: 1, Allowance: usd("10"), TokenGroups: []TokenGroup{{Name: "g", Tokens: 7}}})
	h.grant(day(1), "a", "1", func(g *Grant) { g.ExpiresAt = day(20) })
	h.grant(day(1), "b", "2")
	v := h.a.View()
	p, ok := v.Pack()
	if !ok {
		t.Fatal("does not pack")
	}
	now := day(3)
	if n := testing.AllocsPerRun(1000, func() {
		if !p.Entitlement(now).Allowed {
			t.Fatal("not allowed")
		}
	}); n != 0 {
		t.Errorf("%v allocations per Entitlement, want 0", n)
	}
}
