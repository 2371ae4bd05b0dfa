package pipeline

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

func TestRefreshSweepDefaults(t *testing.T) {
	var c StoreConfig
	c.SetDefaults()
	if got := refreshSweep(c.DedupWindow); got != 9*24*time.Hour {
		t.Fatalf("sweep for the default 35-day window %s, want 9 days (a quarter of 36)", got)
	}
	if got := changelogRetention(c.DedupWindow); got != 36*24*time.Hour {
		t.Fatalf("changelog retention %s, want 36 days", got)
	}
}

func TestRefreshQuota(t *testing.T) {
	sweep := 9 * 24 * time.Hour
	start := mustTime("2027-01-01T00:00:00Z")
	f := func(n, visited uint64, elapsed time.Duration, want uint64) {
		t.Helper()
		c := refreshCursor{start: start, n: n, visited: visited}
		if got := c.quota(start.Add(elapsed), sweep); got != want {
			t.Errorf("n %d visited %d elapsed %s: quota %d, want %d", n, visited, elapsed, got, want)
		}
	}
	// A million accounts, one 5 s tick in: floor(1e6 × 5 / 777600) = 6,
	// raised to the floor.
	f(1_000_000, 0, 5*time.Second, refreshFloor)
	// ... and 6 of them done: nothing more is due yet.
	f(1_000_000, 6, 5*time.Second, 0)
	f(1_000_000, 5, 5*time.Second, refreshFloor)
	// Three accounts: the first is due a third of the way in, not at the
	// first tick (which would sweep them all at every tick).
	f(3, 0, 5*time.Second, 0)
	f(3, 0, sweep/3-time.Nanosecond, 0)
	f(3, 0, sweep/3, refreshFloor)
	f(3, 3, sweep-time.Nanosecond, 0)
	// Half way, 500,000 due, 499,990 done: 10, raised to the floor.
	f(1_000_000, 499_990, sweep/2, refreshFloor)
	// Far behind: bounded by the cap.
	f(1_000_000, 0, sweep/2, maxRefreshAccounts)
	f(1_000_000, 499_000, sweep/2, 1_000)
	// No time passed, or a tick older than the sweep's start: nothing.
	f(1_000_000, 0, 0, 0)
	f(1_000_000, 0, -time.Hour, 0)
	// An empty partition waits for the sweep's end, then walks at the cap
	// (finding any accounts created since, and wrapping).
	f(0, 0, sweep-time.Nanosecond, 0)
	f(0, 0, sweep, maxRefreshAccounts)
	// Past the sweep's end without having wrapped: the cap.
	f(40, 40, sweep+time.Hour, maxRefreshAccounts)
	// No overflow where n × elapsed passes 64 bits.
	f(1<<40, (1<<39)-5, sweep/2, refreshFloor)
}

func TestRefreshCursorRoundTrip(t *testing.T) {
	c := refreshCursor{start: mustTime("2027-01-01T00:00:00.5Z"), n: 300, visited: 17, last: []byte("cust\x00omer")}
	var back refreshCursor
	if err := back.unmarshal(c.appendBinary(nil)); err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip %+v (%v), want %+v", back, err, c)
	}
	for _, bad := range [][]byte{nil, {2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, {1, 0, 0}, {1, 0, 0, 0, 0, 0, 0, 0, 0, 0x80}} {
		if err := back.unmarshal(bad); err == nil {
			t.Errorf("cursor %x accepted", bad)
		}
	}
}

// refreshRun drives a tick harness with one message per batch, keeping the
// command topic's offsets and the processor's clock.
type refreshRun struct {
	*tickHarness
	offset int64
}

// command applies commands in one batch at the processor time now.
func (r *refreshRun) command(t *testing.T, now time.Time, values ...string) {
	t.Helper()
	r.now = now
	var b []kafka.Message
	for _, v := range values {
		b = append(b, admin(r.offset, v))
		r.offset++
	}
	r.apply(t, b)
	if len(r.dlq.recs) != 0 {
		t.Fatalf("dead letters %+v", r.dlq.recs)
	}
}

