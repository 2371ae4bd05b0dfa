package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/bench/loadgen"
	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/balance"
	"github.com/tariff-dev/tariff/rating"
)

// The fault tests' balance part: credit grants, thresholds and top-ups sent
// as admin commands around the usage stream, and an expectation computed
// here from first principles, from loadgen's exact per-customer charges and
// the commands the test sent, never by running the balance engine.
//
// The rules, from pipeline/balance/doc.go, for the accounts this test makes
// (the zero plan: no fee, no allowance, no token groups, credits apply,
// overage billed; one grant without expiry or restriction; one amount
// threshold):
//
//   - usage draws the grant down to zero and the rest is overage, so after
//     all usage the balance is max(0, grant − charge) and the overage
//     max(0, charge − grant), whatever the order of the events;
//   - a top-up adds its amount to the balance;
//   - a zero alert fires once when the balance reaches zero (an account
//     that never had a balance, such as a customer with usage and no grant,
//     gives none);
//   - a threshold alert fires once when the balance falls to the threshold
//     or below; re-arming on a top-up is silent;
//   - a recovery alert fires once when a top-up lifts a balance that had a
//     zero alert; its balance is the top-up's amount.
//
// Order independence: the threshold and the grant are applied before any
// usage is produced (the test sends the threshold first and waits until
// every grant shows in the entitlement API), and top-ups are sent only
// after every usage event is applied (the test waits until ClickHouse is
// exact, then stops tariff cleanly, which finishes the batches in hand).
// Between those points only usage changes the balance, and it only lowers
// it, so each level is crossed at most once and whether it is crossed
// depends only on the total charge. The grants are multiples of the charge
// chosen so that no customer lands near a level by accident: grant =
// charge × ½ (exhausted, both alerts), × 1 (balance exactly zero: both
// alerts), × 1½ (threshold only: a third of the grant is left, the
// threshold is half) or × 3 (no alert: two thirds left); the threshold is
// half the grant. Only exact decimal products are used (Mul, never Div).
//
// Checked: every customer's remaining balance, reason, allowed and paused
// from the entitlement API, and the alerts topic. The overage is computed
// (summary) but not compared: the entitlement API does not show it.

// balanceCase is one customer's inputs and what they must lead to.
type balanceCase struct {
	id     string
	charge decimal.Decimal // loadgen's exact total charge
	used   bool            // the stream has usage of this customer
	// grant is the credit granted before usage (zero: none); threshold the
	// amount threshold set with it; topUp the grant added after all usage
	// (zero: none).
	grant, threshold, topUp decimal.Decimal
}

func (c *balanceCase) granted() bool { return c.grant.IsPositive() }

// afterUsage is the balance once every usage event is applied.
func (c *balanceCase) afterUsage() decimal.Decimal {
	return decimal.Max(decimal.Zero, c.grant.Sub(c.charge))
}

// overage is the charge no credit covered.
func (c *balanceCase) overage() decimal.Decimal {
	return decimal.Max(decimal.Zero, c.charge.Sub(c.grant))
}

// final is the balance after the top-ups.
func (c *balanceCase) final() decimal.Decimal { return c.afterUsage().Add(c.topUp) }

// faultBalances is the balance side of one fault test.
type faultBalances struct {
	e     *faultEnv
	cases map[string]*balanceCase
	ids   []string // sorted
	plan  *loadgen.Expected
}

// balanceStage is how far the test is: what the balances must be.
type balanceStage int

const (
	stageGranted  balanceStage = iota // grants applied, no usage yet
	stageUsed                         // all usage applied
	stageToppedUp                     // all usage and the top-ups applied
)

// want is the customer's balance at stage s, and whether the customer has
// an account then.
func (c *balanceCase) want(s balanceStage) (decimal.Decimal, bool) {
	switch s {
	case stageGranted:
		return c.grant, c.granted()
	case stageUsed:
		return c.afterUsage(), true
	}
	return c.final(), true
}

// grantFactors are the multiples of a customer's charge its grant is, by
// customer: see the comment at the top of the file.
var grantFactors = []string{"0.5", "1", "1.5", "3"}

