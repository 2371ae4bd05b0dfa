package rating

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func TestAmountString(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		a, err := ParseAmount(in)
		if err != nil {
			t.Fatalf("ParseAmount(%q): %v", in, err)
		}
		if got := a.String(); got != want {
			t.Errorf("ParseAmount(%q).String() = %q, want %q", in, got, want)
		}
		if !a.Decimal().Equal(decimal.RequireFromString(in)) {
			t.Errorf("Decimal() of %q = %s", in, a.Decimal())
		}
	}
	f("0", "0")
	f("2.5", "2.5")
	f("2.50000", "2.5")
	f("0.02025", "0.02025")
	f("2.5e-6", "0.0000025")
	f("-0.026325", "-0.026325")
	f("1e9", "1000000000")
	f("12345678901.0000000000000000000000000001", "12345678901.0000000000000000000000000001")
	f("0.0000000000000000000000000001", "0.0000000000000000000000000001")
	f("17014118346.0000000000000000000000000001", "17014118346.0000000000000000000000000001")
}

func TestAmountRejects(t *testing.T) {
	if _, err := ParseAmount("0.00000000000000000000000000001"); !errors.Is(err, ErrInexact) {
		t.Errorf("29 fractional digits: err = %v, want ErrInexact", err)
	}
	if _, err := ParseAmount("17014118347"); !errors.Is(err, ErrOverflow) {
		t.Errorf("1.7e10: err = %v, want ErrOverflow", err)
	}
	if _, err := ParsePrice("0.0000000000000000000000001"); !errors.Is(err, ErrInexact) {
		t.Errorf("price with 25 digits: err = %v, want ErrInexact", err)
	}
	if _, err := ParsePrice("-1"); err == nil {
		t.Error("negative price accepted")
	}
	// The noisiest real price (databricks, LiteLLM map) fits exactly.
	p := MustPrice("0.0000029999900000000002")
	if p.String() != "0.0000029999900000000002" {
		t.Errorf("noisy price round trip: %s", p)
	}
}

func TestMarkup(t *testing.T) {
	f := func(in, mult string) {
		t.Helper()
		m, err := ParseMarkup(in)
		if err != nil {
			t.Fatalf("ParseMarkup(%q): %v", in, err)
		}
		if !m.Multiplier().Equal(decimal.RequireFromString(mult)) {
			t.Errorf("ParseMarkup(%q) multiplier = %s, want %s", in, m.Multiplier(), mult)
		}
	}
	f("30", "1.3")
	f("30%", "1.3")
	f("12.5", "1.125")
	f("12.25", "1.1225")
	f("0", "1")
	f("-10", "0.9")
	for _, bad := range []string{"12.345", "-100", "-150", "abc", ""} {
		if _, err := ParseMarkup(bad); err == nil {
			t.Errorf("ParseMarkup(%q) accepted", bad)
		}
	}
}

func TestLineAmountsExact(t *testing.T) {
	f := func(price string, qty int64, markup, cost, charge string) {
		t.Helper()
		c, h, ok := lineAmounts(MustPrice(price), qty, MustMarkup(markup))
		if !ok {
			t.Fatalf("%s × %d overflowed", price, qty)
		}
		if c.String() != cost || h.String() != charge {
			t.Errorf("%s × %d at %s%%: cost %s charge %s, want %s %s", price, qty, markup, c, h, cost, charge)
		}
	}
	f("2.5e-06", 1_000_000, "0", "2.5", "2.5")
	f("2.5e-06", 1_000_000, "30", "2.5", "3.25")
	f("1.25e-07", 3, "12.5", "0.000000375", "0.000000421875")
	f("3.75e-06", 1_000_000_000_000, "30", "3750000", "4875000")
	f("0.0000029999900000000002", 7, "12.25", "0.0000209999300000000014", "0.0000235724214250000015715")
	if _, _, ok := lineAmounts(MustPrice("0.5"), 1_000_000_000_000, NoMarkup); ok {
		t.Error("5e11 USD did not overflow") // above 1.7e10
	}
}

