package schemas

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed queries/*.sql
var queryFiles embed.FS

// AnalystQuery is one documented query over tariff's ClickHouse tables.
type AnalystQuery struct {
	Name string // file name without .sql
	SQL  string // the statement, without comments or the final semicolon
}

// AnalystQueries returns the documented queries in schemas/queries, in
// name order. Tests run each against the real server.
func AnalystQueries() ([]AnalystQuery, error) {
	entries, err := fs.ReadDir(queryFiles, "queries")
	if err != nil {
		return nil, err
	}
	var out []AnalystQuery
	for _, e := range entries {
		data, err := queryFiles.ReadFile("queries/" + e.Name())
		if err != nil {
			return nil, err
		}
		for _, stmt := range splitStatements(string(data)) {
			out = append(out, AnalystQuery{Name: strings.TrimSuffix(e.Name(), ".sql"), SQL: stmt})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