// newFaultBalances plans grants for every other customer of the stream
// plan describes, from its exact per-customer charges, and, with topUps,
// top-ups for some of them, exhausted or not.
func newFaultBalances(e *faultEnv, plan *loadgen.Expected, customers int, topUps bool) *faultBalances {
	fb := &faultBalances{e: e, cases: make(map[string]*balanceCase), plan: plan}
	charges := make(map[string]decimal.Decimal)
	for _, l := range plan.Lines {
		charges[l.CustomerID] = charges[l.CustomerID].Add(l.Charge)
	}
	for i := 0; i < customers; i++ {
		id := e.gen.CustomerID(uint32(i))
		ch, used := charges[id]
		c := &balanceCase{id: id, charge: ch, used: used}
		delete(charges, id)
		if i%2 == 0 {
			f := decimal.RequireFromString(grantFactors[(i/2)%len(grantFactors)])
			c.grant = ch.Mul(f)
			if !c.grant.IsPositive() {
				c.grant = decimal.NewFromInt(1) // no charge to draw it down
			}
			c.threshold = c.grant.Mul(decimal.RequireFromString("0.5")) // Mul is exact; Div rounds
			// Top up half the exhausted customers (a quarter of them by
			// less than the threshold, which stays crossed), and a
			// quarter of the others.
			switch {
			case !topUps:
			case !c.afterUsage().IsPositive() && (i/8)%2 == 0:
				c.topUp = decimal.RequireFromString("25.5")
				if (i/16)%4 == 0 {
					c.topUp = c.threshold.Mul(decimal.RequireFromString("0.25"))
				}
			case c.afterUsage().IsPositive() && (i/8)%4 == 1:
				c.topUp = decimal.RequireFromString("0.75")
			}
		}
		if used || c.granted() {
			fb.cases[id] = c
			fb.ids = append(fb.ids, id)
		}
	}
	if len(charges) > 0 {
		e.t.Fatalf("the stream has usage of %d customers outside the %d configured", len(charges), customers)
	}
	sort.Strings(fb.ids)
	return fb
}

// summary says how the customers are spread over the cases.
func (fb *faultBalances) summary() string {
	var granted, exhausted, exact, toppedUp int
	overage := decimal.Zero
	for _, c := range fb.cases {
		if c.granted() {
			granted++
			if !c.afterUsage().IsPositive() {
				exhausted++
				if c.charge.Equal(c.grant) {
					exact++
				}
			}
			if c.topUp.IsPositive() {
				toppedUp++
			}
		}
		overage = overage.Add(c.overage())
	}
	return fmt.Sprintf("%d customers, %d with a grant, %d of them exhausted (%d exactly), %d to be topped up; total overage %s",
		len(fb.cases), granted, exhausted, exact, toppedUp, overage)
}

// faultAmount converts an exact decimal to the wire amount, failing the
// test if it does not fit.
func faultAmount(t *testing.T, field string, d decimal.Decimal) rating.Amount {
	t.Helper()
	a, err := rating.AmountFromDecimal(d)
	if err != nil {
		t.Fatalf("%s %s: %v", field, d, err)
	}
	return a
}

// sendCommands produces admin commands keyed by customer id, partitioned
// as loadgen partitions usage (kafka-go's Hash balancer), so each lands on
// the partition of its customer's usage.
func (fb *faultBalances) sendCommands(cmds []balance.Command) {
	t := fb.e.t
	t.Helper()
	msgs := make([]kafka.Message, len(cmds))
	for i := range cmds {
		b, err := json.Marshal(&cmds[i])
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = kafka.Message{Key: []byte(cmds[i].CustomerID), Value: b}
	}
	produce(t, []string{fb.e.broker}, fb.e.commandTopic, msgs...)
}

// sendGrants sets the threshold of every granted customer and grants the
// planned credit. The threshold goes first, in the same partition: once
// the grant shows, the threshold is applied too. (Set on an empty account
// it starts crossed, silently; the grant re-arms it, silently.)
func (fb *faultBalances) sendGrants() {
	t := fb.e.t
	var cmds []balance.Command
	at := time.Now().UTC()
	for _, id := range fb.ids {
		c := fb.cases[id]
		if !c.granted() {
			continue
		}
		cmds = append(cmds,
			balance.Command{ID: "threshold-" + id, CustomerID: id, Kind: balance.CommandSetThresholds, At: at,
				Thresholds: []balance.Threshold{{Kind: balance.ThresholdAmount, Amount: faultAmount(t, "threshold", c.threshold)}}},
			balance.Command{ID: "grant-" + id, CustomerID: id, Kind: balance.CommandGrant, At: at,
				Grant: &balance.Grant{ID: "grant-" + id, Amount: faultAmount(t, "grant", c.grant)}})
	}
	fb.sendCommands(cmds)
	t.Logf("sent %d grant and threshold commands", len(cmds))
}

