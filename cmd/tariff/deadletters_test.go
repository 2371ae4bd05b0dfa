package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestRedriveUnpricedRealServers: an event whose model has no price is
// dead-lettered, not billed; once a sync records a price list that has the
// model (effective after the event), `tariff deadletters redrive` sends the
// message again and the event is billed at that first price, exactly;
// a second redrive bills nothing more.
func TestRedriveUnpricedRealServers(t *testing.T) {
	cfg, name, in, dlq := realServersConfig(t, "redrive")
	dir := t.TempDir()
	list := filepath.Join(dir, "prices.json")
	write := func(extra string) {
		t.Helper()
		body := `{"gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}` + extra + "}"
		if err := os.WriteFile(list, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	cfg.Prices.File = list
	yaml := fmt.Sprintf("kafka:\n  brokers: [%s]\n  group_id: %s\n  topics: {%s: gateway}\n  dead_letter_topic: %s\nstate:\n  dir: %s\nprices:\n  file: %s\n  markup: \"30\"\n",
		cfg.Kafka.Brokers[0], name, in, dlq, cfg.State.Dir, list)
	cfgFile := filepath.Join(dir, "tariff.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}

	at := time.Now().UTC().Add(-time.Hour)
	event := func(id, model string) kafka.Message {
		return kafka.Message{Key: []byte("acme"), Value: []byte(fmt.Sprintf(
			`{"id":%q,"time":%q,"customer_id":"acme","provider":"openai","model":%q,"usage":{"input":1000,"output":100}}`,
			id, at.Format(time.RFC3339Nano), model))}
	}
	// 1. acme-llm has no price: dead-lettered; gpt-4o is billed.
	brokers, stop := startTariff(t, cfg, io.Discard) // creates the database
	conn := testClickHouse(t, cfg, name)
	produce(t, brokers, in, event("rd-1", "acme-llm"), event("rd-2", "gpt-4o"))
	charge := func(id string) string {
		var s string
		var n uint64
		if err := conn.QueryRow(context.Background(), `SELECT count(), toString(sum(charge)) FROM rated_lines FINAL WHERE event_id = ?`, id).Scan(&n, &s); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return ""
		}
		return strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	deadline := time.Now().Add(60 * time.Second)
	for charge("rd-2") == "" {
		if time.Now().After(deadline) {
			t.Fatal("gpt-4o event not rated")
		}
		time.Sleep(200 * time.Millisecond)
	}
	var out, errOut bytes.Buffer
	for {
		out.Reset()
		errOut.Reset()
		if code := runMain([]string{"deadletters", "list", "--config", cfgFile}, &out, &errOut); code != 0 {
			t.Fatalf("deadletters list: exit %d: %s", code, errOut.String())
		}
		if strings.Contains(out.String(), "1 of 1 dead-letter records match") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead-letter record for the unpriced event: %s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "rate") || !strings.Contains(out.String(), "acme-llm") {
		t.Fatalf("deadletters list does not show the stage and the reason:\n%s", out.String())
	}
	stop()

	// 2. A sync records a list with acme-llm, effective now (after the
	// event's time).
	write(`, "acme-llm": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}`)
	if code := runMain([]string{"prices", "sync", "--config", cfgFile, "--source", list}, &out, &errOut); code != 0 {
		t.Fatalf("prices sync: exit %d: %s", code, errOut.String())
	}

	// 3. Redrive: the event is billed at the first price that lists its
	// model: (1000 x 0.000001 + 100 x 0.000002) x 1.3 = 0.00156.
	cfg2 := *cfg
	brokers, stop = startTariff(t, &cfg2, io.Discard)
	_ = brokers
	for i := 0; i < 2; i++ { // the second redrive sends a duplicate: not billed again
		out.Reset()
		errOut.Reset()
		if code := runMain([]string{"deadletters", "redrive", "--config", cfgFile}, &out, &errOut); code != 0 {
			t.Fatalf("deadletters redrive: exit %d: %s", code, errOut.String())
		}
		if !strings.Contains(out.String(), "sent 1 messages again") {
			t.Fatalf("redrive output:\n%s", out.String())
		}
		deadline = time.Now().Add(60 * time.Second)
		for charge("rd-1") != "0.00156" {
			if time.Now().After(deadline) {
				t.Fatalf("redriven event: charge %q, want 0.00156", charge("rd-1"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second) // let the duplicate be applied: it must change nothing
	var rows uint64
	var total string
	if err := conn.QueryRow(context.Background(), `SELECT count(), toString(sum(charge)) FROM rated_lines FINAL WHERE customer_id = 'acme'`).Scan(&rows, &total); err != nil {
		t.Fatal(err)
	}
	// gpt-4o: (1000 x 0.0000025 + 100 x 0.00001) x 1.3 = 0.00455; plus 0.00156.
	if rows != 4 || strings.TrimRight(total, "0") != "0.00611" {
		t.Fatalf("acme: %d rows, charge %s; want 4 rows, 0.00611", rows, total)
	}
	stop()

	if code := runMain([]string{"deadletters", "redrive", "--config", cfgFile, "--from", "yesterday"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "--from") {
		t.Fatalf("a bad --from was accepted: %s", errOut.String())
	}
}
