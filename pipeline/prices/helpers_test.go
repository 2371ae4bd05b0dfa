package prices

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

// openDB opens a Badger database in dir (a fresh temp dir when "").
func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(8 << 20).WithValueLogFileSize(16 << 20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// sharedData reads a file of the shared data folder next to the repo.
// Missing data skips the test locally and fails it under CI=true.
func sharedData(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "data", name))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared data %s missing under CI: %v", name, err)
		}
		t.Skipf("SKIP: shared data %s not found (%v); set up ../shared/data next to the repository to run this test", name, err)
	}
	return b
}

// sharedPath returns the path of a shared data file, skipping as sharedData.
func sharedPath(t testing.TB, name string) string {
	t.Helper()
	sharedData(t, name)
	return filepath.Join("..", "..", "..", "shared", "data", name)
}

// litellm builds a small LiteLLM price map: model → "input output" per
// token, provider "test".
func litellm(models map[string]string) []byte {
	var b strings.Builder
	b.WriteString("{\n")
	i := 0
	for m, p := range models {
		f := strings.Fields(p)
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `  %q: {"litellm_provider": "test", "mode": "chat", "input_cost_per_token": %s, "output_cost_per_token": %s}`, m, f[0], f[1])
		i++
	}
	b.WriteString("\n}\n")
	return []byte(b.String())
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testLog(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func ev(id, customer, model string, at time.Time, input, output int64) *schemas.UsageEvent {
	e := &schemas.UsageEvent{ID: id, CustomerID: customer, Model: model, Time: at}
	e.Quantities[schemas.UnitInput] = input
	e.Quantities[schemas.UnitOutput] = output
	return e
}

// newState loads a State over db with no global markup.
func newState(t testing.TB, db *badger.DB) *State {
	t.Helper()
	st, err := Load(NewStore(db), rating.MarkupRules{Default: rating.NoMarkup}, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newSyncer(t testing.TB, st *State, notifiers ...Notifier) *Syncer {
	t.Helper()
	s, err := NewSyncer(SyncConfig{}, st, notifiers, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func syncAt(t testing.TB, s *Syncer, eff time.Time, data []byte) *Result {
	t.Helper()
	res, err := s.SyncLists(t.Context(), []List{{Name: "test", Data: data}}, SyncOptions{Effective: eff})
	if err != nil {
		t.Fatal(err)
	}
	return res
}