// tick applies one tick at at (also the processor's clock), with the
// commands given in the same batch before it, and returns the index of the
// batch's changelog record.
func (r *refreshRun) tick(t *testing.T, at time.Time, commands ...string) int {
	t.Helper()
	r.command(t, at, append(commands, string(EncodeTick(at)))...)
	return r.log.len() - 1
}

func grantFor(customer, id, at, expires string) string {
	exp := ""
	if expires != "" {
		exp = fmt.Sprintf(`,"expires_at":%q`, expires)
	}
	return fmt.Sprintf(`{"id":%q,"customer_id":%q,"kind":"grant","at":%q,"grant":{"id":%q,"amount":"1"%s}}`, id, customer, at, id, exp)
}

// customers returns n customer ids that do not sort in creation order.
func customers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("cust-%02d", (i*7)%n)
	}
	return out
}

// recordMuts decodes a changelog record.
func recordMuts(t *testing.T, rec []byte) []Mutation {
	t.Helper()
	_, muts, err := decodeRecord(rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return muts
}

// cursorIn returns the refresh cursor a record writes, if any.
func cursorIn(t *testing.T, rec []byte) (refreshCursor, bool) {
	t.Helper()
	for _, m := range recordMuts(t, rec) {
		if bytes.Equal(m.Key, refreshKey(0)) {
			var c refreshCursor
			if err := c.unmarshal(m.Value); err != nil {
				t.Fatal(err)
			}
			return c, true
		}
	}
	return refreshCursor{}, false
}

// relogged returns the customers whose account a record writes, in order.
func relogged(t *testing.T, rec []byte) []string {
	t.Helper()
	var out []string
	for _, m := range recordMuts(t, rec) {
		if m.Key[0] == kindBalance && !m.Delete {
			out = append(out, string(m.Key[5:]))
		}
	}
	return out
}

// checkNoDuplicateKeys fails if a record mentions one key twice.
func checkNoDuplicateKeys(t *testing.T, i int, rec []byte) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range recordMuts(t, rec) {
		if seen[string(m.Key)] {
			t.Fatalf("record %d mentions key %q twice", i, m.Key)
		}
		seen[string(m.Key)] = true
	}
}

