package prices

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/rating"
)

func TestTimeKeyOrder(t *testing.T) {
	times := []time.Time{
		{}, // the first version's zero time
		time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 0),
		time.Unix(0, 1),
		mustTime("2026-02-21T10:00:00Z"),
		mustTime("2026-02-21T10:00:00Z").Add(time.Nanosecond),
		mustTime("2026-02-21T10:00:01Z"),
	}
	for i, tm := range times {
		k := timeKey(nil, tm)
		if back := parseTimeKey(k); !back.Equal(tm) {
			t.Errorf("%s: round trip gives %s", tm, back)
		}
		if i > 0 && bytes.Compare(timeKey(nil, times[i-1]), k) >= 0 {
			t.Errorf("%s does not sort after %s", tm, times[i-1])
		}
	}
}

func version(t *testing.T, eff time.Time, models map[string]string) *rating.Version {
	t.Helper()
	snap, err := rating.ParseLiteLLM(litellm(models))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVersion(eff, snap)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVersionIDDeterministic(t *testing.T) {
	t1 := mustTime("2026-03-01T00:00:00Z")
	a := version(t, t1, map[string]string{"m": "1e-06 2e-06", "n": "3e-06 4e-06"})
	// The same prices spelled differently (key order, exponent form, spacing).
	same, err := rating.ParseLiteLLM([]byte(`{"n":{"litellm_provider":"test","mode":"chat","output_cost_per_token":0.000004,"input_cost_per_token":0.000003},
		"m":{"mode":"chat","litellm_provider":"test","input_cost_per_token":0.000001,"output_cost_per_token":2E-6}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewVersion(t1, same)
	if a.ID != b.ID {
		t.Errorf("same prices, different ids: %s %s", a.ID, b.ID)
	}
	if want := "litellm-20260301T000000Z-"; a.ID[:len(want)] != want {
		t.Errorf("id %s: want prefix %s", a.ID, want)
	}
	if c := version(t, t1.Add(time.Second), map[string]string{"m": "1e-06 2e-06", "n": "3e-06 4e-06"}); c.ID == a.ID {
		t.Error("another effective time gives the same id")
	}
	if c := version(t, t1, map[string]string{"m": "1e-06 2e-06", "n": "3e-06 5e-06"}); c.ID == a.ID {
		t.Error("other prices give the same id")
	}
}

func TestStoreKeepsHistory(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	s := NewStore(db)
	t1, t2 := mustTime("2026-03-01T00:00:00Z"), mustTime("2026-04-01T00:00:00Z")
	v0 := version(t, time.Time{}, map[string]string{"m": "1e-06 2e-06"})
	v1 := version(t, t1, map[string]string{"m": "2e-06 2e-06"})
	v2 := version(t, t2, map[string]string{"m": "3e-06 2e-06"})
	// Out of order on purpose: keys sort by effective time.
	for _, v := range []*rating.Version{v2, v0, v1} {
		if err := s.SaveVersion(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		v    *rating.Version
		want error
	}{
		{"same version again", v1, ErrExists},
		{"other prices at a taken time", version(t, t1, map[string]string{"m": "9e-06 2e-06"}), ErrConflict},
	} {
		if err := s.SaveVersion(c.v); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	db.Close()
	s = NewStore(openDB(t, dir)) // history survives a restart
	book, err := s.Book(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(book.Versions()); n != 3 {
		t.Fatalf("%d versions, want 3", n)
	}
	for _, c := range []struct {
		at   time.Time
		want *rating.Version
	}{
		{mustTime("2020-01-01T00:00:00Z"), v0},
		{t1.Add(-time.Nanosecond), v0},
		{t1, v1},
		{t2.Add(-time.Second), v1},
		{t2, v2},
		{t2.AddDate(5, 0, 0), v2},
	} {
		got := book.VersionAt(c.at)
		if got == nil || got.ID != c.want.ID {
			t.Errorf("VersionAt(%s) = %v, want %s", c.at, got, c.want.ID)
		}
	}
	mp, v, err := book.PriceAt("m", "", t1.Add(time.Hour))
	if err != nil || v.ID != v1.ID {
		t.Fatal(err, v)
	}
	if p, _ := mp.Base[0].Get(0); p.String() != "0.000002" {
		t.Errorf("input price in force at t1+1h: %s", p)
	}
}

func TestLoadSharesUnchangedEntries(t *testing.T) {
	s := NewStore(openDB(t, ""))
	t1 := mustTime("2026-03-01T00:00:00Z")
	for _, v := range []*rating.Version{
		version(t, time.Time{}, map[string]string{"same": "1e-06 2e-06", "changed": "1e-06 2e-06"}),
		version(t, t1, map[string]string{"same": "1e-06 2e-06", "changed": "5e-06 2e-06"}),
	} {
		if err := s.SaveVersion(v); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := s.Versions()
	if err != nil {
		t.Fatal(err)
	}
	if vs[0].Prices.Get("same") != vs[1].Prices.Get("same") {
		t.Error("an unchanged entry is held twice")
	}
	if vs[0].Prices.Get("changed") == vs[1].Prices.Get("changed") {
		t.Error("a changed entry is shared")
	}
}

func TestCardsAndAssignments(t *testing.T) {
	s := NewStore(openDB(t, ""))
	t0, t1 := mustTime("2026-01-01T00:00:00Z"), mustTime("2026-03-01T00:00:00Z")
	v1 := CardVersion{CardID: "default", CardVersion: rating.CardVersion{Version: 1, Rollout: rating.RolloutAllCustomers,
		Markups: rating.MarkupRules{Default: rating.MustMarkup("30"), ByModel: map[string]rating.Markup{"gpt-4o": rating.MustMarkup("12.5")}}}}
	v2 := CardVersion{CardID: "default", CardVersion: rating.CardVersion{Version: 2, Rollout: rating.RolloutNewCustomersOnly,
		EffectiveFrom: t1, Markups: rating.MarkupRules{Default: rating.MustMarkup("35")}, PriceVersion: "litellm-x"}}
	for _, cv := range []CardVersion{v1, v2} {
		if err := s.AddCardVersion(cv); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddCardVersion(v1); !errors.Is(err, ErrConflict) {
		t.Errorf("rewriting card version 1: %v", err)
	}
	if err := s.SetDefaultCard("nope"); !errors.Is(err, ErrNoCard) {
		t.Errorf("default card that does not exist: %v", err)
	}
	if err := s.SetDefaultCard("default"); err != nil {
		t.Fatal(err)
	}
	cards, err := s.Cards()
	if err != nil {
		t.Fatal(err)
	}
	c := cards["default"]
	if c == nil || len(c.Versions) != 2 {
		t.Fatalf("cards: %+v", cards)
	}
	got := c.Versions[0]
	if got.Markups.Default != rating.MustMarkup("30") || got.Markups.ByModel["gpt-4o"] != rating.MustMarkup("12.5") || got.Rollout != rating.RolloutAllCustomers {
		t.Errorf("card v1 round trip: %+v", got)
	}
	if got := c.Versions[1]; got.Rollout != rating.RolloutNewCustomersOnly || !got.EffectiveFrom.Equal(t1) || got.PriceVersion != "litellm-x" {
		t.Errorf("card v2 round trip: %+v", got)
	}

	// Assignments as older versions stored them.
	if any, err := s.HasAssignments(); err != nil || any {
		t.Fatalf("assignments in a new store: %v %v", any, err)
	}
	a0 := rating.Assignment{CardID: "default", Version: 1, AssignedAt: t0}
	if err := s.Assign("acme", a0); err != nil {
		t.Fatal(err)
	}
	if any, err := s.HasAssignments(); err != nil || !any {
		t.Fatalf("assignments after Assign: %v %v", any, err)
	}
	a1 := rating.Assignment{CardID: "default", Version: 2, AssignedAt: t1}
	for i := 0; i < 2; i++ { // the same assignment twice is a no-op
		if err := s.Assign("acme", a1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Assign("acme", rating.Assignment{CardID: "other", Version: 1, AssignedAt: t1}); !errors.Is(err, ErrConflict) {
		t.Errorf("another assignment at the same time: %v", err)
	}
	if err := s.Assign("acme\x00x", a1); err == nil {
		t.Error("customer id with NUL accepted")
	}
	if err := s.Assign("acme2", a0); err != nil {
		t.Fatal(err)
	}
	all, err := s.Assignments()
	if err != nil {
		t.Fatal(err)
	}
	if len(all["acme"]) != 2 || all["acme"][0] != a0 || all["acme"][1] != a1 || len(all["acme2"]) != 1 {
		t.Errorf("assignments: %+v", all)
	}
	if h, _ := s.History("acme"); len(h) != 2 {
		t.Errorf("history: %+v", h)
	}
}

func TestOutbox(t *testing.T) {
	s := NewStore(openDB(t, ""))
	v := version(t, time.Time{}, map[string]string{"m": "1e-06 2e-06"})
	if err := s.Save(Record{Version: v, Outbox: map[string][]byte{"kafka:x": []byte(`{"a":1}`), "webhook:http://h": []byte(`{"b":2}`)}}); err != nil {
		t.Fatal(err)
	}
	p, err := s.Pending()
	if err != nil || len(p) != 2 || p[0].Target != "kafka:x" || p[0].VersionID != v.ID || string(p[1].Payload) != `{"b":2}` {
		t.Fatalf("pending: %+v %v", p, err)
	}
	if err := s.Delivered("kafka:x", v.ID); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Pending(); len(p) != 1 || p[0].Target != "webhook:http://h" {
		t.Errorf("pending after delivery: %+v", p)
	}
	// The outbox entry is written with the version or not at all: a
	// refused version leaves no announcement.
	err = s.Save(Record{Version: version(t, time.Time{}, map[string]string{"m": "7e-06 2e-06"}), Outbox: map[string][]byte{"kafka:y": nil}})
	if !errors.Is(err, ErrConflict) {
		t.Fatal(err)
	}
	if p, _ := s.Pending(); len(p) != 1 {
		t.Errorf("a refused version queued an announcement: %+v", p)
	}
}
