package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/sinks"
)

// Two small LiteLLM maps: gpt-x gets cheaper input and a cache price,
// claude-y's long-context output goes up, z is dropped and w is new.
const (
	pricesOld = `{
  "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
  "claude-y": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
    "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05},
  "img-z": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04}
}`
	pricesNew = `{
  "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2e-06, "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 5e-07,
    "input_cost_per_token_batches": 1e-06},
  "claude-y": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
    "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 3e-05},
  "new-w": {"litellm_provider": "mistral", "mode": "chat", "input_cost_per_token": 1e-07, "output_cost_per_token": 3e-07}
}`
)

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tariffCmd runs the command line and returns stdout, stderr and status.
func tariffCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestPricesDiffTable(t *testing.T) {
	oldPath, newPath := writeTemp(t, "old.json", pricesOld), writeTemp(t, "new.json", pricesNew)
	out, errs, code := tariffCmd(t, "prices", "diff", oldPath, newPath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := fmt.Sprintf(`old: %s (LiteLLM price map, 3 models)
new: %s (LiteLLM price map, 3 models)

MODEL     UNIT                                 PER        OLD   NEW  CHANGE
claude-y  output (above 200000 prompt tokens)  1M tokens  22.5  30   +33.33%%
gpt-x     input                                1M tokens  2.5   2    -20%%
gpt-x     cached_input                         1M tokens  -     0.5  new
gpt-x     input (batch)                        1M tokens  -     1    new
img-z     -                                    -          -     -    model removed
new-w     -                                    -          -     -    model added

6 changes: 1 models added, 1 removed; prices: 1 up, 1 down, 2 added, 0 removed
`, oldPath, newPath)
	if out != want {
		t.Errorf("diff output:\n%s\nwant:\n%s", out, want)
	}
	// Without the model rows.
	out, _, _ = tariffCmd(t, "prices", "diff", "--models=false", oldPath, newPath)
	if strings.Contains(out, "model added") || !strings.Contains(out, "(2 models added or removed not listed: use --models)") {
		t.Errorf("--models=false:\n%s", out)
	}
	// Bad input names what was wrong.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"prices", "diff"}, "expected [OLD] NEW"},
		{[]string{"prices", "diff", oldPath, "/no/such.json", "x"}, "expected [OLD] NEW"},
		{[]string{"prices", "diff", "--config", writeTemp(t, "c.yaml", "state: {dir: "+t.TempDir()+"}\n"), oldPath, "v-missing"}, `NEW: "v-missing": not a file, a URL, "current" or a price version id`},
		{[]string{"prices", "diff", oldPath, writeTemp(t, "junk.json", `{"a": [1]}`)}, "neither a LiteLLM price map nor an OpenRouter model list"},
		{[]string{"prices", "frobnicate"}, `unknown subcommand "frobnicate"`},
	} {
		_, errs, code := tariffCmd(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errs, c.want)
		}
	}
}