// sendTopUps grants the planned top-ups.
func (fb *faultBalances) sendTopUps() {
	t := fb.e.t
	var cmds []balance.Command
	at := time.Now().UTC()
	for _, id := range fb.ids {
		if c := fb.cases[id]; c.topUp.IsPositive() {
			cmds = append(cmds, balance.Command{ID: "topup-" + id, CustomerID: id, Kind: balance.CommandGrant, At: at,
				Grant: &balance.Grant{ID: "topup-" + id, Amount: faultAmount(t, "top-up", c.topUp)}})
		}
	}
	fb.sendCommands(cmds)
	t.Logf("sent %d top-ups", len(cmds))
}

// entitlementAnswer is GET /v1/customers/{id}/entitlement, read into the
// test's own type.
type entitlementAnswer struct {
	Known     bool   `json:"known"`
	Allowed   bool   `json:"allowed"`
	Reason    string `json:"reason"`
	Remaining string `json:"remaining"`
	Paused    bool   `json:"paused"`
}

// opsGet GETs path from an instance's ops server with the admin token,
// retrying while the server is not up yet (a restarted instance).
func (e *faultEnv) opsGet(client *http.Client, addr, path string, out any) error {
	var lastErr error
	for try := 0; try < 50; try++ {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+e.opsToken)
		resp, err := client.Do(req)
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
		}
		return json.Unmarshal(body, out)
	}
	return fmt.Errorf("GET %s: %w", path, lastErr)
}

// entitlements asks every live instance about every customer; an instance
// that holds no account for a customer (its partition is elsewhere)
// answers known=false and is left out.
func (fb *faultBalances) entitlements(instances []*instance) (map[string][]entitlementAnswer, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	out := make(map[string][]entitlementAnswer, len(fb.ids))
	for _, in := range instances {
		for _, id := range fb.ids {
			var a entitlementAnswer
			if err := fb.e.opsGet(client, in.opsAddr, "/v1/customers/"+url.PathEscape(id)+"/entitlement", &a); err != nil {
				return nil, err
			}
			if a.Known {
				out[id] = append(out[id], a)
			}
		}
	}
	return out, nil
}

// checkPublished checks that the stream published is the one the grants
// were planned from.
func (fb *faultBalances) checkPublished() {
	got, want := fb.e.expected, fb.plan
	if got == nil {
		fb.e.t.Fatal("the stream was not published")
	}
	if !got.Charge.Equal(want.Charge) || len(got.Lines) != len(want.Lines) {
		fb.e.t.Fatalf("the published stream is not the planned one: charge %v, %d lines; planned %s, %d lines",
			got.Charge, len(got.Lines), want.Charge, len(want.Lines))
	}
}

