// Package rating turns normalized usage events into money: it holds the price
// model, the LiteLLM and OpenRouter importers, model-name resolution, the
// versioned price book, markup and rate-card rules, and the rating engine.
//
// The package is pure: no I/O, no clock, no globals that change. Every parse
// function takes bytes; every time is passed in.
package rating

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"

	"github.com/shopspring/decimal"
)

// Fixed-point scales. Money in the hot path is a signed 128-bit integer
// counting 10^-Scale dollars. The three constants are tied together:
//
//	Scale = PriceScale + MarkupScale
//
// because a charge is price × quantity × markup-multiplier: a price with at
// most PriceScale fractional digits times an integer quantity times a
// multiplier with at most MarkupScale fractional digits has at most Scale
// fractional digits, so every cost and every charge is exact with no rounding
// and no division in the hot path. Raising PriceScale without raising Scale
// breaks that guarantee.
//
// Why these numbers: the real LiteLLM and OpenRouter lists carry prices with
// up to 23 fractional digits (float noise such as 0.0000029999900000000002
// and 0.0000000208333333333333), so PriceScale = 24 represents every one of
// them exactly. MarkupScale = 4 allows a markup percentage with two decimals
// (12.25% → ×1.1225). Range: 2^127 / 10^28 ≈ 1.7e10 USD per amount, which is
// far above any single event (10^12 tokens at $0.01 per token) and any
// monthly invoice; exceeding it is reported as ErrOverflow, never wrapped.
const (
	Scale       = 28
	PriceScale  = 24
	MarkupScale = 4
)

var (
	// ErrInexact means a decimal value has more fractional digits than the
	// fixed-point scale can hold; it is never rounded to fit.
	ErrInexact = errors.New("not exactly representable")
	// ErrOverflow means a value or a product is outside the 128-bit range.
	ErrOverflow = errors.New("amount overflows 128-bit fixed point")
)

// int128 is a two's-complement signed 128-bit integer. Only the handful of
// operations the package needs are implemented, each with overflow checks.
type int128 struct{ hi, lo uint64 }

func (a int128) isNeg() bool  { return int64(a.hi) < 0 }
func (a int128) isZero() bool { return a.hi == 0 && a.lo == 0 }

func (a int128) neg() int128 {
	lo, b := bits.Sub64(0, a.lo, 0)
	hi, _ := bits.Sub64(0, a.hi, b)
	return int128{hi, lo}
}

func (a int128) add(b int128) (int128, bool) {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, c)
	r := int128{hi, lo}
	// Signed overflow: both operands have the same sign and the result not.
	if a.isNeg() == b.isNeg() && r.isNeg() != a.isNeg() {
		return int128{}, false
	}
	return r, true
}