func TestRoundForInvoice(t *testing.T) {
	a := MustAmount("0.026325")
	cases := []struct {
		mode RoundingMode
		want string
	}{
		{RoundHalfEven, "0.03"}, {RoundHalfUp, "0.03"}, {RoundUp, "0.03"}, {RoundDown, "0.02"},
	}
	for _, c := range cases {
		if got := a.RoundForInvoice(2, c.mode).StringFixed(2); got != c.want {
			t.Errorf("mode %d: %s, want %s", c.mode, got, c.want)
		}
	}
	if got := MustAmount("0.125").RoundForInvoice(2, RoundHalfEven).String(); got != "0.12" {
		t.Errorf("half-even 0.125 = %s", got)
	}
	if got := MustAmount("0.125").RoundForInvoice(2, RoundHalfUp).String(); got != "0.13" {
		t.Errorf("half-up 0.125 = %s", got)
	}
}

func TestAmountArithmetic(t *testing.T) {
	a, b := MustAmount("1.5"), MustAmount("-2.25")
	if s, _ := a.Add(b); s.String() != "-0.75" {
		t.Errorf("add: %s", s)
	}
	if s, _ := a.Sub(b); s.String() != "3.75" {
		t.Errorf("sub: %s", s)
	}
	if s, _ := b.MulInt(-4); s.String() != "9" {
		t.Errorf("mul: %s", s)
	}
	big := MustAmount("17000000000")
	if _, ok := big.Add(big); ok {
		t.Error("add overflow not detected")
	}
	neg, _ := Amount{}.Sub(big)
	if _, ok := neg.Sub(big); ok {
		t.Error("sub overflow not detected")
	}
	if a.Cmp(b) != 1 || b.Sign() != -1 || !(Amount{}).IsZero() {
		t.Error("cmp/sign")
	}
}

// checkAgainstDecimal is the property the fixed-point code must hold: for
// any representable price, quantity and markup, cost and charge equal the
// decimal.Decimal computation exactly, or overflow is reported exactly when
// the true result is out of range.
func checkAgainstDecimal(t *testing.T, priceCoef int64, priceExp int32, qty int64, markupHundredths int64) {
	t.Helper()
	if qty < 0 || priceCoef < 0 || priceExp < -PriceScale || priceExp > 3 || markupHundredths <= -10000 {
		return
	}
	pd := decimal.New(priceCoef, priceExp)
	p, err := PriceFromDecimal(pd)
	if err != nil {
		return // out of price range; PriceFromDecimal's own tests cover it
	}
	pct := decimal.New(markupHundredths, -2)
	m, err := MarkupFromPercent(pct)
	if err != nil {
		t.Fatalf("markup %s: %v", pct, err)
	}
	wantCost := pd.Mul(decimal.NewFromInt(qty))
	wantCharge := wantCost.Mul(pct.Add(hundred).Shift(-2)) // exact, unlike Div
	limit := decimal.New(1, 0).Shift(38 - Scale).Mul(decimal.RequireFromString("1.7"))
	cost, charge, ok := lineAmounts(p, qty, m)
	if !ok {
		if wantCharge.LessThan(limit) && wantCost.LessThan(limit) {
			t.Fatalf("%s × %d × %s: overflow reported for in-range result %s", pd, qty, pct, wantCharge)
		}
		return
	}
	if !cost.Decimal().Equal(wantCost) || !charge.Decimal().Equal(wantCharge) {
		t.Fatalf("%s × %d at %s%%: got %s/%s want %s/%s", pd, qty, pct, cost, charge, wantCost, wantCharge)
	}
	// String round-trips through decimal.
	if back, err := ParseAmount(charge.String()); err != nil || back != charge {
		t.Fatalf("round trip %s: %v", charge, err)
	}
}

func TestLineAmountsProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200_000; i++ {
		coef := r.Int64N(1_000_000_000_000)
		exp := -int32(r.IntN(PriceScale + 1))
		qty := r.Int64N(1_000_000_000_001)
		if r.IntN(4) == 0 {
			qty = r.Int64N(10_000)
		}
		checkAgainstDecimal(t, coef, exp, qty, r.Int64N(100_000)-9_999)
	}
}

func FuzzLineAmounts(f *testing.F) {
	f.Add(int64(25), int32(-7), int64(1_000_000), int64(3000))
	f.Add(int64(29999900000000002), int32(-22), int64(999_999_999_999), int64(1225))
	f.Add(int64(1), int32(-24), int64(1), int64(-9999))
	f.Fuzz(func(t *testing.T, coef int64, exp int32, qty int64, pctHundredths int64) {
		checkAgainstDecimal(t, coef, exp, qty, pctHundredths)
	})
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"0", "2.5", "-1e-28", "1.7e10", "abc", "0.0000029999900000000002"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAmount(s)
		if err != nil {
			return
		}
		d, derr := decimal.NewFromString(s)
		if derr != nil || !a.Decimal().Equal(d) {
			t.Fatalf("ParseAmount(%q) = %s, decimal says %v", s, a, d)
		}
		if strings.ContainsAny(a.String(), "eE") {
			t.Fatalf("exponent in %s", a)
		}
	})
}

func TestAmountBinaryRoundTrip(t *testing.T) {
	for _, s := range []string{"0", "0.02025", "-3.5", "16999999999.9999999999999999999999999999", "0.0000000000000000000000000001"} {
		a := MustAmount(s)
		b, err := AmountFromBinary(a.AppendBinary(nil))
		if err != nil || b != a {
			t.Fatalf("%s: round trip gave %s, %v", s, b, err)
		}
	}
	if _, err := AmountFromBinary([]byte{1, 2}); err == nil {
		t.Fatal("short input accepted")
	}
}

func TestScaledDecimalIsExact(t *testing.T) {
	for _, s := range []string{"0", "2.5", "0.0000000000000000000000000001", "-3.25", "16999999999.9999999999999999999999999999", "0.026325"} {
		a := MustAmount(s)
		if got := a.ScaledDecimal(); !got.Equal(a.Decimal()) {
			t.Errorf("Amount %s: ScaledDecimal %s != Decimal %s", s, got, a.Decimal())
		}
	}
	for _, s := range []string{"0.0000029999900000000002", "0.000003", "15"} {
		p := MustPrice(s)
		if got := p.ScaledDecimal(); !got.Equal(p.Decimal()) {
			t.Errorf("Price %s: ScaledDecimal %s != Decimal %s", s, got, p.Decimal())
		}
	}
}

// Random values across the whole int128 range, with and without trailing
// zeros, and the extremes: ScaledDecimal always equals the big-integer
// conversion.
func TestScaledDecimalRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	values := []int128{{0, 0}, {1 << 63, 0}, {^uint64(0), ^uint64(0)}, {1<<63 - 1, ^uint64(0)}, {0, 1 << 63}, {^uint64(0), 1 << 63}}
	for range 20000 {
		v := int128{rng.Uint64() >> rng.IntN(64), rng.Uint64()}
		if rng.IntN(3) == 0 {
			v.hi = 0
			v.lo >>= rng.IntN(64)
		}
		for range rng.IntN(20) {
			if w, ok := v.mulU(10); ok {
				v = w
			}
		}
		if rng.IntN(2) == 0 {
			v = v.neg()
		}
		values = append(values, v)
	}
	for _, v := range values {
		want := decimal.NewFromBigInt(v.big(), -Scale)
		if got := v.scaledDecimal(Scale); !got.Equal(want) {
			t.Fatalf("%x %x: %s, want %s", v.hi, v.lo, got, want)
		}
	}
}
