package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/alertwebhooks"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/pipeline/ops"
	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/sinks/webhook"
	"github.com/tariff-dev/tariff/sources/secret"
)

// adminCall sends a JSON call to the admin API and decodes the answer.
func adminCall(t *testing.T, method, url, body string, out any, hdr ...string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+opsTestToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	} else if res.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
	return res.StatusCode
}

// TestAdminAPIRealServers drives balances through the admin API of a
// running tariff on the real broker and ClickHouse: a plan and a grant
// go through the command topic, usage draws the allowance and then the
// grant to the last digit, a retried call with the same idempotency key
// changes nothing, a void takes the credit away, and the statement
// (API and `tariff statement`) agrees with ClickHouse.
func TestAdminAPIRealServers(t *testing.T) {
	cfg, name, in, _ := realServersConfig(t, "admin")
	commands := name + ".commands"
	testenv.CreateTopics(t, cfg.Kafka.Brokers[0], 3, commands)
	cfg.Kafka.Topics[commands] = "command"
	cfg.Kafka.AlertsTopic = name + ".alerts"
	cfg.Balances.Plans = PlanCatalog{{ID: "starter", Version: 1, Fee: rating.MustAmount("10"), Allowance: rating.MustAmount("0.05"),
		Overage: balance.OverageBill, Credits: balance.CreditsApply}}
	t.Setenv("TARIFF_ADMIN_TOKEN", opsTestToken)
	// A signed webhook receiver for the alerts.
	const hookSecret = "admin-test-hook-secret-0123456789"
	t.Setenv("TARIFF_TEST_HOOK_SECRET", hookSecret)
	type received struct{ key, event, body string }
	hooks := make(chan received, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte(hookSecret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("alert webhook: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		hooks <- received{r.Header.Get("Idempotency-Key"), r.Header.Get("X-Tariff-Event"), string(body)}
	}))
	defer receiver.Close()
	cfg.Webhooks.Alerts = []alertwebhooks.Endpoint{{URL: receiver.URL, Secret: secret.Secret{Env: "TARIFF_TEST_HOOK_SECRET"}}}
	var banner syncBuffer
	brokers, stop := startTariff(t, cfg, &banner)
	base := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(banner.String())
	if base == "" {
		t.Fatalf("no ops address in the banner %q", banner.String())
	}
	conn := testClickHouse(t, cfg, name)

	start := time.Now().UTC()
	var acc ops.CommandAccepted
	if code := adminCall(t, "PUT", base+"/v1/customers/acme/plan", `{"plan_id": "starter"}`, &acc); code != 202 || acc.Topic != commands {
		t.Fatalf("plan: %d %+v", code, acc)
	}
	if code := adminCall(t, "POST", base+"/v1/customers/acme/grants", `{"id": "pack-1", "amount": "0.03"}`, &acc, "Idempotency-Key", "grant-pack-1"); code != 202 {
		t.Fatalf("grant: %d", code)
	}
	// waitRemaining polls the account until its entitlement shows want.
	waitRemaining := func(want string) ops.AccountView {
		t.Helper()
		var av ops.AccountView
		deadline := time.Now().Add(60 * time.Second)
		for {
			code := adminCall(t, "GET", base+"/v1/customers/acme", "", &av)
			if code == 200 && av.Entitlement.Remaining == want {
				return av
			}
			if time.Now().After(deadline) {
				t.Fatalf("remaining balance of acme: %d %+v, want %s", code, av.Entitlement, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	av := waitRemaining("0.08") // allowance 0.05 + the pack's 0.03
	if av.Plan.ID != "starter" || !av.Entitlement.Allowed {
		t.Fatalf("account = %+v", av)
	}

	// Two Sonnet 4.5 requests charge 0.05265 at 30%: the allowance, then
	// 0.00265 of the pack.
	now := time.Now().UTC()
	produce(t, brokers, in,
		kafka.Message{Key: []byte("acme"), Value: sonnet("adm-1", now)},
		kafka.Message{Key: []byte("acme"), Value: sonnet("adm-2", now)})
	waitRemaining("0.02735")

	// The same grant again (a client retrying): no change.
	if code := adminCall(t, "POST", base+"/v1/customers/acme/grants", `{"id": "pack-1", "amount": "0.03"}`, &acc, "Idempotency-Key", "grant-pack-1"); code != 202 {
		t.Fatalf("grant again: %d", code)
	}
	// A second pack behind it in the same partition: once it counts, the
	// retried grant has been applied too, and must have changed nothing.
	if code := adminCall(t, "POST", base+"/v1/customers/acme/grants", `{"id": "pack-2", "amount": 0.01}`, &acc, "Idempotency-Key", "grant-pack-2"); code != 202 {
		t.Fatalf("second grant: %d", code)
	}
	waitRemaining("0.03735")
	deadline := time.Now().Add(60 * time.Second)

	// The statement agrees with ClickHouse to the last digit.
	var sv ops.StatementsView
	if code := adminCall(t, "GET", base+"/v1/customers/acme/statement", "", &sv); code != 200 || len(sv.Statements) != 1 {
		t.Fatalf("statement: %d %+v", code, sv)
	}
	st := sv.Statements[0]
	var chCharge string
	for {
		if err := conn.QueryRow(context.Background(), `SELECT toString(sum(charge)) FROM rated_lines FINAL
			WHERE customer_id = 'acme' AND event_time >= toDateTime(?)`, st.Start.Unix()).Scan(&chCharge); err != nil {
			t.Fatal(err)
		}
		chCharge = strings.TrimRight(strings.TrimRight(chCharge, "0"), ".") // Decimal(38,28) text
		if chCharge == st.ExactUsageCharge || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.ExactUsageCharge != "0.05265" || chCharge != "0.05265" || st.Included.String() != "0.05" || st.Fee.String() != "10" ||
		st.AmountDue.String() != "10" || len(st.Credits) != 2 || st.Credits[0].Drawn.String() != "0" || st.Events != 2 || st.Start.Before(start.Add(-time.Second)) {
		t.Fatalf("statement %+v; ClickHouse sum(charge) %s", st, chCharge)
	}
	var out, errOut bytes.Buffer
	if code := runMain([]string{"statement", "--customer", "acme", "--url", base}, &out, &errOut); code != 0 {
		t.Fatalf("tariff statement: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"Statement of acme", "fixed fees", "10.00", "included usage", "0.05", "credit pack-1", "exact 0.05265 USD, 2 events", "amount due"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tariff statement output lacks %q:\n%s", want, out.String())
		}
	}

	// Voiding both packs leaves the allowance, which is used up: no
	// balance, and usage goes on as overage on this plan.
	for _, g := range []string{"pack-1", "pack-2"} {
		if code := adminCall(t, "DELETE", base+"/v1/customers/acme/grants/"+g, "", &acc); code != 202 {
			t.Fatalf("void %s: %d", g, code)
		}
	}
	av = waitRemaining("0")
	if !av.Entitlement.Allowed || av.Entitlement.Reason != "overage" {
		t.Fatalf("after the void: %+v", av.Entitlement)
	}
	// Reaching zero emitted one alert, delivered signed to the webhook
	// with its idempotency key, and listed in the delivery log.
	select {
	case h := <-hooks:
		var a balance.Alert
		if err := json.Unmarshal([]byte(h.body), &a); err != nil || a.Kind != balance.AlertZero || a.CustomerID != "acme" || h.key != a.Key || h.event != "balance_alert" {
			t.Fatalf("webhook delivery %+v: alert %+v (%v)", h, a, err)
		}
		var dl struct {
			Deliveries []alertwebhooks.Delivery `json:"deliveries"`
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if adminCall(t, "GET", base+"/v1/webhooks/deliveries", "", &dl); len(dl.Deliveries) > 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(dl.Deliveries) != 1 || dl.Deliveries[0].AlertKey != h.key || dl.Deliveries[0].Outcome != "delivered" || dl.Deliveries[0].Status != 200 {
			t.Fatalf("delivery log: %+v", dl.Deliveries)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no alert webhook after the balance reached zero")
	}
	stop()
}
