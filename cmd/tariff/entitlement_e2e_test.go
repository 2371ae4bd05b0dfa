package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/ops"
	"github.com/tariff-dev/tariff/pipeline/testenv"
)

// TestEntitlementForwardRealServers: two instances in one consumer group
// share 4 partitions on the real broker; credit is granted to customers
// spread over every partition; then each instance is asked about each
// customer, and every answer is the owner's, to the last digit: an
// instance never answers "unknown, allowed" for a customer another
// instance holds.
func TestEntitlementForwardRealServers(t *testing.T) {
	broker := testenv.Kafka(t)
	name := testenv.Name(t, "fwd")
	in, dlq, commands := name+".gateway", name+".dlq", name+".commands"
	const partitions = 4
	testenv.CreateTopics(t, broker, partitions, in, dlq, commands)
	t.Setenv("TARIFF_ADMIN_TOKEN", opsTestToken)
	newCfg := func() *Config {
		cfg := &Config{}
		cfg.Kafka.Brokers = []string{broker}
		cfg.Kafka.GroupID = name
		cfg.Kafka.Topics = map[string]string{in: "gateway", commands: "command"}
		cfg.Kafka.DeadLetterTopic = dlq
		cfg.Kafka.AlertsTopic = name + ".alerts"
		cfg.Kafka.SessionTimeout = 6 * time.Second // the broker's minimum: a quick rebalance
		cfg.ClickHouse.Enabled = "false"
		dir := t.TempDir()
		cfg.State.Dir = dir
		cfg.Output.File = filepath.Join(dir, "rated.jsonl")
		cfg.Prices.Markup = "30"
		cfg.Log.Level = "warn"
		return cfg
	}
	var bannerA, bannerB syncBuffer
	startTariff(t, newCfg(), &bannerA)
	startTariff(t, newCfg(), &bannerB)
	baseOf := func(b *syncBuffer) string {
		u := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(b.String())
		if u == "" {
			t.Fatalf("no ops address in the banner %q", b.String())
		}
		return u
	}
	bases := []string{baseOf(&bannerA), baseOf(&bannerB)}

	// Two customers on each partition, with different credit each.
	want := map[string]string{}
	perPartition := map[int]int{}
	for i := 0; len(want) < 2*partitions; i++ {
		c := fmt.Sprintf("cust-%d", i)
		if p := pipeline.PartitionOf(c, partitions); perPartition[p] < 2 {
			perPartition[p]++
			want[c] = fmt.Sprintf("%d.%02d3", 1+len(want), 7*len(want)) // no trailing zero: answers are canonical decimals
		}
	}
	for c, amount := range want {
		var acc ops.CommandAccepted
		if code := adminCall(t, "POST", bases[0]+"/v1/customers/"+c+"/grants", `{"id": "pack", "amount": "`+amount+`"}`, &acc, "Idempotency-Key", "grant-"+c); code != 202 {
			t.Fatalf("grant to %s: %d", c, code)
		}
	}

	type answer struct {
		code     int
		servedBy string
		v        ops.EntitlementView
		body     string
	}
	ask := func(base, path string) answer {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+opsTestToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		a := answer{code: res.StatusCode, servedBy: res.Header.Get(ops.HeaderServedBy), body: string(b)}
		if a.code == 200 {
			if err := json.Unmarshal(b, &a.v); err != nil {
				t.Fatalf("GET %s%s: %v in %s", base, path, err, b)
			}
		}
		return a
	}
	// Until the group has settled and every grant is applied, answers may
	// be 503 (no owner known yet) or not show the credit yet; then every
	// instance must give every customer's owner's answer.
	deadline := time.Now().Add(25 * time.Second)
	var last []string
	for {
		last = last[:0]
		servers := map[string]int{} // instance -> partitions it served
		seen := map[int]string{}    // partition -> instance serving it
		for c, amount := range want {
			p := pipeline.PartitionOf(c, partitions)
			for i, base := range bases {
				a := ask(base, "/v1/customers/"+c+"/entitlement")
				if a.code != 200 || !a.v.Known || !a.v.Allowed || a.v.Remaining != amount || a.servedBy == "" {
					last = append(last, fmt.Sprintf("instance %d, %s (partition %d): %d %s served by %q, want remaining %s", i, c, p, a.code, strings.TrimSpace(a.body), a.servedBy, amount))
					continue
				}
				if s, ok := seen[p]; ok && s != a.servedBy {
					last = append(last, fmt.Sprintf("partition %d served by %s and by %s", p, s, a.servedBy))
				}
				seen[p] = a.servedBy
				servers[a.servedBy]++
			}
		}
		if len(last) == 0 && len(servers) == 2 {
			break
		}
		if len(last) == 0 {
			last = append(last, fmt.Sprintf("served by %v: want both instances to own partitions", servers))
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 25s:\n  %s", strings.Join(last, "\n  "))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Accounts and statements too, and a customer unknown everywhere is
	// allowed and unknown on both instances.
	for c, amount := range want {
		for i, base := range bases {
			var av ops.AccountView
			if code := adminCall(t, "GET", base+"/v1/customers/"+c, "", &av); code != 200 || av.Entitlement.Remaining != amount {
				t.Errorf("instance %d: account of %s: %d %+v, want remaining %s", i, c, code, av.Entitlement, amount)
			}
			var sv ops.StatementsView
			if code := adminCall(t, "GET", base+"/v1/customers/"+c+"/statement", "", &sv); code != 200 || sv.CustomerID != c || len(sv.Statements) != 1 {
				t.Errorf("instance %d: statement of %s: %d %+v", i, c, code, sv)
			}
		}
	}
	for i, base := range bases {
		a := ask(base, "/v1/customers/nobody-at-all/entitlement")
		if a.code != 200 || a.v.Known || !a.v.Allowed {
			t.Errorf("instance %d: unknown customer: %d %s, want known=false, allowed", i, a.code, a.body)
		}
	}
}
