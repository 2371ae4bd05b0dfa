package rating

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/schemas"
)

// sharedData reads a file from the shared data folder next to the repo.
// Missing data skips the test locally and fails it under CI=true, where a
// skipped test would hide a broken checkout.
func sharedData(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "shared", "data", name))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared data %s missing under CI: %v", name, err)
		}
		t.Skipf("SKIP: shared data %s not found (%v); set up ../../shared/data to run this test", name, err)
	}
	return b
}

var (
	liteOnce sync.Map // file name → *Snapshot
)

// liteLLM parses a shared LiteLLM map once per test binary.
func liteLLM(t testing.TB, name string) *Snapshot {
	t.Helper()
	if s, ok := liteOnce.Load(name); ok {
		return s.(*Snapshot)
	}
	s, err := ParseLiteLLM(sharedData(t, name))
	if err != nil {
		t.Fatalf("ParseLiteLLM(%s): %v", name, err)
	}
	liteOnce.Store(name, s)
	return s
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func bookOf(t testing.TB, s *Snapshot) *Book {
	t.Helper()
	b, err := NewBook(nil, &Version{ID: "v1", Prices: s})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type qty map[schemas.Unit]int64

func event(provider, model string, q qty) *schemas.UsageEvent {
	ev := &schemas.UsageEvent{ID: "ev-1", CustomerID: "cust-1", Time: t0, Provider: provider, Model: model}
	for u, n := range q {
		ev.Quantities[u] = n
	}
	return ev
}
