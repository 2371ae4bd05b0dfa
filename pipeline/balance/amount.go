package balance

import (
	"math/big"
	"math/bits"
	"time"

	"github.com/tariff-dev/tariff/rating"
)

// The engine only ever adds, subtracts and compares rating.Amounts, with
// three exceptions that divide, each truncating toward zero at the
// Amount's own resolution (10^-28 USD) or to a whole token:
//
//   - prorating a fee or an allowance on a plan change (prorate),
//   - prorating a token allowance (prorateTokens),
//   - the charge of part of a line covered by included tokens (mulDiv),
//     which is exact because rating makes a line's charge an exact multiple
//     of its quantity (charge = quantity × price × markup).
//
// None of them is invoice rounding: that happens once, in BuildStatement.

func minAmount(a, b rating.Amount) rating.Amount {
	if a.Cmp(b) <= 0 {
		return a
	}
	return b
}

// mustAdd adds two amounts whose sum the caller has bounded (parts of a
// total that was itself checked for overflow).
func mustAdd(a, b rating.Amount) rating.Amount {
	s, ok := a.Add(b)
	if !ok {
		panic("BUG: bounded amount sum overflows")
	}
	return s
}

func mustSub(a, b rating.Amount) rating.Amount {
	s, ok := a.Sub(b)
	if !ok {
		panic("BUG: amount difference overflows")
	}
	return s
}

func amountBig(a rating.Amount) *big.Int {
	var buf [16]byte
	b := a.AppendBinary(buf[:0])
	v := new(big.Int).SetBytes(b)
	if b[0]&0x80 != 0 { // two's complement: subtract 2^128
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), 128))
	}
	return v
}

// mulDiv returns floor(a × num / den) for a ≥ 0, 0 ≤ num ≤ den, den > 0.
// The result is at most a, so it always fits.
func mulDiv(a rating.Amount, num, den int64) rating.Amount {
	if num == den {
		return a
	}
	if a.Sign() <= 0 || num <= 0 || den <= 0 {
		return rating.Amount{}
	}
	v := amountBig(a)
	v.Mul(v, big.NewInt(num))
	v.Quo(v, big.NewInt(den))
	var buf [16]byte
	v.FillBytes(buf[:])
	r, err := rating.AmountFromBinary(buf[:])
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return r
}

// prorate returns the part of a that the remaining time of a period
// carries: floor(a × remaining / length).
func prorate(a rating.Amount, remaining, length time.Duration) rating.Amount {
	return mulDiv(a, int64(remaining), int64(length))
}

// prorateTokens is prorate for a token count, rounded down to a whole token.
func prorateTokens(n int64, remaining, length time.Duration) int64 {
	if remaining >= length {
		return n
	}
	if n <= 0 || remaining <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(n), uint64(remaining))
	// hi < length because n < 2^63 and remaining < length.
	q, _ := bits.Div64(hi, lo, uint64(length))
	return int64(q)
}

// geScaled reports whether x×m ≥ y×n for non-negative amounts and small
// multipliers; it falls back to big integers when a product overflows.
func geScaled(x rating.Amount, m int64, y rating.Amount, n int64) bool {
	xm, ok1 := x.MulInt(m)
	yn, ok2 := y.MulInt(n)
	if ok1 && ok2 {
		return xm.Cmp(yn) >= 0
	}
	l := amountBig(x)
	l.Mul(l, big.NewInt(m))
	r := amountBig(y)
	r.Mul(r, big.NewInt(n))
	return l.Cmp(r) >= 0
}

// geTokens reports whether used×100 ≥ allowance×pct without overflow.
func geTokens(used, allowance int64, pct uint8) bool {
	h1, l1 := bits.Mul64(uint64(used), 100)
	h2, l2 := bits.Mul64(uint64(allowance), uint64(pct))
	if h1 != h2 {
		return h1 > h2
	}
	return l1 >= l2
}
