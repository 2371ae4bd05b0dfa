package pipeline

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/pipeline/balance"
)

// Loaded accounts are kept for two generations of maxCachedAccounts: an
// account used in the generation before stays loaded (the same account,
// not read again), the rest are dropped.
func TestBalancesCacheGenerations(t *testing.T) {
	off := false
	store, err := OpenStore(StoreConfig{Dir: t.TempDir(), SyncWrites: &off}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	txn := store.DB().NewTransaction(false)
	defer txn.Discard()
	b := newBalances(0, store.Window())
	load := func(c string) *balance.Account {
		t.Helper()
		a, err := b.account(txn, c)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	hot := load("hot")
	for i := range maxCachedAccounts {
		load(fmt.Sprint("cold-", i))
	}
	b.committed(nil) // a generation full: it becomes the old one
	if len(b.accounts) != 0 || len(b.oldAccounts) != maxCachedAccounts+1 {
		t.Fatalf("%d current and %d old accounts, want 0 and %d", len(b.accounts), len(b.oldAccounts), maxCachedAccounts+1)
	}
	if load("hot") != hot {
		t.Fatal("an account of the generation before was read again instead of kept")
	}
	if _, ok := b.oldAccounts["hot"]; ok || len(b.accounts) != 1 || len(b.due) != 1 {
		t.Fatalf("the account used again did not move to the current generation")
	}
	for i := range maxCachedAccounts {
		load(fmt.Sprint("new-", i))
	}
	b.committed(nil)
	if _, ok := b.oldAccounts["cold-0"]; ok {
		t.Error("an account unused for a whole generation is still loaded")
	}
	if b.oldAccounts["hot"] != hot {
		t.Error("the account used in the last generation was dropped")
	}
	if n := len(b.accounts) + len(b.oldAccounts); n > 2*maxCachedAccounts+2 {
		t.Errorf("%d accounts loaded, want at most %d", n, 2*maxCachedAccounts+2)
	}
}

// A state directory written with block compression (as tariff wrote it
// before) opens and reads the same: Badger keeps each table's compression
// in its manifest.
func TestStoreReadsCompressedTables(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithCompression(options.Snappy))
	if err != nil {
		t.Fatal(err)
	}
	wb := db.NewWriteBatch()
	for i := range 20000 {
		if err := wb.Set([]byte(fmt.Sprintf("key-%06d", i)), []byte(fmt.Sprintf("value-%06d-%s", i, strings.Repeat("x", 40)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // flushes the memtable into a compressed table
		t.Fatal(err)
	}
	if tables, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(tables) == 0 {
		t.Fatal("no table written: the test reads nothing compressed")
	}
	store, err := OpenStore(StoreConfig{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	err = store.DB().View(func(txn *badger.Txn) error {
		for _, i := range []int{0, 7777, 19999} {
			it, err := txn.Get([]byte(fmt.Sprintf("key-%06d", i)))
			if err != nil {
				return err
			}
			v, err := it.ValueCopy(nil)
			if err != nil {
				return err
			}
			if want := fmt.Sprintf("value-%06d-%s", i, strings.Repeat("x", 40)); string(v) != want {
				return fmt.Errorf("key %d: %q, want %q", i, v, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
