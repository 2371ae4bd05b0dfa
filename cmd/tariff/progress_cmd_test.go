package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tariff-dev/tariff/pipeline/testenv"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// TestPricesSyncProgress: `tariff prices sync` with standard error not a
// terminal writes each step's progress as plain lines (no redrawing):
// bytes fetched of the file's size, models imported, changes found and
// the version stored; standard output keeps only the result.
func TestPricesSyncProgress(t *testing.T) {
	clearTariffEnv(t)
	dir := t.TempDir()
	cfg := writeTemp(t, "tariff.yaml", fmt.Sprintf("state: {dir: %s}\nclickhouse: {enabled: \"false\"}\n", filepath.Join(dir, "state")))
	oldPath, newPath := writeTemp(t, "old.json", pricesOld), writeTemp(t, "new.json", pricesNew)
	sync := func(args ...string) (string, string) {
		t.Helper()
		out, errs, code := tariffCmd(t, append([]string{"prices", "sync", "--config", cfg}, args...)...)
		if code != 0 {
			t.Fatalf("prices sync %v: exit %d: %s", args, code, errs)
		}
		if strings.Contains(errs, "\r") || strings.Contains(errs, "\x1b[") {
			t.Errorf("progress redrawn in place on a non-terminal:\n%q", errs)
		}
		if strings.Contains(out, "prices sync:") {
			t.Errorf("progress on standard output:\n%s", out)
		}
		return out, errs
	}
	wantLines := func(errs string, want ...string) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("progress has %d lines, want %d:\n%s", len(lines), len(want), errs)
		}
		for i, re := range want {
			if !regexp.MustCompile("^" + re + "$").MatchString(lines[i]) {
				t.Errorf("progress line %d\n got %q\nwant %q", i+1, lines[i], re)
			}
		}
	}
	// A final line: count (of total), rate, time taken; no ETA once done.
	const tail = `, [0-9,]+ [a-z]+/s, [0-9.]+(µs|ms|s)`
	_, errs := sync("--source", oldPath)
	wantLines(errs,
		regexp.QuoteMeta(fmt.Sprintf("prices sync: fetch %s: %s/%s bytes (100.0%%)", oldPath, group(len(pricesOld)), group(len(pricesOld))))+tail,
		`prices sync: import: 3 models`+tail,
		regexp.QuoteMeta("prices sync: store: 1/1 versions (100.0%)")+tail,
	)
	out, errs := sync("--source", newPath, "--effective", "2026-03-01T00:00:00Z", "--force")
	if !strings.Contains(out, "recorded litellm-20260301T000000Z-") {
		t.Errorf("second sync output:\n%s", out)
	}
	wantLines(errs,
		regexp.QuoteMeta(fmt.Sprintf("prices sync: fetch %s: %s/%s bytes (100.0%%)", newPath, group(len(pricesNew)), group(len(pricesNew))))+tail,
		`prices sync: import: 3 models`+tail,
		`prices sync: diff: [1-9][0-9]* changes`+tail,
		regexp.QuoteMeta("prices sync: store: 1/1 versions (100.0%)")+tail,
	)
}

func group(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestMigrateProgress: `tariff migrate` on a new database shows every
// migration applied of those pending as a plain line when standard error
// is not a terminal; run again, nothing is pending and it shows none.
func TestMigrateProgress(t *testing.T) {
	chAddr := testenv.ClickHouse(t)
	clearTariffEnv(t)
	db := testenv.Name(t, "migrate")
	t.Setenv("TARIFF_CLICKHOUSE_ADDR", chAddr)
	t.Setenv("TARIFF_CLICKHOUSE_DATABASE", db)
	t.Cleanup(func() {
		ctx := context.Background()
		cfg := sinks.ClickHouseConfig{Addr: chAddr, Database: db}
		cfg.SetDefaults()
		if conn, err := sinks.OpenClickHouse(ctx, cfg); err == nil {
			_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
			conn.Close()
		}
	})
	migs, err := schemas.ClickHouseMigrations()
	if err != nil || len(migs) == 0 {
		t.Fatalf("migrations: %d, %v", len(migs), err)
	}
	var out, errs bytes.Buffer
	if err := cmdMigrate([]string{}, &out, &errs); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errs.String())
	}
	n := len(migs)
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^migrate: %d/%d migrations applied \(100\.0%%\), [0-9,]+ migrations/s, [0-9.]+(µs|ms|s)$`, n, n))
	if !want.MatchString(errs.String()) || strings.Contains(errs.String(), "\r") {
		t.Errorf("migrate progress on a non-terminal:\n%q\nwant a plain final line matching %s", errs.String(), want)
	}
	if !strings.Contains(out.String(), "database "+db+" is up to date") {
		t.Errorf("migrate output: %q", out.String())
	}
	out.Reset()
	errs.Reset()
	if err := cmdMigrate([]string{}, &out, &errs); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if strings.Contains(errs.String(), "migrate:") || !strings.Contains(out.String(), "is up to date") {
		t.Errorf("second migrate: progress %q, output %q; want no progress (nothing pending) and up to date", errs.String(), out.String())
	}
}
