package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed clickhouse/*.sql
var clickhouseDDL embed.FS

// Migration is one versioned ClickHouse DDL file. Its statements are written
// to be re-runnable (IF NOT EXISTS), because ClickHouse has no transactions
// and a migration interrupted part way must be safe to apply again.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// ClickHouseMigrations returns the embedded migrations in version order.
// File names are NNNN_name.sql.
func ClickHouseMigrations() ([]Migration, error) {
	entries, err := fs.ReadDir(clickhouseDDL, "clickhouse")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("BUG: migration file %s is not named NNNN_name.sql", name)
		}
		data, err := clickhouseDDL.ReadFile("clickhouse/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: rest, Statements: splitStatements(string(data))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// splitStatements splits SQL on semicolons at line ends and drops comment
// lines. The DDL files keep one statement per semicolon-terminated block
// and no semicolons inside strings.
func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, s)
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
