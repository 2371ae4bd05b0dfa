package sinks

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/schemas"
)

// Migrate creates the database and applies every DDL migration in
// schemas/clickhouse in order. It is idempotent: each statement is
// re-runnable and applied versions are recorded in schema_migrations.
func Migrate(ctx context.Context, cfg ClickHouseConfig, log zerolog.Logger) error {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log = log.With().Str("component", "migrate").Logger()
	admin, err := openClickHouse(ctx, cfg, "default")
	if err != nil {
		return err
	}
	// The database name was checked by Validate to be a plain identifier.
	err = admin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+cfg.Database)
	admin.Close()
	if err != nil {
		return fmt.Errorf("create database %s: %w", cfg.Database, err)
	}
	conn, err := OpenClickHouse(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	applied := map[uint32]bool{}
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	migs, err := schemas.ClickHouseMigrations()
	if err != nil {
		return err
	}
	for _, m := range migs {
		if applied[uint32(m.Version)] {
			continue
		}
		t := time.Now()
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if err := recordMigration(ctx, conn, m); err != nil {
			return fmt.Errorf("record migration %04d: %w", m.Version, err)
		}
		log.Info().Int("version", m.Version).Str("name", m.Name).Dur("took", time.Since(t)).Msg("migration applied")
	}
	return nil
}

// recordMigration inserts the applied version as a one-row batch: ClickHouse
// 18.16 does not answer an INSERT ... VALUES sent with bound parameters.
func recordMigration(ctx context.Context, conn driver.Conn, m schemas.Migration) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied_at)")
	if err != nil {
		return err
	}
	if err := b.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
		b.Abort()
		return err
	}
	return b.Send()
}
