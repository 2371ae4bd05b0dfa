package balance

import (
	"fmt"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/schemas"
)

// benchAccount is a hybrid account in its steady state: token group and
// money allowance used up, four grants (two restricted to another model),
// thresholds, so every event walks the whole draw order to a grant.
func benchAccount(b *testing.B) *Account {
	a := NewAccount(cust)
	var fx Effects
	p := Plan{ID: "hybrid", Version: 1, Fee: usd("49"), Allowance: usd("1"),
		TokenGroups: []TokenGroup{{Name: "gpt", Match: Match{PriceKeys: []string{"gpt-4o"}}, Tokens: 1000}},
		Thresholds:  []Threshold{{Kind: ThresholdPercent, Percent: 80}, {Kind: ThresholdAmount, Amount: usd("10")}}}
	cmds := []*Command{{Kind: CommandChangePlan, At: nov1, Plan: &p}}
	for i, r := range []string{"o3", "o3", "", ""} {
		g := &Grant{ID: fmt.Sprintf("g%d", i), Amount: usd("1000000"), Priority: int32(i % 2), ExpiresAt: day(25)}
		if r != "" {
			g.Restrict.PriceKeys = []string{r}
		}
		cmds = append(cmds, &Command{Kind: CommandGrant, At: nov1, Grant: g})
	}
	for i, c := range cmds {
		c.ID, c.CustomerID = fmt.Sprint("c", i), cust
		if _, err := a.Apply(c, &fx); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.ApplyUsage(charged("warm", day(2), "gpt-4o", schemas.UnitInput, 5000, "0.0025"), &fx); err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkApplyUsage: one rated event (input + output lines) on the
// steady-state hybrid account, effects buffer reused per batch.
func BenchmarkApplyUsage(b *testing.B) {
	a := benchAccount(b)
	ev := charged("e", day(3), "gpt-4o", schemas.UnitInput, 1200, "0.0000025", schemas.UnitOutput, 350, "0.00001")
	var fx Effects
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%256 == 0 {
			fx.Reset() // a batch
		}
		ev.Event.Time = day(3).Add(time.Duration(i) * time.Microsecond)
		if err := a.ApplyUsage(ev, &fx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyUsageTokens: events covered by included tokens (the
// token group's allowance is large enough for the whole run).
func BenchmarkApplyUsageTokens(b *testing.B) {
	a := NewAccount(cust)
	var fx Effects
	p := Plan{ID: "tokens", Version: 1, TokenGroups: []TokenGroup{{Name: "gpt", Match: Match{PriceKeys: []string{"gpt-4o"}}, Tokens: MaxTokens}},
		Thresholds: []Threshold{{Kind: ThresholdPercent, Percent: 80}}}
	if _, err := a.Apply(&Command{ID: "c", CustomerID: cust, Kind: CommandChangePlan, At: nov1, Plan: &p}, &fx); err != nil {
		b.Fatal(err)
	}
	ev := charged("e", day(3), "gpt-4o", schemas.UnitInput, 1200, "0.0000025", schemas.UnitOutput, 350, "0.00001")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%256 == 0 {
			fx.Reset()
		}
		if err := a.ApplyUsage(ev, &fx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEntitlement(b *testing.B) {
	a := benchAccount(b)
	now := day(3)
	b.ReportAllocs()
	for b.Loop() {
		if e := a.Entitlement(now); !e.Allowed {
			b.Fatal(e)
		}
	}
}

func BenchmarkViewEntitlement(b *testing.B) {
	a := benchAccount(b)
	v := a.View()
	now := day(3)
	b.ReportAllocs()
	for b.Loop() {
		if e := v.Entitlement(now); !e.Allowed {
			b.Fatal(e)
		}
	}
}

func BenchmarkMarshalAccount(b *testing.B) {
	a := benchAccount(b)
	buf := a.AppendBinary(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = a.AppendBinary(buf[:0])
	}
}

func BenchmarkUnmarshalAccount(b *testing.B) {
	a := benchAccount(b)
	buf := a.AppendBinary(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var c Account
	for b.Loop() {
		if err := c.UnmarshalBinary(buf); err != nil {
			b.Fatal(err)
		}
	}
}
