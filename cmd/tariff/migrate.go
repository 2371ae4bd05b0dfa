package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tariff-dev/tariff/sinks"
)

func cmdMigrate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", `Create tariff's ClickHouse database and tables, or upgrade them to this
version. Safe to run any number of times.`, "", stderr)
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
	if err := sinks.Migrate(ctx, cfg.ClickHouse.ClickHouseConfig, log); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ClickHouse %s: database %s is up to date\n", cfg.ClickHouse.Addr, cfg.ClickHouse.Database)
	return nil
}
