package balance

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The same command id twice is a no-op, also after the account went
// through storage; a grant id already held is a no-op under a new command
// id; and once a command id has left the ring, the content check still
// catches a repeated grant.
func TestDuplicateCommandIDs(t *testing.T) {
	h := newHarness(t)
	c := &Command{ID: "topup-1", CustomerID: cust, Kind: CommandGrant, At: day(1), Grant: &Grant{ID: "g1", Amount: usd("10")}}
	if changed, err := h.a.Apply(c, nil); err != nil || !changed {
		t.Fatalf("first: %v %v", changed, err)
	}
	if changed, err := h.a.Apply(c, nil); err != nil || changed {
		t.Fatalf("second: %v %v", changed, err)
	}
	state, _ := h.a.MarshalBinary()
	var b Account
	if err := b.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	if changed, _ := b.Apply(c, nil); changed {
		t.Fatal("duplicate applied after a round trip")
	}
	retry := *c
	retry.ID = "topup-1-retry"
	if changed, _ := h.a.Apply(&retry, nil); changed {
		t.Fatal("same grant id applied twice")
	}
	// Push topup-1 out of the ring with other commands.
	for i := range appliedIDs + 5 {
		h.cmd(&Command{ID: fmt.Sprintf("pause-%d", i), Kind: CommandSetPause, At: day(2), Pause: PauseOverride(i % 2)})
	}
	if h.a.applied.has(commandHash("topup-1")) {
		t.Fatal("ring did not forget")
	}
	if changed, _ := h.a.Apply(c, nil); changed {
		t.Fatal("repeated grant applied after the ring forgot its command")
	}
	eqAmount(t, "balance", h.balance(), "10")
}

func TestCommandValidationNamesFields(t *testing.T) {
	for _, c := range []struct {
		cmd  Command
		want string
	}{
		{Command{ID: "x", CustomerID: cust, Kind: CommandGrant, At: day(1), Grant: &Grant{ID: "g", Amount: usd("-1")}}, "grant.amount: -1: expected a positive amount"},
		{Command{ID: "x", CustomerID: cust, Kind: CommandGrant, At: day(1), Grant: &Grant{ID: "g", Amount: usd("1"), Currency: "EUR"}}, `grant.currency: "EUR": expected USD`},
		{Command{ID: "x", CustomerID: cust, Kind: CommandGrant, At: day(1), Grant: &Grant{ID: "g", Amount: usd("10000001")}}, "grant.amount: 10000001: expected at most 10000000 USD"},
		{Command{ID: "x", CustomerID: cust, Kind: CommandChangePlan, At: day(1), Plan: &Plan{ID: "p", Cycle: Cycle{Kind: CycleInterval, Interval: 60}}}, "plan.cycle.interval: 60ns: expected 1h0m0s to 8784h0m0s"},
		{Command{ID: "x", CustomerID: cust, Kind: CommandChangePlan, At: day(1), Plan: &Plan{ID: "p", TokenGroups: []TokenGroup{{Name: "g"}}}}, "plan.token_groups[0].tokens: 0: expected 1 to"},
		{Command{ID: "x", CustomerID: cust, Kind: CommandSetThresholds, At: day(1), Thresholds: []Threshold{{Kind: ThresholdPercent, Percent: 120}}}, "command.thresholds[0].percent: 120: expected 1 to 100"},
		{Command{ID: "", CustomerID: cust, Kind: CommandSetPause, At: day(1)}, `command.id: "": expected 1 to 512 bytes`},
		{Command{ID: "x", CustomerID: cust, Kind: 42, At: day(1)}, "command.kind: 42"},
		{Command{ID: "x", CustomerID: cust, Kind: CommandSetPause}, "command.at: missing time"},
	} {
		err := c.cmd.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.cmd, err, c.want)
		}
	}
	a := NewAccount(cust)
	if _, err := a.Apply(&Command{ID: "x", CustomerID: "other", Kind: CommandSetPause, At: day(1)}, nil); !errors.Is(err, ErrWrongCustomer) {
		t.Errorf("other customer's command: %v", err)
	}
	ev := spend("e", day(1), "1")
	ev.Event.CustomerID = "other"
	if err := a.ApplyUsage(ev, nil); !errors.Is(err, ErrWrongCustomer) {
		t.Errorf("other customer's event: %v", err)
	}
	ev = spend("e", day(1), "1")
	ev.Charge = usd("2")
	if err := a.ApplyUsage(ev, nil); err == nil || !strings.Contains(err.Error(), "expected the sum of its lines, 1") {
		t.Errorf("inconsistent lines: %v", err)
	}
}

// The JSON form of a command is its wire form on Kafka: enums as words,
// amounts as exact strings.
func TestCommandJSON(t *testing.T) {
	in := `{"id":"c-1","customer_id":"acme","kind":"change_plan","at":"2026-11-01T00:00:00Z",
		"plan":{"id":"pro","version":2,"cycle":{"kind":"interval","interval":"168h"},"fee":"49.99","allowance":"10",
		"token_groups":[{"name":"gpt","match":{"price_keys":["gpt-4o"]},"units":["input","output"],"tokens":1000000}],
		"overage":"block","credits":"apply","thresholds":[{"kind":"percent","percent":80},{"kind":"amount","amount":"5"}]},
		"thresholds":null}`
	var c Command
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Plan.Cycle.Interval != 7*24*time.Hour || c.Plan.Fee != usd("49.99") || c.Plan.Overage != OverageBlock || c.Plan.TokenGroups[0].Units != Units(0, 4) || c.Plan.Thresholds[1].Amount != usd("5") {
		t.Errorf("decoded %+v", c.Plan)
	}
	out, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	var back Command
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if back.Plan.TokenGroups[0].Units != c.Plan.TokenGroups[0].Units || back.Kind != CommandChangePlan || back.Plan.Cycle != c.Plan.Cycle {
		t.Errorf("round trip %s", out)
	}
	if err := json.Unmarshal([]byte(`{"kind":"refund"}`), &c); err == nil || !strings.Contains(err.Error(), "expected one of grant") {
		t.Errorf("unknown kind: %v", err)
	}
}
