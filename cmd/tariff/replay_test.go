package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// Claude Sonnet 4.5 at LiteLLM's prices and a gpt-x; the correction
// lowers Sonnet's input and output prices and drops gpt-x.
const (
	replayPrices = `{"claude-sonnet-4-5": {"litellm_provider": "anthropic", "mode": "chat",
  "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
  "cache_creation_input_token_cost": 3.75e-06, "cache_read_input_token_cost": 3e-07},
  "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}}`
	replayPricesCorrected = `{"claude-sonnet-4-5": {"litellm_provider": "anthropic", "mode": "chat",
  "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1.2e-05,
  "cache_creation_input_token_cost": 3.75e-06, "cache_read_input_token_cost": 3e-07}}`
)

// TestReplayRealServers re-rates a day of usage after a price correction
// on the real broker and ClickHouse: three events are rated, a corrected
// price version is recorded effective before them, tariff replay re-rates
// the day through the running pipeline, and the documented queries then
// give the corrected prices' totals to the last digit, each event counted
// once; replaying the same run again changes nothing.
func TestReplayRealServers(t *testing.T) {
	broker := testenv.Kafka(t)
	chAddr := testenv.ClickHouse(t)
	name := testenv.Name(t, "replay")
	in, cmds, dlq := name+".gateway", name+".commands", name+".dlq"
	testenv.CreateTopics(t, broker, 3, in, cmds, dlq)
	dir := t.TempDir()
	oldPrices := filepath.Join(dir, "prices.json")
	newPrices := filepath.Join(dir, "corrected.json")
	for p, data := range map[string]string{oldPrices: replayPrices, newPrices: replayPricesCorrected} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "tariff.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`kafka:
  brokers: [%s]
  group_id: %s
  topics:
    %s: gateway
    %s: command
  dead_letter_topic: %s
clickhouse:
  enabled: "true"
  addr: %s
  database: %s
state:
  dir: %s
prices:
  file: %s
  markup: "30"
log:
  level: warn
`, broker, name, in, cmds, dlq, chAddr, name, filepath.Join(dir, "state"), oldPrices)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Yesterday (UTC), inside the deduplication window; the documented
	// queries are run for its month and day.
	day := time.Now().UTC().AddDate(0, 0, -1).Truncate(24 * time.Hour)
	brokers, stop := startTariff(t, cfg, io.Discard)
	// tariff has migrated the database by now.
	conn := testClickHouse(t, cfg, name)
	ids := []string{"rr-1", "rr-2", "rr-3"}
	for i, id := range ids {
		produce(t, brokers, in, kafka.Message{Key: []byte("acme"), Value: sonnet(id, day.Add(10*time.Hour+time.Duration(i)*30*time.Minute))})
	}
	// globex's model loses its price in the correction: its re-rating is
	// refused, with the reason, and its old rating stands.
	produce(t, brokers, in, kafka.Message{Key: []byte("globex"), Value: []byte(fmt.Sprintf(
		`{"id":"rr-g1","time":%q,"customer_id":"globex","provider":"openai","model":"gpt-x","usage":{"input":1000,"output":100}}`,
		day.Add(12*time.Hour).Format(time.RFC3339)))})
	waitRows(t, conn, "SELECT count() FROM rated_lines FINAL", 17)
	stop()

	// The price correction, effective before the events.
	if out, errs, code := tariffCmd(t, "prices", "sync", "--config", cfgPath, "--source", newPrices, "--force", "--effective", day.Format(time.RFC3339)); code != 0 {
		t.Fatalf("prices sync: exit %d\n%s%s", code, out, errs)
	}
	_, stop = startTariff(t, cfg, io.Discard)
	defer stop()

	args := []string{"replay", "--config", cfgPath, "--from", day.Format("2006-01-02"), "--to", day.AddDate(0, 0, 1).Format("2006-01-02"), "--run", "fix-1", "--timeout", "60s", "--customer", "acme"}
	out, errs, code := tariffCmd(t, args...)
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errs)
	}
	// Old: 3 x 0.02025 (charge x 1.3); new: 3 x (1200 x 2.5e-6 + 8000 x
	// 3e-7 + 2000 x 3.75e-6 + 450 x 1.2e-5) = 3 x 0.0183.
	for _, want := range []string{
		"found:   3 events in rated_lines, cost 0.06075, charge 0.078975",
		"re-rated: 3 of 3 events (run fix-1); 0 refused",
		"old 0.06075 0.078975",
		"new 0.0549 0.07137",
		"difference -0.00585 -0.007605",
		"balances: not re-drawn; the charge difference -0.007605",
	} {
		if !strings.Contains(squeeze(out), squeeze(want)) {
			t.Errorf("replay output lacks %q:\n%s", want, out)
		}
	}
	checkReplayed(t, conn, day)

	// The same run again: every command is a duplicate, nothing changes.
	out, errs, code = tariffCmd(t, args...)
	if code != 0 {
		t.Fatalf("replay again: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"found:   3 events in rated_lines, cost 0.0549, charge 0.07137", "re-rated: 3 of 3 events (run fix-1)", "difference 0 0"} {
		if !strings.Contains(squeeze(out), squeeze(want)) {
			t.Errorf("second replay output lacks %q:\n%s", want, out)
		}
	}
	time.Sleep(2 * time.Second) // a wrongly applied duplicate would be written by now
	checkReplayed(t, conn, day)

	// globex: the corrected prices have no gpt-x, so its rerate is refused
	// and explained, and nothing of globex changes.
	out, errs, code = tariffCmd(t, "replay", "--config", cfgPath, "--from", day.Format("2006-01-02"), "--customer", "globex", "--run", "fix-1", "--timeout", "60s")
	if code != 1 || !strings.Contains(errs, `refused: customer "globex" event "rr-g1": rerate: rate event "rr-g1"`) || !strings.Contains(errs, "the old rating stands") {
		t.Errorf("globex replay: exit %d, want 1 with the refusal explained on stderr:\n%s%s", code, out, errs)
	}
	for _, want := range []string{"re-rated: 0 of 1 events (run fix-1); 1 refused", "old 0.0035 0.00455", "new 0.0035 0.00455", "difference 0 0"} {
		if !strings.Contains(squeeze(out), squeeze(want)) {
			t.Errorf("globex replay output lacks %q:\n%s", want, out)
		}
	}
	checkReplayed(t, conn, day)

	// Migration 0003 is safe to run again (ClickHouse 18.16 has no ADD
	// COLUMN IF NOT EXISTS): with its record gone, as after a run
	// interrupted before recording it, every migration runs again.
	if err := conn.Exec(context.Background(), "DROP TABLE schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if err := sinks.Migrate(context.Background(), cfg.ClickHouse.ClickHouseConfig, zerolog.Nop()); err != nil {
		t.Fatalf("migrations run again: %v", err)
	}

	// With tariff run stopped nothing is applied: replay says so.
	stop()
	_, errs, code = tariffCmd(t, "replay", "--config", cfgPath, "--from", day.Format("2006-01-02"), "--customer", "acme", "--run", "fix-3", "--timeout", "3s")
	if code != 1 || !strings.Contains(errs, "3 of 3 rerates neither applied nor refused after 3s without progress: is tariff run running?") {
		t.Errorf("replay without tariff run: exit %d, stderr %q", code, errs)
	}

	// Refusals name the flag or field.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "--config", cfgPath}, "--from: required"},
		{[]string{"replay", "--config", cfgPath, "--from", "yesterday"}, `--from "yesterday": expected an RFC 3339 time`},
		{[]string{"replay", "--config", cfgPath, "--from", "2026-11-02", "--to", "2026-11-01"}, "expected --from before --to"},
		{[]string{"replay", "--config", cfgPath, "--from", "2020-01-01"}, "state.dedup_window"},
		{[]string{"replay", "--config", cfgPath, "--from", day.Format("2006-01-02"), "--run", "a:b"}, "--run: \"a:b\""},
		{[]string{"replay", "--config", writeTemp(t, "nocmd.yaml", strings.Replace(mustRead(t, cfgPath), cmds+": command", cmds+": gateway", 1)),
			"--from", day.Format("2006-01-02")}, `kafka.topics: no topic has format "command"`},
	} {
		_, errs, code := tariffCmd(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error containing %q", c.args[1:], code, errs, c.want)
		}
	}
}

// checkReplayed checks that the documented queries, run for the day and
// its month, give the corrected prices' totals to the last digit, and that
// each event is counted once, re-rated by fix-1.
func checkReplayed(t *testing.T, conn driver.Conn, day time.Time) {
	t.Helper()
	d := day.Format("2006-01-02")
	month := time.Date(day.Year(), day.Month(), 1, 0, 0, 0, 0, time.UTC)
	dates := strings.NewReplacer("2026-11-01", month.Format("2006-01-02"), "2026-12-01", month.AddDate(0, 1, 0).Format("2006-01-02"), "2026-11-20", d)
	want := map[string][]string{
		"spend_by_customer_day": {"acme " + d + " 0.0549 0.07137 0.01647", "globex " + d + " 0.0035 0.00455 0.00105"},
		"margin_by_model":       {"anthropic claude-sonnet-4-5 0.0549 0.07137 0.01647", "openai gpt-x 0.0035 0.00455 0.00105"},
		"top_customers":         {"acme 0.07137 0.01647", "globex 0.00455 0.00105"},
		"top_movers":            {"acme 0 0.07137 0.07137", "globex 0 0.00455 0.00455"},
		// Per unit, 3 events: 3 x 2000 x 3.75e-6 x 1.3, 3 x 8000 x 3e-7 x 1.3,
		// 3 x 1200 x 2.5e-6 x 1.3, 3 x 330 x 1.2e-5 x 1.3, 3 x 120 x 1.2e-5 x 1.3.
		"usage_by_model_day": {
			d + " anthropic claude-sonnet-4-5 cache_write_5m 6000 3 0.02925",
			d + " anthropic claude-sonnet-4-5 cached_input 24000 3 0.00936",
			d + " anthropic claude-sonnet-4-5 input 3600 3 0.0117",
			d + " anthropic claude-sonnet-4-5 output 990 3 0.015444",
			d + " anthropic claude-sonnet-4-5 reasoning 360 3 0.005616",
			d + " openai gpt-x input 1000 1 0.00325",
			d + " openai gpt-x output 100 1 0.0013",
		},
	}
	queries, err := schemas.AnalystQueries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		got := queryRows(t, conn, dates.Replace(q.SQL))
		if q.Name == "customer_line_items" {
			// 3 events x 5 units, each (event, unit) once.
			seen := map[string]bool{}
			for _, r := range got {
				f := strings.Fields(r)
				seen[f[1]+"/"+f[4]] = true
			}
			if len(got) != 15 || len(seen) != 15 {
				t.Errorf("customer_line_items: %d rows, %d distinct (event, unit); want 15 and 15:\n%s", len(got), len(seen), strings.Join(got, "\n"))
			}
			continue
		}
		w, ok := want[q.Name]
		if !ok {
			t.Fatalf("documented query %s: the test does not know it", q.Name)
		}
		if strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("query %s returned\n%s\nwant\n%s", q.Name, strings.Join(got, "\n"), strings.Join(w, "\n"))
		}
	}
	for _, c := range []struct{ sql, want string }{
		{"SELECT count(), uniqExact(event_id), countIf(rating_run = 'fix-1'), sum(cost), sum(charge) FROM rated_lines FINAL WHERE customer_id = 'acme'",
			"15 3 15 0.0549 0.07137"},
		{"SELECT sum(events), sum(charge) FROM usage_daily FINAL WHERE customer_id = 'acme' AND unit = 'input'", "3 0.0117"},
		{"SELECT sum(events), sum(charge) FROM usage_hourly FINAL WHERE customer_id = 'acme' AND unit = 'input'", "3 0.0117"},
		{"SELECT sum(events), sum(charge) FROM usage_daily FINAL WHERE customer_id = 'acme'", "15 0.07137"},
		{"SELECT sum(events), sum(charge) FROM usage_hourly FINAL WHERE customer_id = 'acme'", "15 0.07137"},
	} {
		if got := queryRows(t, conn, c.sql); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s\n= %v, want %s", c.sql, got, c.want)
		}
	}
}

// waitRows polls a count query until it reaches want (or a minute passes).
func waitRows(t *testing.T, conn driver.Conn, sql string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n uint64
		if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d after 60s, want %d", sql, n, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// queryRows runs sql and formats each row as space-separated values
// (dates as 2006-01-02, decimals exactly).
func queryRows(t *testing.T, conn driver.Conn, sql string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		vals := make([]any, len(rows.ColumnTypes()))
		for i, ct := range rows.ColumnTypes() {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch x := reflect.ValueOf(v).Elem().Interface().(type) {
			case time.Time:
				parts[i] = x.UTC().Format("2006-01-02")
			default:
				parts[i] = fmt.Sprint(x)
			}
		}
		got = append(got, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return got
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// squeeze collapses runs of spaces, so tabwriter's alignment does not
// matter to the test.
func squeeze(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' }), " ")
}