func (a int128) cmp(b int128) int {
	if int64(a.hi) != int64(b.hi) {
		if int64(a.hi) < int64(b.hi) {
			return -1
		}
		return 1
	}
	switch {
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

// mulU multiplies a non-negative a by m. ok is false when the product does
// not fit in 127 bits. This is the only multiplication on the hot path.
func (a int128) mulU(m uint64) (int128, bool) {
	h1, l1 := bits.Mul64(a.lo, m)
	h2, l2 := bits.Mul64(a.hi, m)
	hi, c := bits.Add64(l2, h1, 0)
	if h2 != 0 || c != 0 || hi>>63 != 0 {
		return int128{}, false
	}
	return int128{hi, l1}, true
}

// mul multiplies two signed values whose magnitude fits the second operand
// into 64 bits (used at the edges, not in rating).
func (a int128) mulSigned(m int64) (int128, bool) {
	neg := false
	x := a
	if x.isNeg() {
		x, neg = x.neg(), true
	}
	u := uint64(m)
	if m < 0 {
		u, neg = uint64(-m), !neg
	}
	r, ok := x.mulU(u)
	if !ok {
		return int128{}, false
	}
	if neg {
		r = r.neg()
	}
	return r, true
}

var bigTen = big.NewInt(10)

func pow10Big(n int) *big.Int { return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil) }

// int128FromDecimal converts d to an integer count of 10^-scale units,
// failing (never rounding) when d has more fractional digits than scale.
func int128FromDecimal(d decimal.Decimal, scale int) (int128, error) {
	c := d.Coefficient() // a copy
	shift := int(d.Exponent()) + scale
	if shift >= 0 {
		c.Mul(c, pow10Big(shift))
	} else {
		var r big.Int
		c.QuoRem(c, pow10Big(-shift), &r)
		if r.Sign() != 0 {
			return int128{}, fmt.Errorf("%s has more than %d fractional digits: %w", d.String(), scale, ErrInexact)
		}
	}
	if c.BitLen() > 127 {
		return int128{}, fmt.Errorf("%s: %w", d.String(), ErrOverflow)
	}
	neg := c.Sign() < 0
	c.Abs(c)
	v := int128{
		hi: new(big.Int).Rsh(c, 64).Uint64(),
		lo: new(big.Int).And(c, new(big.Int).SetUint64(^uint64(0))).Uint64(),
	}
	if neg {
		v = v.neg()
	}
	return v, nil
}

func (a int128) big() *big.Int {
	neg := a.isNeg()
	if neg {
		a = a.neg()
	}
	b := new(big.Int).SetUint64(a.hi)
	b.Lsh(b, 64)
	b.Or(b, new(big.Int).SetUint64(a.lo))
	if neg {
		b.Neg(b)
	}
	return b
}

// appendDecimal writes a as a plain decimal string with scale fractional
// digits, then drops trailing fractional zeros (and the point if nothing is
// left): 25000…0 at scale 28 with value 2.5 prints "2.5", never "2.50" or
// "2.5e0". It does not allocate beyond growing dst.
func appendDecimal(dst []byte, a int128, scale int) []byte {
	neg := a.isNeg()
	if neg {
		a = a.neg() // -2^127 stays negative; it cannot arise from checked ops
	}
	// Integer digits, least significant first, via division by 10^19.
	var digits [40]byte
	n := 0
	const chunk = 10_000_000_000_000_000_000 // 10^19
	hi, lo := a.hi, a.lo
	for {
		var r uint64
		qhi := hi / chunk
		rhi := hi % chunk
		var qlo uint64
		qlo, r = bits.Div64(rhi, lo, chunk)
		hi, lo = qhi, qlo
		last := hi == 0 && lo == 0
		for i := 0; i < 19 && (r != 0 || !last); i++ {
			digits[n] = byte('0' + r%10)
			r /= 10
			n++
		}
		if last {
			break
		}
	}
	for n <= scale { // at least one integer digit
		digits[n] = '0'
		n++
	}
	// Trim trailing fractional zeros.
	frac := scale
	start := 0
	for frac > 0 && digits[start] == '0' {
		start++
		frac--
	}
	if neg {
		dst = append(dst, '-')
	}
	for i := n - 1; i >= scale; i-- {
		dst = append(dst, digits[i])
	}
	if frac > 0 {
		dst = append(dst, '.')
		for i := scale - 1; i >= start; i-- {
			dst = append(dst, digits[i])
		}
	}
	return dst
}

// Amount is an exact sum of money in USD, a signed fixed-point number with
// Scale fractional digits. The zero value is $0. Amounts are comparable with
// == and safe to copy.
type Amount struct{ v int128 }

// AmountFromDecimal converts exactly or fails with ErrInexact / ErrOverflow.
func AmountFromDecimal(d decimal.Decimal) (Amount, error) {
	v, err := int128FromDecimal(d, Scale)
	return Amount{v}, err
}

// ParseAmount parses a plain or exponent decimal string ("0.02025", "2.5e-6").
func ParseAmount(s string) (Amount, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Amount{}, fmt.Errorf("amount %q: %w", s, err)
	}
	return AmountFromDecimal(d)
}

// MustAmount is ParseAmount for constants in tests and examples.
func MustAmount(s string) Amount {
	a, err := ParseAmount(s)
	if err != nil {
		panic("BUG: MustAmount(" + s + "): " + err.Error())
	}
	return a
}

