package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

type fakeCommands struct {
	mu      sync.Mutex
	got     []balance.Command
	assigns []pipeline.AssignRateCard
	fail    error
}

func (f *fakeCommands) SubmitAssignment(ctx context.Context, c *pipeline.AssignRateCard) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.assigns = append(f.assigns, *c)
	return nil
}

func (f *fakeCommands) Submit(ctx context.Context, c *balance.Command) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.got = append(f.got, *c)
	return nil
}

func (f *fakeCommands) Topic() string { return "tariff.commands" }

func (f *fakeCommands) last(t *testing.T) balance.Command {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		t.Fatal("no command submitted")
	}
	return f.got[len(f.got)-1]
}

type fakeAccounts map[string]struct {
	a       *balance.Account
	periods []balance.PeriodUsage
}

func (f fakeAccounts) Account(customer string) (*balance.Account, []balance.PeriodUsage, bool, error) {
	if customer == "broken" {
		return nil, nil, false, errors.New("state store closed")
	}
	e, ok := f[customer]
	return e.a, e.periods, ok, nil
}

func send(t *testing.T, method, url, body string, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// errorText is the message of an error answer.
func errorText(body []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(body, &e) != nil {
		return string(body)
	}
	return e.Error
}

var proPlan = balance.Plan{ID: "pro", Version: 1, Fee: rating.MustAmount("49"), Allowance: rating.MustAmount("20")}

func TestAdminBalanceCommands(t *testing.T) {
	cmds := &fakeCommands{}
	srv := newTestServer(t, tokenConfig(t), Deps{Commands: cmds, Plans: []balance.Plan{proPlan}})

	// A top-up: the amount is read exactly, the idempotency key is the
	// command id and the grant id defaults to it.
	code, body := send(t, "POST", srv.url+"/v1/customers/acme/grants", `{"amount": 25.10, "expires_at": "2027-01-01T00:00:00Z"}`, "Idempotency-Key", "topup-1")
	if code != http.StatusAccepted {
		t.Fatalf("grant: %d %s", code, body)
	}
	var acc CommandAccepted
	if err := json.Unmarshal(body, &acc); err != nil {
		t.Fatal(err)
	}
	if acc.CommandID != "topup-1" || acc.GrantID != "topup-1" || acc.Kind != "grant" || acc.Topic != "tariff.commands" {
		t.Fatalf("accepted = %+v", acc)
	}
	c := cmds.last(t)
	if c.Kind != balance.CommandGrant || c.CustomerID != "acme" || c.ID != "topup-1" || c.Grant.Amount.String() != "25.1" ||
		!c.Grant.ExpiresAt.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) || !c.At.Equal(srv.clock.now()) {
		t.Fatalf("command = %+v grant %+v", c, c.Grant)
	}
	// Without a key each call is a new command.
	send(t, "POST", srv.url+"/v1/customers/acme/grants", `{"amount": "1"}`)
	send(t, "POST", srv.url+"/v1/customers/acme/grants", `{"amount": "1"}`)
	if a, b := cmds.got[1].ID, cmds.got[2].ID; a == b || !strings.HasPrefix(a, "cmd_") {
		t.Fatalf("generated ids %q %q", a, b)
	}

	if code, body := send(t, "DELETE", srv.url+"/v1/customers/acme/grants/topup-1", ""); code != 202 || cmds.last(t).GrantID != "topup-1" || cmds.last(t).Kind != balance.CommandVoidGrant {
		t.Fatalf("void: %d %s", code, body)
	}
	if code, body := send(t, "PUT", srv.url+"/v1/customers/acme/plan", `{"plan_id": "pro", "effective_at": "2026-12-01T00:00:00Z"}`); code != 202 {
		t.Fatalf("plan: %d %s", code, body)
	}
	if c := cmds.last(t); c.Kind != balance.CommandChangePlan || c.Plan.ID != "pro" || c.Plan.Fee.String() != "49" || c.EffectiveAt.Month() != 12 {
		t.Fatalf("plan command = %+v", c)
	}
	if code, body := send(t, "PUT", srv.url+"/v1/customers/acme/thresholds", `{"thresholds": [{"kind": "percent", "percent": 80}, {"kind": "amount", "amount": "5"}]}`); code != 202 {
		t.Fatalf("thresholds: %d %s", code, body)
	}
	if c := cmds.last(t); len(c.Thresholds) != 2 || c.Thresholds[0].Percent != 80 || c.Thresholds[1].Amount.String() != "5" {
		t.Fatalf("thresholds command = %+v", c)
	}
	if code, body := send(t, "PUT", srv.url+"/v1/customers/acme/pause", `{"pause": "pause"}`); code != 202 || cmds.last(t).Pause != balance.PauseForced {
		t.Fatalf("pause: %d %s", code, body)
	}
	n := len(cmds.got)

	// Every bad input is refused with the field named, and nothing is
	// published.
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/v1/customers/acme/grants", `{"amount": "-5"}`, "grant.amount"},
		{"POST", "/v1/customers/acme/grants", `{"amount": "5", "currency": "EUR"}`, "currency"},
		{"POST", "/v1/customers/acme/grants", `{"amount": "5", "amout": "5"}`, `unknown field "amout"`},
		{"POST", "/v1/customers/acme/grants", `{"amount": "abc"}`, "amount"},
		{"POST", "/v1/customers/acme/grants", ``, "expected a JSON object"},
		{"POST", "/v1/customers/acme/grants", `{"amount": "5"} {}`, "more data"},
		{"PUT", "/v1/customers/acme/plan", `{"plan_id": "enterprise"}`, `plan_id "enterprise": expected one of the configured plans (pro)`},
		{"PUT", "/v1/customers/acme/plan", `{}`, "plan_id or plan"},
		{"PUT", "/v1/customers/acme/plan", `{"plan": {"id": "x", "cycle": {"kind": "interval", "interval": "1m"}}}`, "plan.cycle.interval"},
		{"PUT", "/v1/customers/acme/pause", `{"pause": "stop"}`, `pause: "stop": expected auto, pause or resume`},
		{"PUT", "/v1/customers/acme/thresholds", `{"thresholds": [{"kind": "percent", "percent": 120}]}`, "thresholds"},
		{"POST", "/v1/customers/" + strings.Repeat("x", 600) + "/grants", `{"amount": "5"}`, "customer id"},
	} {
		code, body := send(t, tc.method, srv.url+tc.path, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(errorText(body), tc.want) {
			t.Errorf("%s %s %s: %d %s, want 400 naming %q", tc.method, tc.path[:min(len(tc.path), 40)], tc.body, code, body, tc.want)
		}
	}
	if len(cmds.got) != n {
		t.Fatalf("refused calls published %d commands", len(cmds.got)-n)
	}

	// A broker that does not take the command: 503, and the caller is
	// told to retry with the same key.
	cmds.fail = errors.New("leader not available")
	if code, body := send(t, "POST", srv.url+"/v1/customers/acme/grants", `{"amount": "5"}`, "Idempotency-Key", "k"); code != 503 || !strings.Contains(string(body), "Idempotency-Key") {
		t.Fatalf("broker down: %d %s", code, body)
	}
	// Without the token nothing goes through.
	req, _ := http.NewRequest("POST", srv.url+"/v1/customers/acme/grants", strings.NewReader(`{"amount": "5"}`))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", res.StatusCode)
	}
}

