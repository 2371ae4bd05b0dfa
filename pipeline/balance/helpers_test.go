package balance

import (
	"fmt"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

const cust = "acme"

var nov1 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func usd(s string) rating.Amount { return rating.MustAmount(s) }

func day(n int) time.Time { return nov1.AddDate(0, 0, n-1) }

// charged is a rated event with one line per (unit, quantity, price per
// unit), charge = quantity × price exactly, like rating with no markup.
func charged(id string, t time.Time, priceKey string, lines ...any) *sinks.RatedEvent {
	ev := &sinks.RatedEvent{Event: schemas.UsageEvent{ID: id, Time: t, CustomerID: cust, Model: priceKey},
		PriceKey: priceKey, Provider: "openai"}
	for i := 0; i < len(lines); i += 3 {
		u, q, p := lines[i].(schemas.Unit), int64(lines[i+1].(int)), rating.MustAmount(lines[i+2].(string))
		c, ok := p.MulInt(q)
		if !ok {
			panic("overflow")
		}
		ev.Lines = append(ev.Lines, sinks.Line{Unit: u, Quantity: q, Cost: c, Charge: c})
		ev.Charge, _ = ev.Charge.Add(c)
		ev.Cost = ev.Charge
	}
	return ev
}

// spend is an event costing exactly amount (one request line).
func spend(id string, t time.Time, amount string) *sinks.RatedEvent {
	return charged(id, t, "gpt-4o", schemas.UnitRequests, 1, amount)
}

type harness struct {
	t  *testing.T
	a  *Account
	fx Effects
	n  int
}

func newHarness(t *testing.T) *harness { return &harness{t: t, a: NewAccount(cust)} }

func (h *harness) use(ev *sinks.RatedEvent) []Alert {
	h.t.Helper()
	h.fx.Reset()
	if err := h.a.ApplyUsage(ev, &h.fx); err != nil {
		h.t.Fatalf("ApplyUsage(%s): %v", ev.Event.ID, err)
	}
	h.checkInvariants()
	return h.fx.Alerts
}

func (h *harness) spend(t time.Time, amount string) []Alert {
	h.t.Helper()
	h.n++
	return h.use(spend(fmt.Sprintf("ev-%d", h.n), t, amount))
}

func (h *harness) cmd(c *Command) []Alert {
	h.t.Helper()
	c.CustomerID = cust
	if c.ID == "" {
		h.n++
		c.ID = fmt.Sprintf("cmd-%d", h.n)
	}
	h.fx.Reset()
	if _, err := h.a.Apply(c, &h.fx); err != nil {
		h.t.Fatalf("Apply(%s %s): %v", c.Kind, c.ID, err)
	}
	h.checkInvariants()
	return h.fx.Alerts
}

func (h *harness) advance(t time.Time) []Alert {
	h.t.Helper()
	h.fx.Reset()
	h.a.AdvanceTo(t, &h.fx)
	h.checkInvariants()
	return h.fx.Alerts
}

func (h *harness) plan(t time.Time, p Plan) []Alert {
	h.t.Helper()
	return h.cmd(&Command{Kind: CommandChangePlan, At: t, Plan: &p})
}

func (h *harness) grant(t time.Time, id, amount string, opts ...func(*Grant)) []Alert {
	h.t.Helper()
	g := Grant{ID: id, Amount: usd(amount), Currency: "USD"}
	for _, o := range opts {
		o(&g)
	}
	return h.cmd(&Command{Kind: CommandGrant, At: t, Grant: &g})
}

// checkInvariants re-checks the state after every step: the invariants
// the decoder enforces hold, and the state survives an encoding round
// trip byte for byte.
func (h *harness) checkInvariants() {
	h.t.Helper()
	if err := h.a.check(); err != nil {
		h.t.Fatalf("invariants: %v", err)
	}
	b, _ := h.a.MarshalBinary()
	var b2 Account
	if err := b2.UnmarshalBinary(b); err != nil {
		h.t.Fatalf("decode own state: %v", err)
	}
	if c, _ := b2.MarshalBinary(); string(c) != string(b) {
		h.t.Fatalf("state changes on a round trip")
	}
}

func (h *harness) balance() rating.Amount {
	m, _ := h.a.available()
	return m
}

func eqAmount(t *testing.T, what string, got rating.Amount, want string) {
	t.Helper()
	if got != usd(want) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func kinds(as []Alert) string {
	s := ""
	for i, a := range as {
		if i > 0 {
			s += ","
		}
		s += a.Kind.String()
		if a.Kind == AlertThreshold {
			s += "(" + a.Threshold.String()
			if a.Bucket != "" {
				s += " " + a.Bucket
			}
			s += ")"
		}
	}
	return s
}

func wantAlerts(t *testing.T, what string, got []Alert, want string) {
	t.Helper()
	if k := kinds(got); k != want {
		t.Errorf("%s: alerts %q, want %q", what, k, want)
	}
}

func draws(fx *Effects) string {
	s := ""
	for i, d := range fx.Draws {
		if i > 0 {
			s += " "
		}
		s += d.Source.String()
		if d.Ref != "" {
			s += ":" + d.Ref
		}
		if d.Tokens != 0 {
			s += fmt.Sprintf("[%d]", d.Tokens)
		}
		s += "=" + d.Amount.String()
	}
	return s
}