// Add returns a+b and false on overflow.
func (a Amount) Add(b Amount) (Amount, bool) {
	v, ok := a.v.add(b.v)
	return Amount{v}, ok
}

// Sub returns a-b and false on overflow.
func (a Amount) Sub(b Amount) (Amount, bool) {
	lo, br := bits.Sub64(a.v.lo, b.v.lo, 0)
	hi, _ := bits.Sub64(a.v.hi, b.v.hi, br)
	r := int128{hi, lo}
	if a.v.isNeg() != b.v.isNeg() && r.isNeg() != a.v.isNeg() {
		return Amount{}, false
	}
	return Amount{r}, true
}

// MulInt returns a×n and false on overflow.
func (a Amount) MulInt(n int64) (Amount, bool) {
	v, ok := a.v.mulSigned(n)
	return Amount{v}, ok
}

// Cmp compares a and b: -1, 0 or +1.
func (a Amount) Cmp(b Amount) int { return a.v.cmp(b.v) }

// IsZero reports whether a is exactly $0.
func (a Amount) IsZero() bool { return a.v.isZero() }

// Sign returns -1, 0 or +1.
func (a Amount) Sign() int {
	switch {
	case a.v.isZero():
		return 0
	case a.v.isNeg():
		return -1
	}
	return 1
}

// Decimal returns the exact value with no trailing fractional zeros.
func (a Amount) Decimal() decimal.Decimal { return decimal.RequireFromString(a.String()) }

// String returns a plain decimal ("0.02025", "2.5", "0"): no exponent, no
// trailing zeros.
func (a Amount) String() string { return string(appendDecimal(nil, a.v, Scale)) }

// AppendText appends String's output to dst without allocating when dst has
// room; sinks use it to write rated events.
func (a Amount) AppendText(dst []byte) []byte { return appendDecimal(dst, a.v, Scale) }

