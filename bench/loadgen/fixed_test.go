package loadgen

import (
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/rating"
)

// TestFixedAgainstDecimal checks the 128-bit cost arithmetic used for the
// partner cost fields against decimal, on real-shaped and random prices.
func TestFixedAgainstDecimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	prices := []string{"0", "3e-6", "0.0000029999900000000002", "0.0000000208333333333333", "1.5e-5", "60", "0.000000000000000000000001"}
	for i := 0; i < 2000; i++ {
		prices = append(prices, decimal.New(r.Int64N(1e12), -int32(7+r.IntN(18))).String())
	}
	for _, ps := range prices {
		p := rating.MustPrice(ps)
		pf := priceU128(p)
		var sum u128
		want := decimal.Zero
		for k := 0; k < 5; k++ {
			q := r.Int64N(2_000_000)
			var ok bool
			if sum, ok = sum.addMul(pf, uint64(q)); !ok {
				t.Fatalf("overflow at %s × %d", ps, q)
			}
			want = want.Add(p.Decimal().Mul(decimal.NewFromInt(q)))
		}
		got := string(appendCost(nil, sum))
		if !decimal.RequireFromString(got).Equal(want) || (got != "0" && got[len(got)-1] == '0' && containsDot(got)) {
			t.Fatalf("price %s: fixed %s, decimal %s", ps, got, want)
		}
	}
	if _, ok := (u128{}).addMul(u128{hi: 1 << 62}, 8); ok {
		t.Fatal("product overflow not reported")
	}
	if _, ok := (u128{^uint64(0), ^uint64(0)}).addMul(u128{lo: 1}, 1); ok {
		t.Fatal("sum overflow not reported")
	}
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}
