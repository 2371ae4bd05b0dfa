package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tariff-dev/tariff/pipeline/ops/progress"
	"github.com/tariff-dev/tariff/sinks"
)

func cmdMigrate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", `Create tariff's ClickHouse database and tables, or upgrade them to this
version. Safe to run any number of times. Progress (migrations applied of
those pending, with the rate and an ETA) goes to standard error: one line
redrawn on a terminal, plain lines otherwise.`, "", stderr)
	configPath := fs.String("config", "", "YAML configuration file; none uses the defaults and TARIFF_CLICKHOUSE_* variables")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mp := &migrateProgress{out: stderr}
	err = sinks.MigrateWithProgress(ctx, cfg.ClickHouse.ClickHouseConfig, log, mp)
	// The final line (with the time taken) also after a failure: it says
	// how many migrations were applied before the one that failed.
	mp.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ClickHouse %s: database %s is up to date\n", cfg.ClickHouse.Addr, cfg.ClickHouse.Database)
	return nil
}

// migrateProgress shows the migrations applied of those pending
// (sinks.MigrateProgress) on a progress meter. With none pending it shows
// nothing: the closing "up to date" line says it all.
type migrateProgress struct {
	out io.Writer
	// terminal overrides terminal detection (tests); nil detects.
	terminal *bool
	m        *progress.Meter
}

func (p *migrateProgress) Pending(total int) {
	if total == 0 {
		return
	}
	p.m = progress.Start(progress.Config{Out: p.out, Label: "migrate", Unit: "migrations applied", RateUnit: "migrations/s",
		Total: int64(total), Terminal: p.terminal})
}

func (p *migrateProgress) Applied(int, string) {
	if p.m != nil {
		p.m.Add(1)
	}
}

func (p *migrateProgress) done() {
	if p.m != nil {
		p.m.Done()
	}
}