// restore applies records to a fresh store in dir, as Runner.restore does.
func restore(t *testing.T, dir string, records [][]byte, first int) *Store {
	t.Helper()
	fresh, err := OpenStore(StoreConfig{Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	pos := ChangelogPos{}
	for i, rec := range records {
		off := int64(first + i)
		if pos, err = replayRecord(pos, off, rec, nil, func(gen int32, muts []Mutation) error {
			return fresh.Apply(0, muts, ChangelogPos{Next: off + 1, Generation: gen})
		}); err != nil {
			t.Fatal(err)
		}
	}
	return fresh
}

// storedCursor reads the partition's refresh cursor from a store.
func storedCursor(t *testing.T, s *Store) refreshCursor {
	t.Helper()
	var c refreshCursor
	err := s.DB().View(func(txn *badger.Txn) error {
		it, err := txn.Get(refreshKey(0))
		if err != nil {
			return err
		}
		return it.Value(c.unmarshal)
	})
	if err != nil {
		t.Fatalf("refresh cursor: %v", err)
	}
	return c
}

// TestRefreshLastSweepRestoresBalanceState: accounts with closed periods
// and due entries, most of them never written again; ticks every 6 hours
// over two sweeps, the second with a grant, an expiry and a month end
// changing some accounts in batches that also re-log them. Every account,
// due entry and period key is in the records of the second sweep alone,
// each record mentions a key once, the sweep keeps to its time, and those
// records alone (the older ones dropped, as retention would) rebuild the
// balance state byte for byte, cursor included.
func TestRefreshLastSweepRestoresBalanceState(t *testing.T) {
	r := &refreshRun{tickHarness: newTickHarness(t, t.TempDir(), 1, time.Time{}, nil)}
	ids := customers(40)
	var grants []string
	for i, c := range ids {
		exp := ""
		if i%5 == 0 {
			exp = "2027-01-28T00:00:00Z" // expires in the second sweep
		}
		grants = append(grants, grantFor(c, "g-"+c, "2026-11-01T00:00:00Z", exp))
	}
	r.command(t, mustTime("2026-11-01T00:00:00Z"), grants...)

	// The first tick closes November and December for everyone and
	// starts the first sweep, counting the 40 accounts.
	at := mustTime("2027-01-15T00:00:00Z")
	first := r.tick(t, at)
	if c, ok := cursorIn(t, r.log.records[first]); !ok || c.n != 40 || c.visited != 0 || !c.start.Equal(at) {
		t.Fatalf("first tick's cursor %+v (%v), want a sweep of 40 accounts from %s", c, ok, at)
	}
	sweep := refreshSweep(r.store.Window())
	var starts []int        // records that start a sweep
	var startAt []time.Time // and their tick times
	for len(starts) < 2 {
		at = at.Add(6 * time.Hour)
		if at.After(mustTime("2027-03-01T00:00:00Z")) {
			t.Fatalf("two sweeps not done by %s; sweep starts at records %v", at, starts)
		}
		var cmds []string
		if len(starts) == 1 && at.Equal(startAt[0].Add(48*time.Hour)) {
			// A top-up for an account in the batch's slice or near it.
			c := ids[len(ids)-1]
			cmds = append(cmds, grantFor(c, "top-up", at.Format(time.RFC3339), ""))
		}
		i := r.tick(t, at, cmds...)
		if c, ok := cursorIn(t, r.log.records[i]); ok && c.visited == 0 {
			starts = append(starts, i)
			startAt = append(startAt, at)
		}
	}
	if len(r.alerts.alerts) == 0 {
		t.Fatal("no expiry alert: the second sweep changed no account, which this test needs")
	}
	if d := startAt[1].Sub(startAt[0]); d > sweep {
		t.Fatalf("the second sweep took %s, more than %s", d, sweep)
	}

	// The records of the second sweep: after the one that started it, up
	// to the one that wrapped.
	last := r.log.records[starts[0]+1 : starts[1]+1]
	orig := stateOf(t, r.store, 0)
	logged := map[string]bool{}
	nRelogged := 0
	for i, rec := range last {
		checkNoDuplicateKeys(t, starts[0]+1+i, rec)
		for _, m := range recordMuts(t, rec) {
			if !m.Delete {
				logged[string(m.Key)] = true
			}
		}
		nRelogged += len(relogged(t, rec))
	}
	periods := 0
	for k := range orig {
		if !logged[k] {
			t.Errorf("key %q (kind %c) is in state but not in the last sweep's records", k, k[0])
		}
		if k[0] == kindPeriod {
			periods++
		}
	}
	if periods < 80 {
		t.Fatalf("%d period keys in state, want at least 2 per account", periods)
	}
	// Each account once, plus the ones the month end and the top-up wrote
	// again in batches after their turn.
	if nRelogged < len(ids) || nRelogged > 2*len(ids) {
		t.Fatalf("%d account writes in the last sweep, want %d to %d", nRelogged, len(ids), 2*len(ids))
	}
	for i, rec := range r.log.records {
		checkNoDuplicateKeys(t, i, rec)
	}

	fresh := restore(t, t.TempDir(), last, starts[0]+1)
	defer fresh.Close()
	restored := stateOf(t, fresh, 0)
	if !reflect.DeepEqual(restored, orig) {
		for k, v := range orig {
			if restored[k] != v {
				t.Errorf("key %q: restored %q, original %q", k, restored[k], v)
			}
		}
		t.Fatalf("restored from the last sweep: %d keys, the original %d", len(restored), len(orig))
	}
	if got, want := storedCursor(t, fresh), storedCursor(t, r.store); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored cursor %+v, original %+v", got, want)
	}
	checkDueIndex(t, fresh, 0)

	// Most accounts were last changed by the first tick, in a record the
	// restore dropped: only the refresh put them in the last sweep.
	idle := 0
	for _, m := range recordMuts(t, r.log.records[first]) {
		if m.Key[0] == kindBalance && orig[string(m.Key)] == string(m.Value) {
			idle++
		}
	}
	if idle < 30 {
		t.Fatalf("%d accounts unchanged since the first tick, want at least 30 (all but the expiring and the topped-up)", idle)
	}
}

// TestRefreshChangesNoValue: ticks with nothing due re-log every account,
// due entry and period over a sweep, and the store's bytes (every kind
// but the refresh cursor and the batch bookkeeping: offsets, sequence,
// changelog position) are the same before and after.
func TestRefreshChangesNoValue(t *testing.T) {
	r := &refreshRun{tickHarness: newTickHarness(t, t.TempDir(), 1, time.Time{}, nil)}
	ids := customers(24)
	var grants []string
	for _, c := range ids {
		grants = append(grants, grantFor(c, "g-"+c, "2026-11-01T00:00:00Z", ""))
	}
	r.command(t, mustTime("2026-11-01T00:00:00Z"), grants...)
	at := mustTime("2027-01-01T00:00:00Z")
	r.tick(t, at) // closes two periods each, starts the sweep

	snapshot := func(s *Store) map[string]string {
		out := map[string]string{}
		err := s.DB().View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.DefaultIteratorOptions)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				switch it.Item().Key()[0] {
				case kindRefresh, kindOffset, kindSeq, kindChangelog:
					continue
				}
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				out[string(it.Item().KeyCopy(nil))] = fmt.Sprintf("%x exp %d", v, it.Item().ExpiresAt())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := snapshot(r.store)
	from := r.log.len()
	var seen []string
	for {
		at = at.Add(12 * time.Hour)
		if at.After(mustTime("2027-01-31T00:00:00Z")) {
			t.Fatalf("no wrap by %s; re-logged %v", at, seen)
		}
		i := r.tick(t, at)
		seen = append(seen, relogged(t, r.log.records[i])...)
		if c, ok := cursorIn(t, r.log.records[i]); ok && c.visited == 0 {
			break
		}
	}
	if after := snapshot(r.store); !reflect.DeepEqual(after, before) {
		t.Fatalf("the refresh changed the store: %d keys before, %d after, or values differ", len(before), len(after))
	}
	want := slices.Clone(ids)
	slices.Sort(want)
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("re-logged %v, want every account once in key order %v", seen, want)
	}
	// Every balance key was in those records, with its stored value.
	for k, v := range stateOf(t, r.store, 0) {
		found := false
		for _, rec := range r.log.records[from:] {
			for _, m := range recordMuts(t, rec) {
				if string(m.Key) == k {
					if string(m.Value) != v || m.Delete {
						t.Fatalf("key %q re-logged as %q (delete %v), stored %q", k, m.Value, m.Delete, v)
					}
					found = true
				}
			}
		}
		if !found {
			t.Errorf("key %q (kind %c) not re-logged in the sweep", k, k[0])
		}
	}
	if len(r.alerts.alerts) != 0 || len(r.sink.events) != 0 {
		t.Fatalf("a refresh emitted %d alerts, %d rated events", len(r.alerts.alerts), len(r.sink.events))
	}
}

