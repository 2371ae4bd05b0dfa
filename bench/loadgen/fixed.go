package loadgen

import (
	"fmt"
	"math/big"
	"math/bits"
	"strings"

	"github.com/tariff-dev/tariff/rating"
)

// The partner cost figures written into messages (gateway reported_cost,
// LiteLLM response_cost) are computed per message, so they use exact
// unsigned 128-bit fixed point at the price scale instead of decimal's big
// integers. They are reconciliation figures only: the expected totals are
// computed with decimal (expected.go). fixed_test.go checks this against
// decimal.

// u128 counts 10^-rating.PriceScale USD.
type u128 struct{ hi, lo uint64 }

// priceU128 converts a price exactly. Prices are non-negative and have at
// most PriceScale fractional digits by construction (rating.Price).
func priceU128(p rating.Price) u128 {
	s := p.String()
	intPart, frac, _ := strings.Cut(s, ".")
	if len(frac) > rating.PriceScale {
		panic("BUG: price " + s + " has more than PriceScale fractional digits")
	}
	digits := intPart + frac + strings.Repeat("0", rating.PriceScale-len(frac))
	n, ok := new(big.Int).SetString(digits, 10)
	if !ok || n.Sign() < 0 || n.BitLen() > 128 {
		panic(fmt.Sprintf("BUG: price %s does not fit 128 bits at scale %d", s, rating.PriceScale))
	}
	lo := new(big.Int).And(n, new(big.Int).SetUint64(^uint64(0))).Uint64()
	hi := new(big.Int).Rsh(n, 64).Uint64()
	return u128{hi, lo}
}

// addMul returns a + p*q, and false on overflow.
func (a u128) addMul(p u128, q uint64) (u128, bool) {
	h1, l1 := bits.Mul64(p.lo, q)
	h2, l2 := bits.Mul64(p.hi, q)
	hi, c := bits.Add64(h1, l2, 0)
	if h2 != 0 || c != 0 {
		return u128{}, false
	}
	lo, c := bits.Add64(a.lo, l1, 0)
	hi, c2 := bits.Add64(a.hi, hi, c)
	if c2 != 0 {
		return u128{}, false
	}
	return u128{hi, lo}, true
}

// appendFixed appends a as a plain decimal with scale fractional digits,
// trailing fractional zeros (and a bare point) removed: "0.02025", "3", "0".
func appendFixed(dst []byte, a u128, scale int) []byte {
	var buf [40]byte // 2^128 has 39 digits
	i := len(buf)
	for a.hi != 0 || a.lo != 0 {
		// Divide by 10^19 (the largest power of ten in 64 bits) and emit
		// the remainder's 19 digits.
		const chunk = 10_000_000_000_000_000_000
		qhi := a.hi / chunk
		qlo, r := bits.Div64(a.hi%chunk, a.lo, chunk)
		a = u128{qhi, qlo}
		for k := 0; k < 19; k++ {
			i--
			buf[i] = byte('0' + r%10)
			r /= 10
			if a.hi == 0 && a.lo == 0 && r == 0 {
				break
			}
		}
	}
	digits := buf[i:]
	if len(digits) == 0 {
		return append(dst, '0')
	}
	if scale == 0 {
		return append(dst, digits...)
	}
	// Split at the point, padding the fraction to scale digits.
	if len(digits) <= scale {
		dst = append(dst, '0', '.')
		for k := len(digits); k < scale; k++ {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	} else {
		dst = append(dst, digits[:len(digits)-scale]...)
		dst = append(dst, '.')
		dst = append(dst, digits[len(digits)-scale:]...)
	}
	for dst[len(dst)-1] == '0' {
		dst = dst[:len(dst)-1]
	}
	if dst[len(dst)-1] == '.' {
		dst = dst[:len(dst)-1]
	}
	return dst
}