// checkBalances compares every customer's entitlement at stage s, as the
// live instances answer it, with the expectation: the balance to the last
// digit, allowed (the zero plan bills overage), reason balance or overage,
// not paused; a customer without an account yet must be unknown to all.
// Customers without usage or grant never get an account and are not asked
// about. It polls until they agree, or fails the test after a minute.
func (fb *faultBalances) checkBalances(instances []*instance, s balanceStage) {
	t := fb.e.t
	t.Helper()
	start := time.Now()
	deadline := start.Add(time.Minute)
	for {
		got, err := fb.entitlements(instances)
		var diffs []string
		var unknown int
		if err != nil {
			diffs = append(diffs, err.Error())
		}
		for _, id := range fb.ids {
			c := fb.cases[id]
			want, known := c.want(s)
			wantReason := "balance"
			if !want.IsPositive() {
				wantReason = "overage"
			}
			answers := got[id]
			if !known {
				if len(answers) > 0 {
					diffs = append(diffs, fmt.Sprintf("%s: has an account before any input: %+v", id, answers[0]))
				}
				continue
			}
			if len(answers) == 0 {
				unknown++
				if unknown <= 5 {
					diffs = append(diffs, fmt.Sprintf("%s: no instance knows the account (want balance %s)", id, want))
				}
				continue
			}
			for _, a := range answers {
				rem, err := decimal.NewFromString(a.Remaining)
				if err != nil || !rem.Equal(want) || a.Reason != wantReason || !a.Allowed || a.Paused {
					diffs = append(diffs, fmt.Sprintf("%s: remaining %s, reason %s, allowed %t, paused %t; want %s, %s, allowed, not paused (grant %s, charge %s, top-up %s)",
						id, a.Remaining, a.Reason, a.Allowed, a.Paused, want, wantReason, c.grant, c.charge, c.topUp))
				}
			}
		}
		if len(diffs) == 0 {
			t.Logf("%s: balances of %d customers equal the independent calculation (checked in %s)", s, len(fb.ids), time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			if len(diffs) > 20 {
				diffs = append(diffs[:20], fmt.Sprintf("... %d more", len(diffs)-20))
			}
			fb.e.showLogs()
			t.Fatalf("%s: balances differ from the independent calculation (%d of %d customers known to no instance):\n%s",
				s, unknown, len(fb.ids), strings.Join(diffs, "\n"))
		}
		time.Sleep(time.Second)
	}
}

func (s balanceStage) String() string {
	return [...]string{"after the grants", "after the usage", "after the top-ups"}[s]
}

// wantAlert is what an expected crossing (keyed by alertID) must carry:
// its balance, where the rules fix it.
type wantAlert struct {
	balance *decimal.Decimal
}

// alertID names a crossing by what identifies it (customer, kind,
// threshold, crossing number), independently of the engine's key hash.
func alertID(customer, kind string, threshold decimal.Decimal, seq uint32) string {
	if kind != "threshold" {
		return fmt.Sprintf("%s %s #%d", customer, kind, seq)
	}
	return fmt.Sprintf("%s %s %s #%d", customer, kind, threshold.String(), seq)
}

// expectedAlerts derives the exact set of alerts from the rules at the top
// of the file.
func (fb *faultBalances) expectedAlerts(s balanceStage) map[string]wantAlert {
	want := map[string]wantAlert{}
	zero := decimal.Zero
	for _, id := range fb.ids {
		c := fb.cases[id]
		if !c.granted() {
			continue // never had a balance: nothing to announce
		}
		left := c.afterUsage()
		if left.LessThanOrEqual(c.threshold) {
			want[alertID(id, "threshold", c.threshold, 1)] = wantAlert{}
		}
		if !left.IsPositive() {
			want[alertID(id, "zero", decimal.Zero, 1)] = wantAlert{balance: &zero}
			if s == stageToppedUp && c.topUp.IsPositive() {
				b := c.topUp
				want[alertID(id, "recovery", decimal.Zero, 1)] = wantAlert{balance: &b}
			}
		}
	}
	return want
}

// alertMsg is an alert as published, read into the test's own type.
type alertMsg struct {
	Key        string `json:"key"`
	CustomerID string `json:"customer_id"`
	Kind       string `json:"kind"`
	Threshold  struct {
		Kind   string `json:"kind"`
		Amount string `json:"amount"`
	} `json:"threshold"`
	Balance string `json:"balance"`
	Seq     uint32 `json:"seq"`
}

// alertsEnd returns the number of messages in the alerts topic (the sum
// of its partitions' end offsets), -1 when it cannot be read.
func (e *faultEnv) alertsEnd() int64 {
	var n int64
	for p := 0; p < 4; p++ {
		conn, err := kafka.DialLeader(context.Background(), "tcp", e.broker, e.alertsTopic, p)
		if err != nil {
			return -1
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			return -1
		}
		n += last
	}
	return n
}

// readAlerts reads the whole alerts topic.
func (e *faultEnv) readAlerts(ctx context.Context) ([]alertMsg, error) {
	var out []alertMsg
	for p := 0; p < 4; p++ {
		conn, err := kafka.DialLeader(ctx, "tcp", e.broker, e.alertsTopic, p)
		if err != nil {
			return nil, err
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			return nil, err
		}
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{e.broker}, Topic: e.alertsTopic, Partition: p, MaxWait: 100 * time.Millisecond})
		for off := int64(0); off < last; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return nil, err
			}
			off = m.Offset
			var a alertMsg
			if err := json.Unmarshal(m.Value, &a); err != nil {
				r.Close()
				return nil, fmt.Errorf("alert at %d/%d: %w", p, m.Offset, err)
			}
			var hdr string
			for _, h := range m.Headers {
				if h.Key == pipeline.HeaderAlertKey {
					hdr = string(h.Value)
				}
			}
			if hdr == "" || hdr != a.Key {
				r.Close()
				return nil, fmt.Errorf("alert at %d/%d: header %s %q, body key %q: expected both, equal", p, m.Offset, pipeline.HeaderAlertKey, hdr, a.Key)
			}
			if string(m.Key) != a.CustomerID {
				r.Close()
				return nil, fmt.Errorf("alert at %d/%d: message key %q, customer %q: expected the customer id", p, m.Offset, m.Key, a.CustomerID)
			}
			out = append(out, a)
		}
		r.Close()
	}
	return out, nil
}