func TestSetupAndPrices(t *testing.T) {
	dir := t.TempDir()
	cfg := writeTemp(t, "tariff.yaml", fmt.Sprintf("state: {dir: %s}\nclickhouse: {enabled: \"false\"}\nprices: {markup: \"10\"}\n", filepath.Join(dir, "state")))
	oldPath, newPath := writeTemp(t, "old.json", pricesOld), writeTemp(t, "new.json", pricesNew)
	run := func(args ...string) string {
		t.Helper()
		out, errs, code := tariffCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		return out
	}
	out := run("setup", "--config", cfg, "--markup", "30%", "--source", oldPath)
	for _, want := range []string{
		"prices:     recorded litellm-00010101T000000Z-",
		"(LiteLLM price map, 3 models), in force for all usage",
		"rate card:  created default version 1 (markup 30%, all-customers)",
		"kafka:      skipped: no kafka.brokers configured",
		"clickhouse: skipped: clickhouse.enabled is false",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("setup output lacks %q:\n%s", want, out)
		}
	}
	// Idempotent.
	out = run("setup", "--config", cfg, "--markup", "30")
	if !strings.Contains(out, "prices:     kept: 1 price versions") || !strings.Contains(out, "rate card:  kept default version 1 (markup 30%, all-customers)") {
		t.Errorf("second setup:\n%s", out)
	}

	// img-z is dropped: one of three models, more than the 25% a sync may
	// remove without --force.
	out, errs, code := tariffCmd(t, "prices", "sync", "--config", cfg, "--source", newPath, "--effective", "2026-03-01T00:00:00Z")
	if code != 1 || !strings.Contains(errs, "the new list removes 1 of the 3 models in force (more than prices.max_removed_percent = 25%); if that is right, sync with --force") {
		t.Errorf("sync removing a third of the models: exit %d, %s", code, errs)
	}
	if !strings.Contains(out, "-20%") || strings.Contains(out, "recorded") {
		t.Errorf("refused sync output:\n%s", out)
	}
	out = run("prices", "sync", "--config", cfg, "--source", newPath, "--effective", "2026-03-01T00:00:00Z", "--force")
	for _, want := range []string{
		"compared with litellm-00010101T000000Z-",
		"gpt-x     input                                1M tokens  2.5   2    -20%",
		"(2 models added or removed not listed: use --models)",
		"recorded litellm-20260301T000000Z-",
		"in force from 2026-03-01T00:00:00Z",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sync output lacks %q:\n%s", want, out)
		}
	}
	if out = run("prices", "sync", "--config", cfg, "--source", newPath); !strings.Contains(out, "no price changed: nothing recorded") {
		t.Errorf("second sync:\n%s", out)
	}

	out = run("prices", "list", "--config", cfg, "--at", "2026-03-02")
	want := `USD per 1M tokens; markup 30% (rate card default version 1)

MODEL     PROVIDER   INPUT  OUTPUT  CACHED  INPUT +30%  OUTPUT +30%  CACHED +30%
claude-y  anthropic  3      15      3       3.9         19.5         3.9
gpt-x     openai     2      10      0.5     2.6         13           0.65
new-w     mistral    0.1    0.3     0.1     0.13        0.39         0.13

3 models
`
	if !strings.HasSuffix(out, want) || !strings.Contains(out, "in force from 2026-03-01T00:00:00Z, 3 models") {
		t.Errorf("list:\n%s\nwant it to end with:\n%s", out, want)
	}
	out = run("prices", "list", "--config", cfg, "--at", "2026-02-01", "--provider", "openai", "--markup", "12.5")
	if !strings.Contains(out, "gpt-x  openai    2.5    10      2.5     2.8125        11.25          2.8125") || !strings.Contains(out, "img-z") {
		t.Errorf("list at 2026-02-01, openai, 12.5%%:\n%s", out)
	}

	out = run("prices", "show", "claude-y", "--config", cfg)
	for _, want := range []string{
		"claude-y (provider anthropic, mode chat)",
		"markup 30% (rate card default version 1): charge = cost x 1.3",
		"always                      standard  input   1M tokens  3      3.9",
		"above 200000 prompt tokens  standard  output  1M tokens  30     39",
		"always  standard  cached_input    1M tokens  3   3.9   (billed as input)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}

	// A card edit: new customers only, from now.
	out = run("setup", "--config", cfg, "--markup", "40", "--rollout", "new-customers-only")
	if !strings.Contains(out, "rate card:  added default version 2 (markup 40%, new-customers-only, prices of litellm-20260301T000000Z-") ||
		!strings.Contains(out, "customers who join from now on") {
		t.Errorf("card edit:\n%s", out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"prices", "sync", "--config", cfg, "--source", newPath, "--effective", "yesterday"}, `--effective "yesterday": expected an RFC 3339 time`},
		{[]string{"prices", "sync", "--config", cfg}, "no price sources: set prices.sources"},
		{[]string{"prices", "sync", "--config", cfg, "--source", "ftp://x/y.json"}, "only http and https URLs"},
		{[]string{"prices", "sync", "--config", cfg, "--source", oldPath, "--effective", "2026-03-01T00:00:00Z", "--force"}, "is already in force from 2026-03-01T00:00:00Z and is never rewritten"},
		{[]string{"prices", "show", "--config", cfg}, "expected one MODEL"},
		{[]string{"prices", "show", "--config", cfg, "gpt-unknown"}, `model "gpt-unknown": no price entry matches`},
		{[]string{"prices", "list", "--config", cfg, "--provider", "nobody"}, `--provider "nobody": no model in`},
		{[]string{"prices", "list", "--config", cfg, "--markup", "12.345"}, "--markup"},
		{[]string{"setup", "--config", cfg, "--markup", "thirty"}, `--markup: "thirty": expected a percentage`},
		{[]string{"setup", "--config", cfg, "--rollout", "sometimes"}, `--rollout: rollout "sometimes": expected new-customers-only or all-customers`},
		{[]string{"setup", "--config", cfg, "--partitions", "0"}, "--partitions 0: expected 1 or more"},
		{[]string{"setup", "--config", writeTemp(t, "bad.yaml", "prices: {webhooks: [{url: \"nope\"}]}\n")}, "prices.webhooks[0].url"},
	} {
		_, errs, code := tariffCmd(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args[:2], code, errs, c.want)
		}
	}
	// Every command explains its flags.
	for _, args := range [][]string{{"setup"}, {"prices", "sync"}, {"prices", "diff"}, {"prices", "list"}, {"prices", "show"}} {
		_, errs, code := tariffCmd(t, append(args, "--help")...)
		if code != 0 || !strings.Contains(errs, "Usage: tariff") || !strings.Contains(errs, "-config") {
			t.Errorf("%v --help: exit %d:\n%s", args, code, errs)
		}
	}
}