// TestRefreshWritesChangedAccountOnce: a batch whose tick closes a period
// for every account (deleting each one's oldest past MaxStoredPeriods and
// moving its due entry), with a command for one of them, and whose
// refresh is behind and takes every account: each key is in the record
// once, no deleted period or due entry comes back, the unchanged ones are
// re-logged, and the store ends byte for byte as it does with the
// refresh off.
func TestRefreshWritesChangedAccountOnce(t *testing.T) {
	run := func(refresh bool) (*refreshRun, map[string]string) {
		r := &refreshRun{tickHarness: newTickHarness(t, t.TempDir(), 1, time.Time{}, nil)}
		if !refresh {
			r.p.bal.sweep = 0
		}
		r.command(t, mustTime("2026-11-01T00:00:00Z"),
			grantFor("acme", "a1", "2026-11-01T00:00:00Z", ""),
			grantFor("globex", "g1", "2026-11-01T00:00:00Z", "2029-12-20T00:00:00Z"),
			grantFor("initech", "i1", "2026-11-01T00:00:00Z", ""))
		// 37 months close: 36 kept each. The refresh starts its sweep.
		r.tick(t, mustTime("2029-12-15T00:00:00Z"))
		// An account with nothing due in the batch below: billed on the
		// 20th (its first days close as a period of their own).
		r.command(t, mustTime("2029-12-21T00:00:00Z"), grantFor("hooli", "h1", "2029-12-05T00:00:00Z", ""), `{"id":"p-h","customer_id":"hooli","kind":"change_plan","at":"2029-12-20T00:00:00Z",`+
			`"anchor":"2029-12-20T00:00:00Z","plan":{"id":"pro","version":1,"cycle":{"kind":"monthly"},"fee":"20"}}`)
		// 18 days after the sweep began: behind, so every account.
		r.tick(t, mustTime("2030-01-02T00:00:00Z"), grantFor("initech", "i2", "2030-01-02T00:00:00Z", ""))
		checkDueIndex(t, r.store, 0)
		return r, stateOf(t, r.store, 0)
	}
	on, withRefresh := run(true)
	_, without := run(false)
	if !reflect.DeepEqual(withRefresh, without) {
		for k, v := range without {
			if withRefresh[k] != v {
				t.Errorf("key %q: %q with the refresh, %q without", k, withRefresh[k], v)
			}
		}
		t.Fatalf("state with the refresh (%d keys) differs from without (%d)", len(withRefresh), len(without))
	}
	rec := on.log.records[on.log.len()-1]
	checkNoDuplicateKeys(t, on.log.len()-1, rec)
	// The three advanced accounts are written by the batch (in its
	// order), hooli by the refresh: each once.
	if got := relogged(t, rec); len(got) != 4 || !reflect.DeepEqual(slices.Sorted(slices.Values(got)), []string{"acme", "globex", "hooli", "initech"}) {
		t.Fatalf("accounts written %v, want acme, globex, initech and hooli once each", got)
	}
	writes, deletes := map[string]int{}, map[string]int{}
	for _, m := range recordMuts(t, rec) {
		if m.Key[0] != kindPeriod && m.Key[0] != kindDue {
			continue
		}
		customer := string(m.Key[5:])
		if m.Key[0] == kindPeriod {
			customer = strings.SplitN(customer, "\x00", 2)[0]
		} else {
			customer = customer[8:]
		}
		what := fmt.Sprintf("%c %s", m.Key[0], customer)
		if m.Delete {
			deletes[what]++
		} else {
			writes[what]++
		}
	}
	for _, c := range []string{"acme", "globex", "initech"} {
		// 35 stored periods re-logged and the new one; the oldest deleted.
		if writes["p "+c] != MaxStoredPeriods || deletes["p "+c] != 1 {
			t.Errorf("%s: %d period writes, %d deletes; want %d and 1", c, writes["p "+c], deletes["p "+c], MaxStoredPeriods)
		}
		if writes["n "+c] != 1 || deletes["n "+c] != 1 {
			t.Errorf("%s: due entry written %d, deleted %d times; want the move once", c, writes["n "+c], deletes["n "+c])
		}
	}
	hooliPeriods := 0
	for k := range withRefresh {
		if strings.HasPrefix(k, string(periodPrefix(nil, 0, "hooli"))) {
			hooliPeriods++
		}
	}
	if hooliPeriods == 0 || writes["n hooli"] != 1 || deletes["n hooli"] != 0 || writes["p hooli"] != hooliPeriods || deletes["p hooli"] != 0 {
		t.Errorf("hooli: due entry written %d, deleted %d; %d periods written, %d deleted; want its entry and its %d stored periods re-logged once",
			writes["n hooli"], deletes["n hooli"], writes["p hooli"], deletes["p hooli"], hooliPeriods)
	}
	if c, ok := cursorIn(t, rec); !ok || c.visited != 0 || c.n != 4 {
		t.Fatalf("cursor after the catch-up %+v (%v), want a new sweep of 4 accounts", c, ok)
	}
}

