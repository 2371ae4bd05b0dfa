package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/schemas"
)

// Migrate creates the database and applies every DDL migration in
// schemas/clickhouse in order. It is idempotent: each statement is
// re-runnable and applied versions are recorded in schema_migrations.
func Migrate(ctx context.Context, cfg ClickHouseConfig, log zerolog.Logger) error {
	return MigrateWithProgress(ctx, cfg, log, nil)
}

// MigrateProgress hears how far a migration run has got: pending is the
// number of migrations not applied yet (known once schema_migrations has
// been read, before the first is applied), then applied counts each one
// as it is recorded.
type MigrateProgress interface {
	Pending(total int)
	Applied(version int, name string)
}

// MigrateWithProgress is Migrate reporting to p (nil: nowhere), for
// `tariff migrate` to show.
func MigrateWithProgress(ctx context.Context, cfg ClickHouseConfig, log zerolog.Logger, p MigrateProgress) error {
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
	if p != nil {
		pending := 0
		for _, m := range migs {
			if !applied[uint32(m.Version)] {
				pending++
			}
		}
		p.Pending(pending)
	}
	for _, m := range migs {
		if applied[uint32(m.Version)] {
			continue
		}
		t := time.Now()
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil && !columnExists(stmt, err) {
				return fmt.Errorf("migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if err := recordMigration(ctx, conn, m); err != nil {
			return fmt.Errorf("record migration %04d: %w", m.Version, err)
		}
		log.Info().Int("version", m.Version).Str("name", m.Name).Dur("took", time.Since(t)).Msg("migration applied")
		if p != nil {
			p.Applied(m.Version, m.Name)
		}
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

// ClickHouse answers ALTER TABLE ... ADD COLUMN of a column the table has
// with code 44 (ILLEGAL_COLUMN: "Cannot add column x: column with this
// name already exists"), checked on 18.16; 15 (DUPLICATE_COLUMN) is
// accepted too, for servers that name it so.
const (
	codeIllegalColumn   = 44
	codeDuplicateColumn = 15
)

// columnExists reports whether err is an ADD COLUMN statement finding its
// column already there. ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS,
// so this is how a migration that adds columns stays safe to re-run after
// being interrupted between its statements.
func columnExists(stmt string, err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || (ex.Code != codeIllegalColumn && ex.Code != codeDuplicateColumn) {
		return false
	}
	s := strings.ToUpper(strings.Join(strings.Fields(stmt), " "))
	return strings.HasPrefix(s, "ALTER TABLE ") && strings.Contains(s, " ADD COLUMN ")
}
