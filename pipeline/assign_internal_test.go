package pipeline

import (
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

// testCards is fakeRater with rate cards "std" (the default) and "gold",
// one version each: it records the card of the customer's latest
// assignment at the event's time in the row.
type testCards struct{ fakeRater }

func (c testCards) RateWith(ev *schemas.UsageEvent, hist []rating.Assignment, out *sinks.RatedEvent) error {
	if err := c.Rate(ev, out); err != nil {
		return err
	}
	for _, a := range hist {
		if !a.AssignedAt.After(ev.Time) {
			out.RateCardID, out.RateCardVersion = a.CardID, uint32(a.Version)
		}
	}
	return nil
}

func (testCards) Join(t time.Time) (rating.Assignment, bool) {
	return rating.Assignment{CardID: "std", Version: 1, AssignedAt: t.UTC()}, true
}

func (testCards) StoredHistory(string) ([]rating.Assignment, error) { return nil, nil }

func (testCards) CheckAssignment(a rating.Assignment) error {
	if (a.CardID != "std" && a.CardID != "gold") || a.Version != 1 {
		return fmt.Errorf("rate_card_id: %q version %d: not in the catalog", a.CardID, a.Version)
	}
	return nil
}

// assignmentState returns the partition's assignment keys, key -> value.
func assignmentState(t *testing.T, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.DB().View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = partKey(nil, kindAssignment, 0)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().KeyCopy(nil))] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRefreshRelogsAssignments: assignments live as long as their
// customer, longer than the changelog keeps records, so the refresh
// re-logs them with the accounts. A customer who joined with usage and
// one moved by a command before any usage are both rebuilt from the
// records of the last sweep alone, with the older records (which wrote
// the assignments) dropped as retention would.
func TestRefreshRelogsAssignments(t *testing.T) {
	r := &refreshRun{tickHarness: newTickHarness(t, t.TempDir(), 1, time.Time{}, nil)}
	r.p.asg = newAssignments(0, testCards{})
	start := mustTime("2026-11-01T01:00:00Z") // the csv events' time is midnight
	r.now = start
	r.apply(t, []kafka.Message{
		{Topic: "usage", Offset: 0, Value: []byte("e1,u1,m,100;e2,u2,m,100")},
		admin(r.offset, fmt.Sprintf(`{"kind":"assign_rate_card","id":"move-c1","customer_id":"c1","at":%q,"rate_card_id":"gold","version":1,"effective_at":"2026-11-01T00:30:00Z"}`, start.Format(time.RFC3339))),
	})
	r.offset++
	if len(r.dlq.recs) != 0 {
		t.Fatalf("dead letters %+v", r.dlq.recs)
	}
	orig := assignmentState(t, r.store)
	if len(orig) != 3 {
		t.Fatalf("assignments in state: %d, want 3 (u1 and u2 joined, c1 moved)", len(orig))
	}
	if _, ok, err := r.store.Account(0, "c1"); err != nil || !ok {
		t.Fatalf("c1, moved before any usage, has no account (%v): the refresh would not carry its assignment", err)
	}
	wrote := r.log.len()

	at := start.Add(24 * time.Hour)
	var starts []int
	for len(starts) < 2 {
		at = at.Add(6 * time.Hour)
		if at.After(start.Add(60 * 24 * time.Hour)) {
			t.Fatalf("two sweeps not done by %s", at)
		}
		if i := r.tick(t, at); i >= 0 {
			if c, ok := cursorIn(t, r.log.records[i]); ok && c.visited == 0 {
				starts = append(starts, i)
			}
		}
	}
	if starts[0] < wrote {
		t.Fatalf("the sweep started at record %d, before the usage's %d", starts[0], wrote)
	}
	last := r.log.records[starts[0]+1 : starts[1]+1]
	fresh := restore(t, t.TempDir(), last, starts[0]+1)
	defer fresh.Close()
	restored := assignmentState(t, fresh)
	for k, v := range orig {
		if restored[k] != v {
			t.Errorf("assignments of %q: restored %q, original %q", k[5:], restored[k], v)
		}
	}
	if h, err := fresh.Assignments(0, "c1"); err != nil || len(h) != 1 || h[0].CardID != "gold" {
		t.Errorf("c1 restored: %+v %v", h, err)
	}
}

// TestAssignmentLookupAllocs: finding the assignments of a customer the
// processor has loaded allocates nothing (the hot path of every event).
func TestAssignmentLookupAllocs(t *testing.T) {
	h := newTickHarness(t, t.TempDir(), 1, mustTime("2026-11-01T01:00:00Z"), nil)
	h.p.asg = newAssignments(0, testCards{})
	h.apply(t, []kafka.Message{{Topic: "usage", Offset: 0, Value: []byte("e1,acme,m,100")}})
	if len(h.sink.events) != 1 || h.sink.events[0].RateCardID != "std" {
		t.Fatalf("rated %+v", h.sink.events)
	}
	txn := h.store.DB().NewTransaction(false)
	defer txn.Discard()
	ev := &schemas.UsageEvent{ID: "e2", CustomerID: "acme", Time: mustTime("2026-11-01T00:10:00Z")}
	muts := len(h.p.muts)
	allocs := testing.AllocsPerRun(1000, func() {
		hist, err := h.p.historyFor(txn, ev, true)
		if err != nil || len(hist) != 1 {
			t.Fatalf("history %+v %v", hist, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per lookup of a loaded customer, want 0", allocs)
	}
	if len(h.p.muts) != muts {
		t.Errorf("lookups wrote %d mutations", len(h.p.muts)-muts)
	}
}

// TestAssignmentsEncoding: the stored form round-trips exactly and
// anything else is refused.
func TestAssignmentsEncoding(t *testing.T) {
	hist := []rating.Assignment{
		{CardID: "default", Version: 1, AssignedAt: time.Unix(-5, 7).UTC()},
		{CardID: "enterprise", Version: 12, AssignedAt: mustTime("2026-11-27T08:00:00.123456789Z")},
	}
	b := encodeAssignments(nil, hist)
	got, err := decodeAssignments(b)
	if err != nil || len(got) != 2 || got[0] != hist[0] || got[1] != hist[1] {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"version 2":      append([]byte{2}, b[1:]...),
		"truncated":      b[:len(b)-1],
		"trailing":       append(append([]byte(nil), b...), 0),
		"out of order":   encodeAssignments(nil, []rating.Assignment{hist[1], hist[0]}),
		"card version 0": encodeAssignments(nil, []rating.Assignment{{CardID: "x", AssignedAt: hist[0].AssignedAt}}),
	} {
		if _, err := decodeAssignments(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
