package prices

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/sinks"
)

// memLog is a price-state topic in memory: one partition, offsets from 0.
type memLog struct {
	mu   sync.Mutex
	recs []LogRecord
	grew chan struct{} // closed and replaced on every append
}

func newMemLog() *memLog { return &memLog{grew: make(chan struct{})} }

func (l *memLog) Append(_ context.Context, entries []Entry) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range entries {
		l.recs = append(l.recs, LogRecord{Offset: int64(len(l.recs)), Entry: Entry{Key: append([]byte(nil), e.Key...), Value: append([]byte(nil), e.Value...)}, Last: i == len(entries)-1})
	}
	close(l.grew)
	l.grew = make(chan struct{})
	return int64(len(l.recs) - 1), nil
}

func (l *memLog) Bounds(context.Context) (int64, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return 0, int64(len(l.recs)), nil
}

func (l *memLog) Fetch(ctx context.Context, from int64, wait time.Duration) ([]LogRecord, error) {
	l.mu.Lock()
	if from < int64(len(l.recs)) {
		// At most two records a fetch, so writes arrive split across
		// fetches as they may from Kafka.
		out := append([]LogRecord(nil), l.recs[from:min(from+2, int64(len(l.recs)))]...)
		l.mu.Unlock()
		return out, nil
	}
	grew := l.grew
	l.mu.Unlock()
	select {
	case <-grew:
	case <-time.After(wait):
	case <-ctx.Done():
	}
	return nil, nil
}

// recordingLog records the offsets one follower fetches from.
type recordingLog struct {
	*memLog
	mu    sync.Mutex
	froms []int64
}

func (r *recordingLog) Fetch(ctx context.Context, from int64, wait time.Duration) ([]LogRecord, error) {
	r.mu.Lock()
	r.froms = append(r.froms, from)
	r.mu.Unlock()
	return r.memLog.Fetch(ctx, from, wait)
}

func (r *recordingLog) fetchedFrom() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.froms...)
}

func (l *memLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// follow makes st shared through l and starts it.
func follow(t testing.TB, l Log, st *State) *Follower {
	t.Helper()
	f, err := NewFollower(l, "test.prices", st, FollowerOptions{Wait: 20 * time.Millisecond}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return f
}

var (
	listA = litellm(map[string]string{"m1": "0.000001 0.000002", "m2": "0.000003 0.000004"})
	listB = litellm(map[string]string{"m1": "0.000002 0.000002", "m2": "0.000003 0.000004"})
)

// rateCharge rates one event of model m1 at at for customer with st.
func rateCharge(t testing.TB, st *State, customer string, at time.Time) sinks.RatedEvent {
	t.Helper()
	var out sinks.RatedEvent
	if err := st.NewRater().Rate(ev("e-"+customer, customer, "m1", at, 1_000_000, 1_000_000), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFollowerSharesVersionsAndCards: what one State records through the
// topic, another applies in order and rates with identically; each write
// reaches the other's live catalog (State reloaded).
func TestFollowerSharesVersionsAndCards(t *testing.T) {
	l := newMemLog()
	a, b := newState(t, openDB(t, "")), newState(t, openDB(t, ""))
	fa, fb := follow(t, l, a), follow(t, l, b)

	sa := newSyncer(t, a)
	syncAt(t, sa, time.Time{}, listA)
	if _, err := a.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("30")}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		t.Fatal(err)
	}
	t1 := mustTime("2026-03-01T00:00:00Z")
	sa.SetClock(func() time.Time { return t1 })
	if res := syncAt(t, sa, time.Time{}, listB); !res.Recorded {
		t.Fatal("second sync recorded nothing")
	}
	if n := len(b.Catalog().Book.Versions()); n != 0 {
		t.Fatalf("b has %d versions before following: the fake applied without a catch-up", n)
	}
	if err := fb.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	ca, cb := a.Catalog(), b.Catalog()
	if len(cb.Book.Versions()) != 2 || cb.Book.Versions()[1].ID != ca.Book.Versions()[1].ID {
		t.Fatalf("b's versions %v, a's %v", ids(cb.Book.Versions()), ids(ca.Book.Versions()))
	}
	if cb.DefaultCard != "default" || cb.Cards["default"] == nil {
		t.Fatalf("b's default card %q, cards %v: expected the card a set", cb.DefaultCard, cb.Cards)
	}
	for _, at := range []time.Time{t1.Add(-time.Hour), t1.Add(time.Hour)} {
		ra, rb := rateCharge(t, a, "c1", at), rateCharge(t, b, "c1", at)
		if ra.Charge.String() != rb.Charge.String() || ra.PriceVersion != rb.PriceVersion {
			t.Errorf("at %s: a charges %s with %s, b %s with %s", at, ra.Charge, ra.PriceVersion, rb.Charge, rb.PriceVersion)
		}
	}
	// m1 after the change: 1M input and 1M output tokens at 2 USD per 1M
	// each cost 4; the card's 30% makes 5.2.
	if got := rateCharge(t, b, "c2", t1.Add(time.Hour)).Charge.String(); got != "5.2" {
		t.Errorf("b charges %s after the change, expected 5.2", got)
	}
	if fa.Refused()+fb.Refused() != 0 {
		t.Errorf("refused %d, %d: expected none", fa.Refused(), fb.Refused())
	}
	if fa.Applied() != int64(l.len()) || fb.Applied() != int64(l.len()) {
		t.Errorf("applied %d, %d of %d records", fa.Applied(), fb.Applied(), l.len())
	}
}

func ids(vs []*rating.Version) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID
	}
	return out
}