// TestSetupKafka creates the topics on the real broker, twice.
func TestSetupKafka(t *testing.T) {
	broker := testenv.Kafka(t)
	name := testenv.Name(t, "setup")
	// A group of its own: the price-state topic is <group_id>.prices, and
	// another run's history there would be taken on.
	cfg := writeTemp(t, "tariff.yaml", fmt.Sprintf(`kafka:
  brokers: [%s]
  group_id: %s_group
  topics: {%s_gateway: gateway}
  dead_letter_topic: %s_dlq
  alerts_topic: %s_alerts
state: {dir: %s}
clickhouse: {enabled: "false"}
prices: {changes_topic: %s_changes}
`, broker, name, name, name, name, filepath.Join(t.TempDir(), "state"), name))
	src := writeTemp(t, "p.json", pricesOld)
	out, errs, code := tariffCmd(t, "setup", "--config", cfg, "--markup", "30", "--source", src, "--replication-factor", "1")
	if code != 0 {
		t.Fatalf("setup: %s", errs)
	}
	if want := fmt.Sprintf("kafka:      created %s_alerts, %s_changes, %s_dlq, %s_gateway (3 partitions)", name, name, name, name); !strings.Contains(out, want) {
		t.Errorf("setup output lacks %q:\n%s", want, out)
	}
	out, errs, code = tariffCmd(t, "setup", "--config", cfg, "--markup", "30")
	if code != 0 || !strings.Contains(out, "kafka:      kept existing "+name+"_alerts, "+name+"_changes") {
		t.Errorf("second setup (exit %d, %s):\n%s", code, errs, out)
	}
	// A sync announces on the changes topic the setup created.
	out, errs, code = tariffCmd(t, "prices", "sync", "--config", cfg, "--source", writeTemp(t, "n.json", pricesNew), "--effective", "2026-03-01", "--force")
	if code != 0 || !strings.Contains(out, "announced: kafka:"+name+"_changes litellm-20260301T000000Z-") {
		t.Errorf("sync (exit %d, %s):\n%s", code, errs, out)
	}
}

// TestSetupClickHouse creates the tables in a database of its own on the
// real ClickHouse server, twice.
func TestSetupClickHouse(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Name(t, "setup")
	cfg := writeTemp(t, "tariff.yaml", fmt.Sprintf("clickhouse: {enabled: \"true\", addr: %q, database: %s}\nstate: {dir: %s}\n", addr, db, filepath.Join(t.TempDir(), "state")))
	t.Cleanup(func() {
		c := sinks.ClickHouseConfig{Addr: addr, Database: db}
		c.SetDefaults()
		if conn, err := sinks.OpenClickHouse(context.Background(), c); err == nil {
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
			conn.Close()
		}
	})
	for i := 0; i < 2; i++ {
		out, errs, code := tariffCmd(t, "setup", "--config", cfg, "--markup", "30")
		if want := fmt.Sprintf("clickhouse: database %s at %s is up to date", db, addr); code != 0 || !strings.Contains(out, want) {
			t.Fatalf("setup %d (exit %d, %s): lacks %q:\n%s", i+1, code, errs, want, out)
		}
	}
}