// recoveriesOut says how many of the expected recovery alerts are in the
// alerts topic: how far the top-ups had got when tariff was killed.
func (fb *faultBalances) recoveriesOut() string {
	msgs, err := fb.e.readAlerts(context.Background())
	if err != nil {
		return "alerts unreadable: " + err.Error()
	}
	seen := map[string]bool{}
	for _, a := range msgs {
		if a.Kind == "recovery" {
			seen[a.Key] = true
		}
	}
	want := 0
	for _, c := range fb.cases {
		if c.granted() && !c.afterUsage().IsPositive() && c.topUp.IsPositive() {
			want++
		}
	}
	return fmt.Sprintf("%d of %d recovery alerts out", len(seen), want)
}

// checkAlerts reads the alerts topic, deduplicates it by the alert key
// and compares it with the expected set: every expected crossing present
// under exactly one key, nothing else. Copies of one key (a batch
// re-emitted after a kill) are allowed and counted.
func (fb *faultBalances) checkAlerts(s balanceStage) {
	t := fb.e.t
	t.Helper()
	want := fb.expectedAlerts(s)
	msgs, err := fb.e.readAlerts(context.Background())
	if err != nil {
		t.Errorf("read alerts: %v", err)
		return
	}
	byKey := map[string]string{} // key -> identity
	keysOf := map[string][]string{}
	var diffs []string
	dups := 0
	for _, a := range msgs {
		thr := decimal.Zero
		if a.Kind == "threshold" {
			var err error
			if thr, err = decimal.NewFromString(a.Threshold.Amount); err != nil || a.Threshold.Kind != "amount" {
				diffs = append(diffs, fmt.Sprintf("alert %s: threshold %+v: expected an amount threshold", a.Key, a.Threshold))
				continue
			}
		}
		id := alertID(a.CustomerID, a.Kind, thr, a.Seq)
		if prev, ok := byKey[a.Key]; ok {
			dups++
			if prev != id {
				diffs = append(diffs, fmt.Sprintf("key %s carries two crossings: %s and %s", a.Key, prev, id))
			}
			continue
		}
		byKey[a.Key] = id
		keysOf[id] = append(keysOf[id], a.Key)
		w, ok := want[id]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected alert %s (balance %s)", id, a.Balance))
			continue
		}
		if w.balance != nil {
			if b, err := decimal.NewFromString(a.Balance); err != nil || !b.Equal(*w.balance) {
				diffs = append(diffs, fmt.Sprintf("alert %s: balance %s, want %s", id, a.Balance, w.balance))
			}
		}
	}
	for id, keys := range keysOf {
		if len(keys) > 1 {
			diffs = append(diffs, fmt.Sprintf("alert %s under %d distinct keys: announced twice", id, len(keys)))
		}
	}
	var missing []string
	for id := range want {
		if len(keysOf[id]) == 0 {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	for i, id := range missing {
		if i == 10 {
			diffs = append(diffs, fmt.Sprintf("... %d more missing", len(missing)-10))
			break
		}
		diffs = append(diffs, "missing alert "+id)
	}
	kinds := map[string]int{}
	for id := range want {
		kinds[strings.Fields(id)[1]]++
	}
	t.Logf("alerts: %d messages, %d distinct keys, %d repeated copies of a key (at-least-once); expected %d (%d zero, %d threshold, %d recovery)",
		len(msgs), len(byKey), dups, len(want), kinds["zero"], kinds["threshold"], kinds["recovery"])
	if len(diffs) > 0 {
		sort.Strings(diffs)
		if len(diffs) > 30 {
			diffs = append(diffs[:30], fmt.Sprintf("... %d more", len(diffs)-30))
		}
		t.Errorf("alerts differ from the independent calculation:\n%s", strings.Join(diffs, "\n"))
	}
}