// TestRefreshCursorSurvivesRestore: a sweep half done by one processor is
// restored from the changelog on a fresh store, where a processor of the
// next generation carries it on from the account after the last one
// re-logged, not from the start; the sweep ends with every account
// re-logged once.
func TestRefreshCursorSurvivesRestore(t *testing.T) {
	r := &refreshRun{tickHarness: newTickHarness(t, t.TempDir(), 1, time.Time{}, nil)}
	ids := customers(40)
	var grants []string
	for _, c := range ids {
		grants = append(grants, grantFor(c, "g-"+c, "2026-11-01T00:00:00Z", ""))
	}
	r.command(t, mustTime("2026-11-01T00:00:00Z"), grants...)
	at := mustTime("2027-01-02T00:00:00Z")
	r.tick(t, at)
	var gen1 []string
	for len(gen1) < 20 {
		at = at.Add(6 * time.Hour)
		gen1 = append(gen1, relogged(t, r.log.records[r.tick(t, at)])...)
	}
	cur := storedCursor(t, r.store)
	if cur.visited != uint64(len(gen1)) || string(cur.last) != gen1[len(gen1)-1] {
		t.Fatalf("cursor %+v after re-logging %v", cur, gen1)
	}

	dir := t.TempDir()
	fresh := restore(t, dir, r.log.records, 0)
	if got := storedCursor(t, fresh); !reflect.DeepEqual(got, cur) {
		t.Fatalf("restored cursor %+v, want %+v", got, cur)
	}
	fresh.Close()
	r2 := &refreshRun{tickHarness: newTickHarness(t, dir, 2, at, r.log), offset: r.offset}
	var gen2 []string
	for {
		at = at.Add(6 * time.Hour)
		if at.After(mustTime("2027-02-01T00:00:00Z")) {
			t.Fatalf("the sweep did not end on the new owner by %s; it re-logged %v", at, gen2)
		}
		i := r2.tick(t, at)
		gen2 = append(gen2, relogged(t, r2.log.records[i])...)
		if c, ok := cursorIn(t, r2.log.records[i]); ok && c.visited == 0 {
			if c.n != uint64(len(ids)) {
				t.Fatalf("the new sweep counts %d accounts, want %d", c.n, len(ids))
			}
			break
		}
	}
	if len(gen2) == 0 || gen2[0] <= gen1[len(gen1)-1] {
		t.Fatalf("the new owner began at %v, after the old one's %q", gen2, gen1[len(gen1)-1])
	}
	want := slices.Clone(ids)
	slices.Sort(want)
	if got := append(gen1, gen2...); !reflect.DeepEqual(got, want) {
		t.Fatalf("the sweep across two owners re-logged %v, want every account once in key order %v", got, want)
	}
}