func TestAdminNoCommandTopic(t *testing.T) {
	srv := newTestServer(t, tokenConfig(t), Deps{})
	if code, body := send(t, "POST", srv.url+"/v1/customers/acme/grants", `{"amount": "5"}`); code != 503 || !strings.Contains(string(body), "command") {
		t.Fatalf("%d %s", code, body)
	}
}

// spendEvent is a rated event charging amount (one request line).
func spendEvent(id string, at time.Time, amount string) *sinks.RatedEvent {
	c := rating.MustAmount(amount)
	return &sinks.RatedEvent{Event: schemas.UsageEvent{ID: id, Time: at, CustomerID: "acme", Model: "gpt-4o"},
		PriceKey: "gpt-4o", Provider: "openai", Cost: c, Charge: c,
		Lines: []sinks.Line{{Unit: schemas.UnitRequests, Quantity: 1, Cost: c, Charge: c}}}
}

func TestAdminAccountAndStatement(t *testing.T) {
	// An account on the pro plan from Oct 1 with a $10 grant: October
	// closes with $20 included and $5.005 of the grant drawn; November
	// runs with $3.333 of usage so far.
	oct1 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	a := balance.NewAccount("acme")
	var fx balance.Effects
	for _, c := range []balance.Command{
		{ID: "c1", CustomerID: "acme", Kind: balance.CommandChangePlan, At: oct1, Plan: &proPlan},
		{ID: "c2", CustomerID: "acme", Kind: balance.CommandGrant, At: oct1, Grant: &balance.Grant{ID: "pack", Amount: rating.MustAmount("10")}},
	} {
		if _, err := a.Apply(&c, &fx); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range []*sinks.RatedEvent{
		spendEvent("e1", oct1.Add(24*time.Hour), "25.005"),
		spendEvent("e2", oct1.AddDate(0, 1, 2), "3.333"),
	} {
		if err := a.ApplyUsage(ev, &fx); err != nil {
			t.Fatal(err)
		}
	}
	if len(fx.Closed) != 1 {
		t.Fatalf("closed periods = %d, want 1", len(fx.Closed))
	}
	srv := newTestServer(t, tokenConfig(t), Deps{Accounts: fakeAccounts{"acme": {a, slices.Clone(fx.Closed)}}})

	var av AccountView
	getJSON(t, srv.url+"/v1/customers/acme", &av)
	if av.Plan.ID != "pro" || !av.PeriodStart.Equal(oct1.AddDate(0, 1, 0)) || len(av.ClosedPeriods) != 1 || !av.ClosedPeriods[0].Equal(oct1) {
		t.Fatalf("account = %+v", av)
	}
	// November: $20 allowance minus $3.333, plus the grant's $4.995 left.
	if av.Entitlement.Remaining != "21.662" || !av.Entitlement.Allowed {
		t.Fatalf("entitlement = %+v", av.Entitlement)
	}

	var sv StatementsView
	getJSON(t, srv.url+"/v1/customers/acme/statement?period=2026-10", &sv)
	if len(sv.Statements) != 1 {
		t.Fatalf("statements = %+v", sv)
	}
	st := sv.Statements[0]
	// Fee 49 in advance; usage 25.005 = 20 included + 5.005 from the pack
	// (rounded half-even to 5.00 when shown); nothing due beyond the fee.
	if st.Open || st.Fee.String() != "49" || st.Included.String() != "20" || st.CreditsUsed.String() != "5" ||
		st.Overage.String() != "0" || st.AmountDue.String() != "49" || st.ExactUsageCharge != "25.005" || st.Events != 1 {
		t.Fatalf("October statement = %+v", st)
	}
	getJSON(t, srv.url+"/v1/customers/acme/statement", &sv)
	if len(sv.Statements) != 1 || !sv.Statements[0].Open || sv.Statements[0].ExactUsageCharge != "3.333" || sv.Period != "current" {
		t.Fatalf("current statement = %+v", sv)
	}
	getJSON(t, srv.url+"/v1/customers/acme/statement?period=all", &sv)
	if len(sv.Statements) != 2 || sv.Statements[0].Open || !sv.Statements[1].Open {
		t.Fatalf("all statements = %+v", sv)
	}
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/customers/acme/statement?period=2026-13", 400, "expected current, last, all, a month"},
		{"/v1/customers/acme/statement?period=2025-01", 404, "no stored billing period"},
		{"/v1/customers/nobody", 404, "no account on this instance"},
		{"/v1/customers/broken/statement", 500, "state store closed"},
	} {
		code, _, body := get(t, srv.url+tc.path, testToken)
		if code != tc.code || !strings.Contains(errorText(body), tc.want) {
			t.Errorf("GET %s: %d %s, want %d naming %q", tc.path, code, body, tc.code, tc.want)
		}
	}
}