// TestFollowerRunAppliesWhileRunning: Run applies another writer's card
// edit to the live State without being asked.
func TestFollowerRunAppliesWhileRunning(t *testing.T) {
	l := newMemLog()
	a, b := newState(t, openDB(t, "")), newState(t, openDB(t, ""))
	follow(t, l, a)
	fb := follow(t, l, b)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- fb.Run(ctx) }()
	defer func() { cancel(); <-done }()

	syncAt(t, newSyncer(t, a), time.Time{}, listA)
	if _, err := a.SetCard("gold", rating.MarkupRules{Default: rating.MustMarkup("10")}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for b.Catalog().Cards["gold"] == nil {
		if time.Now().After(deadline) {
			t.Fatal("b's live catalog lacks card gold 1s after a set it")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFollowerIdempotentAndResumes: a write read again (duplicated in the
// topic, or re-fetched) changes nothing, and a follower re-opened over the
// same store resumes from the stored position.
func TestFollowerIdempotentAndResumes(t *testing.T) {
	l := newMemLog()
	a := newState(t, openDB(t, ""))
	follow(t, l, a)
	syncAt(t, newSyncer(t, a), time.Time{}, listA)
	// The same write again, as a second racing writer would publish it.
	l.mu.Lock()
	dup := make([]Entry, 0, len(l.recs))
	for _, r := range l.recs {
		dup = append(dup, r.Entry)
	}
	l.mu.Unlock()
	if _, err := l.Append(t.Context(), dup); err != nil {
		t.Fatal(err)
	}

	db := openDB(t, "")
	b := newState(t, db)
	fb := follow(t, l, b)
	if fb.Refused() != 0 {
		t.Fatalf("an identical write was refused %d times", fb.Refused())
	}
	if n := len(b.Catalog().Book.Versions()); n != 1 {
		t.Fatalf("b has %d versions, expected 1", n)
	}
	end := int64(l.len())
	if fb.Applied() != end {
		t.Fatalf("applied up to %d, expected %d", fb.Applied(), end)
	}

	// Re-open over the same store: the position is the stored one, and a
	// catch-up reads only what is new.
	b2, err := Load(b.Store(), rating.MarkupRules{Default: rating.NoMarkup}, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingLog{memLog: l}
	f2, err := NewFollower(rl, "test.prices", b2, FollowerOptions{Wait: 20 * time.Millisecond}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if f2.Applied() != end {
		t.Fatalf("re-opened follower at %d, expected the stored %d", f2.Applied(), end)
	}
	if _, err := a.SetCard("gold", rating.MarkupRules{Default: rating.MustMarkup("10")}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := f2.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	froms := rl.fetchedFrom()
	if len(froms) == 0 {
		t.Error("re-opened follower fetched nothing")
	}
	for _, from := range froms {
		if from < end {
			t.Errorf("re-opened follower fetched from %d, before its stored position %d", from, end)
		}
	}
	if b2.Catalog().Cards["gold"] == nil {
		t.Error("re-opened follower did not apply the new card")
	}
	// A different topic name is another history: the position is not
	// reused.
	if f3, err := NewFollower(l, "other.prices", b2, FollowerOptions{}, testLog(t)); err != nil || f3.Applied() != 0 {
		t.Errorf("follower of another topic starts at %d (%v), expected 0", f3.Applied(), err)
	}
}

// TestFollowerRefusesConflicts: a write that would rewrite history is
// refused whole, logged and counted, and the follower goes on.
func TestFollowerRefusesConflicts(t *testing.T) {
	l := newMemLog()
	a := newState(t, openDB(t, ""))
	follow(t, l, a)
	syncAt(t, newSyncer(t, a), time.Time{}, listA)
	if _, err := a.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("30")}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		t.Fatal(err)
	}
	b := newState(t, openDB(t, ""))
	fb := follow(t, l, b)
	want := b.Catalog().Book.Versions()[0].ID

	// Another version at the same effective time (a racing writer that
	// had not caught up), in one write with a new card that alone would
	// apply: nothing of the write may be applied.
	snap, _, err := Parse([]List{{Name: "x", Data: listB}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVersion(time.Time{}, snap)
	if err != nil {
		t.Fatal(err)
	}
	vdata, err := rating.MarshalVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	k, cdata, err := encodeCardVersion(CardVersion{CardID: "silver", CardVersion: rating.CardVersion{Version: 1, Markups: rating.MarkupRules{Default: rating.MustMarkup("5")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), []Entry{{Key: k, Value: cdata}, {Key: versionKey(v), Value: vdata}}); err != nil {
		t.Fatal(err)
	}
	// Card version 1 of "default" with another markup.
	k2, c2, err := encodeCardVersion(CardVersion{CardID: "default", CardVersion: rating.CardVersion{Version: 1, Markups: rating.MarkupRules{Default: rating.MustMarkup("99")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), []Entry{{Key: k2, Value: c2}}); err != nil {
		t.Fatal(err)
	}
	// A key that is not shared history (an assignment).
	if _, err := l.Append(t.Context(), []Entry{{Key: []byte("rax\x00123456789012"), Value: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	// Then a good write, which must still apply.
	k3, c3, err := encodeCardVersion(CardVersion{CardID: "gold", CardVersion: rating.CardVersion{Version: 1, Markups: rating.MarkupRules{Default: rating.MustMarkup("10")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), []Entry{{Key: k3, Value: c3}}); err != nil {
		t.Fatal(err)
	}
	if err := fb.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fb.Refused() != 3 {
		t.Errorf("refused %d writes, expected 3", fb.Refused())
	}
	cat := b.Catalog()
	if vs := cat.Book.Versions(); len(vs) != 1 || vs[0].ID != want {
		t.Errorf("versions %v after a conflicting write, expected only %s", ids(vs), want)
	}
	if cat.Cards["silver"] != nil {
		t.Error("card silver applied from a refused write")
	}
	if m := cat.Cards["default"].Versions[0].Markups.Default; m != rating.MustMarkup("30") {
		t.Errorf("card default version 1 has markup %s, expected the recorded 30%%", m)
	}
	if cat.Cards["gold"] == nil {
		t.Error("the write after the refused ones was not applied")
	}
	if fb.Applied() != int64(l.len()) {
		t.Errorf("applied up to %d, expected %d (a refused write is passed)", fb.Applied(), l.len())
	}

	// The writer that lost such a race learns it: its write is not in
	// force, so share reports a conflict.
	k4, c4, err := encodeCardVersion(CardVersion{CardID: "default", CardVersion: rating.CardVersion{Version: 1, Markups: rating.MarkupRules{Default: rating.MustMarkup("50")}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := fb.share([]Entry{{Key: k4, Value: c4}}); !errors.Is(err, ErrConflict) {
		t.Errorf("share of a conflicting card version: %v, expected ErrConflict", err)
	}
}

// TestFollowerSeedsAndAdopts: the first instance upgraded from before
// sharing publishes its history to the empty topic; an instance with
// other local history adopts the topic's, so both rate alike.
func TestFollowerSeedsAndAdopts(t *testing.T) {
	t1 := mustTime("2026-03-01T00:00:00Z")
	// Two instances that synced on their own before the upgrade.
	a, b := newState(t, openDB(t, "")), newState(t, openDB(t, ""))
	sa, sb := newSyncer(t, a), newSyncer(t, b)
	syncAt(t, sa, time.Time{}, listA)
	syncAt(t, sb, time.Time{}, listA)
	syncAt(t, sa, t1, listB)
	syncAt(t, sb, t1.Add(time.Minute), listB) // b's clock was a minute late
	if _, err := a.SetCard("default", rating.MarkupRules{Default: rating.MustMarkup("30")}, rating.RolloutAllCustomers, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// b never had a card.

	l := newMemLog()
	fa := follow(t, l, a)
	if l.len() == 0 {
		t.Fatal("a did not seed the empty topic")
	}
	fb := follow(t, l, b)
	if fa.Refused()+fb.Refused() != 0 {
		t.Errorf("refused %d, %d", fa.Refused(), fb.Refused())
	}
	va, vb := ids(a.Catalog().Book.Versions()), ids(b.Catalog().Book.Versions())
	if len(va) != 2 || len(vb) != 2 || va[0] != vb[0] || va[1] != vb[1] {
		t.Fatalf("versions differ after adopting: a %v, b %v", va, vb)
	}
	if b.Catalog().DefaultCard != "default" {
		t.Errorf("b's default card %q, expected a's", b.Catalog().DefaultCard)
	}
	at := t1.Add(30 * time.Second) // between a's and b's old change times
	ra, rb := rateCharge(t, a, "c1", at), rateCharge(t, b, "c1", at)
	if ra.Charge.String() != rb.Charge.String() || ra.PriceVersion != rb.PriceVersion {
		t.Errorf("a charges %s (%s), b %s (%s)", ra.Charge, ra.PriceVersion, rb.Charge, rb.PriceVersion)
	}
	// A start over an empty topic and an empty store records the
	// position, so the next start is not a first one.
	c := newState(t, openDB(t, ""))
	follow(t, newMemLog(), c)
	if _, ok, err := c.Store().appliedPos("test.prices"); err != nil || !ok {
		t.Errorf("empty start: position stored %v (%v), expected stored", ok, err)
	}
}

// TestSharedWriteNeedsTheTopic: a shared store writes nothing locally when
// the topic refuses the write, and keeps no announcement of it.
func TestSharedWriteNeedsTheTopic(t *testing.T) {
	st := newState(t, openDB(t, ""))
	follow(t, failingLog{newMemLog()}, st)
	_, err := newSyncer(t, st).SyncLists(t.Context(), []List{{Name: "x", Data: listA}}, SyncOptions{})
	if err == nil {
		t.Fatal("sync succeeded with the topic down")
	}
	if _, err := st.SetCard("gold", rating.MarkupRules{Default: rating.MustMarkup("10")}, rating.RolloutAllCustomers, time.Time{}); err == nil {
		t.Fatal("card set with the topic down")
	}
	err = st.Store().db.View(func(txn *badger.Txn) error {
		for _, prefix := range [][]byte{prefixVersion, prefixCard, keyDefaultCard} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			it.Rewind()
			found := it.Valid()
			it.Close()
			if found {
				return fmt.Errorf("a key %q is stored with the topic down", prefix)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestSharedAnnouncements: the instance that records a version through the
// topic announces it once; the one that applies it announces nothing.
func TestSharedAnnouncements(t *testing.T) {
	l := newMemLog()
	a, b := newState(t, openDB(t, "")), newState(t, openDB(t, ""))
	follow(t, l, a)
	fb := follow(t, l, b)
	na, nb := &fakeNotifier{}, &fakeNotifier{}
	sa, sb := newSyncer(t, a, na), newSyncer(t, b, nb)
	syncAt(t, sa, time.Time{}, listA)
	res := syncAt(t, sa, mustTime("2026-03-01T00:00:00Z"), listB)
	if !res.Recorded || len(res.Delivered) != 1 || len(na.got) != 1 {
		t.Fatalf("recorded %v, delivered %v, notifier got %d: expected one announcement", res.Recorded, res.Delivered, len(na.got))
	}
	if err := fb.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if res := sb.Deliver(t.Context()); len(res.Delivered) != 0 || len(nb.got) != 0 {
		t.Errorf("the applying instance announced %v", res.Delivered)
	}
	for _, st := range []*State{a, b} {
		if p, err := st.Store().Pending(); err != nil || len(p) != 0 {
			t.Errorf("pending announcements %v (%v)", p, err)
		}
	}
}

type failingLog struct{ *memLog }

func (failingLog) Append(context.Context, []Entry) (int64, error) {
	return 0, errors.New("broker down")
}

// TestSyncerScheduleGate: with a gate (tariff run: "owns partition 0"),
// the scheduled sync runs only while it is open, and at once when it
// opens.
func TestSyncerScheduleGate(t *testing.T) {
	st := newState(t, openDB(t, ""))
	src := writeFile(t, "list.json", listA)
	s, err := NewSyncer(SyncConfig{Sources: []string{src}}, st, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	open, asked := false, 0
	s.SetScheduleGate(func() bool {
		mu.Lock()
		defer mu.Unlock()
		asked++
		return open
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := asked
		mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gate asked %d times in 5s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(st.Catalog().Book.Versions()); n != 0 {
		t.Fatalf("%d versions recorded while the gate was closed", n)
	}
	mu.Lock()
	open = true
	mu.Unlock()
	for len(st.Catalog().Book.Versions()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no sync 5s after the gate opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