// TestRefreshUnreadableCursorStartsOver: a cursor this binary cannot read
// starts a new sweep, counted, instead of stopping the partition or
// stalling the refresh.
func TestRefreshUnreadableCursorStartsOver(t *testing.T) {
	r := &refreshRun{tickHarness: newTickHarness(t, t.TempDir(), 1, time.Time{}, nil)}
	r.command(t, mustTime("2026-11-01T00:00:00Z"), grantFor("a", "g", "2026-11-01T00:00:00Z", ""), grantFor("b", "g", "2026-11-01T00:00:00Z", ""))
	r.tick(t, mustTime("2026-11-02T00:00:00Z"))
	if err := r.store.Apply(0, []Mutation{{Key: refreshKey(0), Value: []byte{9, 1, 2}}}, ChangelogPos{Next: int64(r.log.len())}); err != nil {
		t.Fatal(err)
	}
	at := mustTime("2026-11-05T00:00:00Z")
	i := r.tick(t, at)
	if c, ok := cursorIn(t, r.log.records[i]); !ok || c.n != 2 || c.visited != 0 || !c.start.Equal(at) {
		t.Fatalf("cursor after an unreadable one %+v (%v), want a new sweep of 2 accounts from %s", c, ok, at)
	}
	i = r.tick(t, at.Add(5*24*time.Hour)) // the first of 2 accounts is due half a sweep in
	if got := relogged(t, r.log.records[i]); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("re-logged %v after the restart, want a and b", got)
	}
}