// MarshalJSON writes the amount as a JSON string so that no JSON reader
// turns it into a float.
func (a Amount) MarshalJSON() ([]byte, error) {
	b := append([]byte{'"'}, appendDecimal(nil, a.v, Scale)...)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts a decimal string or a bare JSON number, exactly.
func (a *Amount) UnmarshalJSON(b []byte) error {
	s, err := jsonDecimalText(b)
	if err != nil {
		return err
	}
	v, err := ParseAmount(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

func jsonDecimalText(b []byte) (string, error) {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		return string(b[1 : len(b)-1]), nil
	}
	if len(b) == 0 || string(b) == "null" {
		return "", errors.New("expected a decimal string, got null")
	}
	return string(b), nil
}

// Price is an exact price in USD per unit (per token, per request, per
// image, per second), a non-negative fixed-point number with PriceScale
// fractional digits. It is a separate type from Amount because the two have
// different scales and mixing them up would be a silent factor-of-10^4 bug.
type Price struct{ v int128 }

// PriceFromDecimal converts exactly. A price with more than PriceScale
// fractional digits, a negative price or one out of range is an error: the
// importers report it with the model and field rather than rounding it.
func PriceFromDecimal(d decimal.Decimal) (Price, error) {
	if d.Sign() < 0 {
		return Price{}, fmt.Errorf("negative price %s", d.String())
	}
	v, err := int128FromDecimal(d, PriceScale)
	if err != nil {
		return Price{}, err
	}
	// Keep prices below 2^100 units (≈1.27e6 USD per unit) so that
	// price × quantity × multiplier overflow is the only overflow to check.
	if v.hi>>36 != 0 {
		return Price{}, fmt.Errorf("price %s above 1e6 USD per unit: %w", d.String(), ErrOverflow)
	}
	return Price{v}, nil
}

// ParsePrice parses a decimal string exactly.
func ParsePrice(s string) (Price, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Price{}, fmt.Errorf("price %q: %w", s, err)
	}
	return PriceFromDecimal(d)
}

// MustPrice is ParsePrice for constants in tests and examples.
func MustPrice(s string) Price {
	p, err := ParsePrice(s)
	if err != nil {
		panic("BUG: MustPrice(" + s + "): " + err.Error())
	}
	return p
}

func (p Price) Decimal() decimal.Decimal   { return decimal.RequireFromString(p.String()) }
func (p Price) String() string             { return string(appendDecimal(nil, p.v, PriceScale)) }
func (p Price) IsZero() bool               { return p.v.isZero() }
func (p Price) Cmp(q Price) int            { return p.v.cmp(q.v) }
func (p Price) AppendText(b []byte) []byte { return appendDecimal(b, p.v, PriceScale) }

// mulDecimal returns p×d when that is exact at PriceScale; importers use it
// for derived prices (a 2× rate, an OpenRouter discount).
func (p Price) mulDecimal(d decimal.Decimal) (Price, error) {
	return PriceFromDecimal(p.Decimal().Mul(d))
}

func (p Price) MarshalJSON() ([]byte, error) {
	b := append([]byte{'"'}, appendDecimal(nil, p.v, PriceScale)...)
	return append(b, '"'), nil
}

func (p *Price) UnmarshalJSON(b []byte) error {
	s, err := jsonDecimalText(b)
	if err != nil {
		return err
	}
	v, err := ParsePrice(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Markup is a multiplier applied to cost to get the customer's charge,
// stored as an integer count of 10^-MarkupScale (30% → 13000 → ×1.3000).
// The zero value means "not set" (it would otherwise make everything free,
// which is why -100% is refused); NoMarkup is ×1.
type Markup struct{ mult uint64 }

// NoMarkup charges exactly the cost.
var NoMarkup = Markup{mult: 10_000}

var (
	hundred   = decimal.NewFromInt(100)
	markupOne = decimal.New(1, MarkupScale)
)

// ParseMarkup parses a percentage: "30", "30%", "12.5", "-10" (a discount).
// At most two decimals (MarkupScale = 4 digits of multiplier) so that every
// charge stays exact; "12.345" is refused, not rounded. Below -100% would
// make charges negative and is refused too.
func ParseMarkup(pct string) (Markup, error) {
	s := pct
	if n := len(s); n > 0 && s[n-1] == '%' {
		s = s[:n-1]
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Markup{}, fmt.Errorf("markup %q: expected a percentage such as 30 or 12.5", pct)
	}
	return MarkupFromPercent(d)
}

// MarkupFromPercent builds a markup from an exact percentage.
func MarkupFromPercent(pct decimal.Decimal) (Markup, error) {
	m := pct.Add(hundred).Div(hundred).Mul(markupOne) // exact: /100 is a shift
	if !m.IsInteger() {
		return Markup{}, fmt.Errorf("markup %s%%: more than two decimals: %w", pct.String(), ErrInexact)
	}
	if m.Sign() <= 0 {
		return Markup{}, fmt.Errorf("markup %s%%: expected more than -100%% (a charge must stay positive)", pct.String())
	}
	if !m.BigInt().IsUint64() {
		return Markup{}, fmt.Errorf("markup %s%%: %w", pct.String(), ErrOverflow)
	}
	return Markup{mult: m.BigInt().Uint64()}, nil
}

// MustMarkup is ParseMarkup for constants.
func MustMarkup(pct string) Markup {
	m, err := ParseMarkup(pct)
	if err != nil {
		panic("BUG: MustMarkup(" + pct + "): " + err.Error())
	}
	return m
}

// IsSet reports whether m holds a value (the zero Markup is "unset").
func (m Markup) IsSet() bool { return m.mult != 0 }

// Percent returns the markup as a percentage ("30" for ×1.3).
func (m Markup) Percent() decimal.Decimal {
	return decimal.New(int64(m.mult), -MarkupScale).Sub(decimal.NewFromInt(1)).Mul(hundred)
}

// Multiplier returns the factor applied to cost (1.3 for 30%).
func (m Markup) Multiplier() decimal.Decimal { return decimal.New(int64(m.mult), -MarkupScale) }

func (m Markup) String() string { return m.Percent().String() + "%" }

// lineAmounts is the whole of the hot-path arithmetic: cost = price × qty
// and charge = price × qty × multiplier, both exact at Scale.
func lineAmounts(p Price, qty int64, m Markup) (cost, charge Amount, ok bool) {
	x, ok1 := p.v.mulU(uint64(qty))
	c, ok2 := x.mulU(10_000) // 10^MarkupScale: PriceScale → Scale
	h, ok3 := x.mulU(m.mult)
	return Amount{c}, Amount{h}, ok1 && ok2 && ok3
}

// RoundingMode says how RoundForInvoice resolves the digits it drops.
type RoundingMode uint8

const (
	// RoundHalfEven (banker's rounding) is unbiased over many invoices.
	RoundHalfEven RoundingMode = iota
	// RoundHalfUp rounds .5 away from zero, the schoolbook rule.
	RoundHalfUp
	// RoundUp rounds any remainder away from zero (never under-charges).
	RoundUp
	// RoundDown truncates toward zero (never over-charges).
	RoundDown
)

// RoundForInvoice is the only place in tariff where money is rounded: when
// an amount is presented or invoiced in a currency with minorDigits decimal
// places (2 for USD cents). Rating and aggregation stay exact; round the
// invoice total, not each event, or the rounding error grows with volume.
func (a Amount) RoundForInvoice(minorDigits int32, mode RoundingMode) decimal.Decimal {
	d := a.Decimal()
	switch mode {
	case RoundHalfUp:
		return d.Round(minorDigits)
	case RoundUp:
		return d.RoundUp(minorDigits)
	case RoundDown:
		return d.RoundDown(minorDigits)
	default:
		return d.RoundBank(minorDigits)
	}
}

func mustDec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// AppendBinary appends a's exact 16-byte form (big-endian two's
// complement at Scale), for state stores.
func (a Amount) AppendBinary(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, a.v.hi)
	return binary.BigEndian.AppendUint64(dst, a.v.lo)
}

// AmountFromBinary reads the form AppendBinary wrote.
func AmountFromBinary(b []byte) (Amount, error) {
	if len(b) != 16 {
		return Amount{}, fmt.Errorf("amount: %d bytes, expected 16", len(b))
	}
	return Amount{int128{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}}, nil
}

// ScaledDecimal returns the exact value as a decimal of at most Scale
// fractional digits. It skips the formatting and parsing Decimal does,
// and the big integer when the value without its trailing zeros fits in
// 64 bits (nearly every amount), for encoders that rescale anyway (the
// ClickHouse sink); use Decimal for anything a person reads.
func (a Amount) ScaledDecimal() decimal.Decimal { return a.v.scaledDecimal(Scale) }

// ScaledDecimal is Amount.ScaledDecimal for prices (PriceScale digits).
func (p Price) ScaledDecimal() decimal.Decimal { return p.v.scaledDecimal(PriceScale) }

// scaledDecimal returns v x 10^-scale exactly.
func (v int128) scaledDecimal(scale int32) decimal.Decimal {
	neg := v.isNeg()
	m := v
	if neg {
		m = v.neg()
	}
	exp := -scale
	for m.hi != 0 || m.lo > math.MaxInt64 {
		if m.hi>>63 != 0 {
			break // the magnitude of the most negative value: keep it big
		}
		q, r := m.divmod10()
		if r != 0 {
			return decimal.NewFromBigInt(v.big(), -scale)
		}
		m, exp = q, exp+1
	}
	if m.hi != 0 || m.lo > math.MaxInt64 {
		return decimal.NewFromBigInt(v.big(), -scale)
	}
	n := int64(m.lo)
	if neg {
		n = -n
	}
	return decimal.New(n, exp)
}

// divmod10 divides a non-negative v by ten.
func (v int128) divmod10() (int128, uint64) {
	hi, r := v.hi/10, v.hi%10
	lo, r := bits.Div64(r, v.lo, 10)
	return int128{hi, lo}, r
}