func TestAdminRateCardsAndSetup(t *testing.T) {
	st := priceState(t) // a default card at 30%
	cmds := &fakeCommands{}
	srv := newTestServer(t, tokenConfig(t), Deps{RateCards: st, Commands: cmds})
	now := srv.clock.now()

	code, body := send(t, "PUT", srv.url+"/v1/rate-cards/enterprise", `{"markup": "12.5%", "by_provider": {"anthropic": "20"}, "rollout": "new-customers-only"}`)
	if code != 200 || !strings.Contains(string(body), `"result":"created"`) {
		t.Fatalf("create card: %d %s", code, body)
	}
	var cards struct {
		RateCards []RateCardView `json:"rate_cards"`
	}
	getJSON(t, srv.url+"/v1/rate-cards", &cards)
	if len(cards.RateCards) != 2 || cards.RateCards[1].ID != "enterprise" || cards.RateCards[1].Versions[0].Markup != "12.5" ||
		cards.RateCards[1].Versions[0].ByProvider["anthropic"] != "20" || cards.RateCards[1].Versions[0].PriceVersion == "" || !cards.RateCards[0].Default {
		t.Fatalf("cards = %+v", cards)
	}
	// An assignment is published as a command for the partition that owns
	// the customer: 202, the latest version, effective now by default.
	code, body = send(t, "PUT", srv.url+"/v1/customers/acme/rate-card", `{"rate_card_id": "enterprise"}`, "Idempotency-Key", "move-acme-1")
	var acc CommandAccepted
	if err := json.Unmarshal(body, &acc); code != http.StatusAccepted || err != nil || acc.CommandID != "move-acme-1" || acc.Kind != "assign_rate_card" || acc.CustomerID != "acme" || acc.Topic != "tariff.commands" {
		t.Fatalf("assign: %d %s", code, body)
	}
	want := pipeline.AssignRateCard{Kind: "assign_rate_card", ID: "move-acme-1", CustomerID: "acme", At: now, RateCardID: "enterprise", Version: 1, EffectiveAt: now}
	if len(cmds.assigns) != 1 || cmds.assigns[0] != want {
		t.Fatalf("published %+v, want %+v", cmds.assigns, want)
	}
	eff := now.Add(72 * time.Hour)
	code, body = send(t, "PUT", srv.url+"/v1/customers/acme/rate-card", `{"rate_card_id": "default", "version": 1, "effective_at": "`+eff.Format(time.RFC3339)+`"}`)
	if got := cmds.assigns[len(cmds.assigns)-1]; code != http.StatusAccepted || got.RateCardID != "default" || got.Version != 1 || !got.EffectiveAt.Equal(eff) || !strings.HasPrefix(got.ID, "cmd_") {
		t.Fatalf("assign with effective_at: %d %s, published %+v", code, body, got)
	}
	published := len(cmds.assigns)
	for _, tc := range []struct{ method, path, body, want string }{
		{"PUT", "/v1/rate-cards/x", `{"markup": "12.345"}`, "markup"},
		{"PUT", "/v1/rate-cards/x", `{"markup": "10", "by_model": {"gpt-4o": "lots"}}`, "by_model.gpt-4o"},
		{"PUT", "/v1/rate-cards/x", `{"markup": "10", "rollout": "some"}`, "rollout"},
		{"PUT", "/v1/customers/acme/rate-card", `{"rate_card_id": "gold"}`, `rate_card_id "gold": no such rate card`},
		{"PUT", "/v1/customers/acme/rate-card", `{"rate_card_id": "enterprise", "version": 7}`, "version 7: expected 1 to 1"},
		{"PUT", "/v1/customers/acme/rate-card", `{"rate_card_id": "enterprise", "effective": "2026-12-01T00:00:00Z"}`, `unknown field "effective"`},
		{"POST", "/v1/setup", `{"markup": "thirty"}`, "markup"},
	} {
		code, body := send(t, tc.method, srv.url+tc.path, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(errorText(body), tc.want) {
			t.Errorf("%s %s %s: %d %s, want 400 naming %q", tc.method, tc.path, tc.body, code, body, tc.want)
		}
	}
	if len(cmds.assigns) != published {
		t.Errorf("refused assignments were published: %+v", cmds.assigns[published:])
	}
	// The broker not taking it is a 503 to retry with the same key.
	cmds.fail = errors.New("broker down")
	if code, body := send(t, "PUT", srv.url+"/v1/customers/acme/rate-card", `{"rate_card_id": "enterprise"}`); code != http.StatusServiceUnavailable || !strings.Contains(errorText(body), "Idempotency-Key") {
		t.Errorf("assign with the broker down: %d %s", code, body)
	}
	cmds.fail = nil
	// Without a command topic there is nowhere to send it.
	noTopic := newTestServer(t, tokenConfig(t), Deps{RateCards: st})
	if code, body := send(t, "PUT", noTopic.url+"/v1/customers/acme/rate-card", `{"rate_card_id": "enterprise"}`); code != http.StatusServiceUnavailable || !strings.Contains(errorText(body), "command topic") {
		t.Errorf("assign without a command topic: %d %s", code, body)
	}
	// Setup with the markup the default card has keeps it; another adds a
	// version.
	var res SetupResult
	code, body = send(t, "POST", srv.url+"/v1/setup", `{"markup": "30%"}`)
	if err := json.Unmarshal(body, &res); code != 200 || err != nil || res.RateCard.Result != "kept" || res.DefaultCard != "default" || res.PriceVersions != 2 {
		t.Fatalf("setup 30%%: %d %s", code, body)
	}
	code, body = send(t, "POST", srv.url+"/v1/setup", `{"markup": "35"}`)
	if err := json.Unmarshal(body, &res); code != 200 || err != nil || res.RateCard.Result != "added" || res.RateCard.Version != 2 {
		t.Fatalf("setup 35: %d %s", code, body)
	}
}

// TestOpenAPIDescribesEveryRoute keeps openapi.yaml and the routes in
// step: every admin endpoint is described, and nothing else is.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(openAPI)).Decode(&doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			described[strings.ToUpper(method)+" "+path] = true
		}
	}
	srv := newTestServer(t, tokenConfig(t), Deps{})
	for _, rt := range srv.v1Routes() {
		if !described[rt.pattern] {
			t.Errorf("route %s is not in openapi.yaml", rt.pattern)
		}
		delete(described, rt.pattern)
	}
	for op := range described {
		t.Errorf("openapi.yaml describes %s, which is not served", op)
	}
	code, _, body := get(t, srv.url+"/v1/openapi.yaml", testToken)
	if code != 200 || !bytes.Equal(body, openAPI) {
		t.Fatalf("GET /v1/openapi.yaml: %d", code)
	}
}
