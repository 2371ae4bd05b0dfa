package prices

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

func findChange(changes []rating.Change, kind rating.ChangeKind, model string, unit schemas.Unit) *rating.Change {
	for i := range changes {
		c := &changes[i]
		if c.Kind == kind && c.Model == model &&
			(kind <= rating.ChangeModelRemoved || (c.Unit == unit && c.Condition == "" && c.Tier == schemas.TierStandard)) {
			return c
		}
	}
	return nil
}

// TestSyncRealSnapshots syncs the real LiteLLM map of 2025-11-28, then the
// current one, and checks what change detection finds, what is recorded
// and how events on either side of the effective time are rated.
func TestSyncRealSnapshots(t *testing.T) {
	oldPath := sharedPath(t, "litellm_model_prices.2025-11-28.json")
	curPath := sharedPath(t, "litellm_model_prices.json")
	db := openDB(t, "")
	st := newState(t, db)
	s := newSyncer(t, st)
	ctx := t.Context()

	first, err := s.Sync(ctx, []string{oldPath}, SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Recorded || first.Previous != nil || !first.Version.EffectiveFrom.IsZero() || len(first.Changes) != 0 {
		t.Fatalf("first sync: recorded %v, previous %v, effective %s, %d changes", first.Recorded, first.Previous, first.Version.EffectiveFrom, len(first.Changes))
	}
	if f := first.Fetched[0]; f.Format != rating.FormatLiteLLM || f.Models != 1839 {
		t.Errorf("fetched %+v, want litellm with 1839 models", f)
	}

	t1 := mustTime("2026-02-21T12:00:00Z")
	s.SetClock(func() time.Time { return t1 })
	res, err := s.Sync(ctx, []string{curPath}, SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recorded || res.Previous.ID != first.Version.ID || !res.Version.EffectiveFrom.Equal(t1) {
		t.Fatalf("second sync: recorded %v, previous %v, version %+v", res.Recorded, res.Previous, res.Version)
	}
	sum := Summarize(res.Changes)
	if sum.ModelsAdded != 816 || sum.ModelsRemoved != 60 {
		t.Errorf("summary %+v: want 816 models added and 60 removed", sum)
	}
	for _, c := range []struct {
		kind          rating.ChangeKind
		model         string
		unit          schemas.Unit
		old, new, rel string
	}{
		{rating.ChangePriceDown, "azure_ai/grok-4", schemas.UnitInput, "0.0000055", "0.000003", "-0.454545"},
		{rating.ChangePriceDown, "azure_ai/grok-4", schemas.UnitOutput, "0.0000275", "0.000015", "-0.454545"},
		{rating.ChangePriceUp, "cerebras/gpt-oss-120b", schemas.UnitInput, "0.00000025", "0.00000035", "0.4"},
		{rating.ChangePriceUp, "cerebras/gpt-oss-120b", schemas.UnitOutput, "0.00000069", "0.00000075", "0.086957"},
	} {
		got := findChange(res.Changes, c.kind, c.model, c.unit)
		if got == nil || got.Old.String() != c.old || got.New.String() != c.new || got.Relative.String() != c.rel {
			t.Errorf("%s %s %s: got %+v, want %s → %s (%s)", c.kind, c.model, c.unit, got, c.old, c.new, c.rel)
		}
	}
	if findChange(res.Changes, rating.ChangeModelAdded, "claude-opus-4-6", 0) == nil {
		t.Error("claude-opus-4-6 not reported as added")
	}
	if findChange(res.Changes, rating.ChangeModelRemoved, "azure/claude-sonnet-4-5", 0) == nil {
		t.Error("azure/claude-sonnet-4-5 not reported as removed")
	}

	// The same list again, and the same prices in other bytes: no version.
	s.SetClock(func() time.Time { return t1.Add(time.Hour) })
	again, err := s.Sync(ctx, []string{curPath}, SyncOptions{})
	if err != nil || again.Recorded || len(again.Changes) != 0 || again.Previous.ID != res.Version.ID {
		t.Fatalf("unchanged sync: recorded %v, %d changes, %v", again.Recorded, len(again.Changes), err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(sharedData(t, "litellm_model_prices.json"), &m); err != nil {
		t.Fatal(err)
	}
	compact, _ := json.Marshal(m) // sorted keys, no spacing
	if again, err = s.SyncLists(ctx, []List{{"compact", compact}}, SyncOptions{}); err != nil || again.Recorded {
		t.Fatalf("reformatted list recorded a version: %v", err)
	}
	// Going back to the old list would remove 816 of 2595 models (31%):
	// refused unless forced, as a truncated upstream list would be.
	if _, err := s.Sync(ctx, []string{oldPath}, SyncOptions{}); !errors.Is(err, ErrTooManyRemoved) {
		t.Fatalf("back to the old list: %v, want ErrTooManyRemoved", err)
	}
	// A dry run of a change records nothing.
	dry, err := s.Sync(ctx, []string{oldPath}, SyncOptions{DryRun: true, Force: true})
	if err != nil || dry.Recorded || len(dry.Changes) == 0 || dry.Version == nil {
		t.Fatalf("dry run: recorded %v, %d changes, %v", dry.Recorded, len(dry.Changes), err)
	}

	// Reloaded from Badger: both versions, the right one on each side of t1.
	st2 := newState(t, db)
	book := st2.Catalog().Book
	if n := len(book.Versions()); n != 2 {
		t.Fatalf("%d versions stored, want 2", n)
	}
	r := st2.NewRater()
	var out rating.Rated
	for _, c := range []struct {
		at   time.Time
		cost string
		ver  string
	}{
		{t1.Add(-time.Second), "8.25", first.Version.ID}, // 1M × 5.5e-6 + 100k × 2.75e-5
		{t1, "4.5", res.Version.ID},                      // 1M × 3e-6 + 100k × 1.5e-5
		{t1.AddDate(0, 1, 0), "4.5", res.Version.ID},
	} {
		if err := r.RateEvent(ev("e", "acme", "azure_ai/grok-4", c.at, 1_000_000, 100_000), &out); err != nil {
			t.Fatal(err)
		}
		if out.Cost.String() != c.cost || out.PriceVersion != c.ver {
			t.Errorf("at %s: cost %s with %s, want %s with %s", c.at, out.Cost, out.PriceVersion, c.cost, c.ver)
		}
	}
}

func TestSyncCorrectionAndConflict(t *testing.T) {
	st := newState(t, openDB(t, ""))
	s := newSyncer(t, st)
	t1, t2 := mustTime("2026-03-01T00:00:00Z"), mustTime("2026-04-01T00:00:00Z")
	syncAt(t, s, time.Time{}, litellm(map[string]string{"m": "1e-06 2e-06"}))
	syncAt(t, s, t2, litellm(map[string]string{"m": "3e-06 2e-06"}))
	// A correction between the two: compared with the version in force then.
	res := syncAt(t, s, t1, litellm(map[string]string{"m": "2e-06 2e-06"}))
	if !res.Recorded || !res.Previous.EffectiveFrom.IsZero() {
		t.Fatalf("correction: %+v", res)
	}
	// Other prices at a time already taken: refused, nothing rewritten.
	_, err := s.SyncLists(t.Context(), []List{{"x", litellm(map[string]string{"m": "9e-06 2e-06"})}}, SyncOptions{Effective: t1})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("rewrite at t1: %v", err)
	}
	book := st.Catalog().Book
	var out rating.Rated
	for _, c := range []struct {
		at   time.Time
		cost string
	}{{t1.Add(-1), "0.001"}, {t1, "0.002"}, {t2, "0.003"}} {
		if err := book.Rate(ev("e", "c", "m", c.at, 1000, 0), nil, &out); err != nil || out.Cost.String() != c.cost {
			t.Errorf("at %s: %s %v, want %s", c.at, out.Cost, err, c.cost)
		}
	}
}

func TestSyncRefusesMassRemoval(t *testing.T) {
	st := newState(t, openDB(t, ""))
	s := newSyncer(t, st)
	syncAt(t, s, time.Time{}, litellm(map[string]string{"a": "1e-06 1e-06", "b": "1e-06 1e-06", "c": "1e-06 1e-06", "d": "1e-06 1e-06"}))
	truncated := litellm(map[string]string{"a": "1e-06 1e-06", "b": "1e-06 1e-06"})
	_, err := s.SyncLists(t.Context(), []List{{"cut", truncated}}, SyncOptions{Effective: mustTime("2026-03-01T00:00:00Z")})
	if !errors.Is(err, ErrTooManyRemoved) || !strings.Contains(err.Error(), "removes 2 of the 4 models") {
		t.Fatalf("half the models removed: %v", err)
	}
	res, err := s.SyncLists(t.Context(), []List{{"cut", truncated}}, SyncOptions{Effective: mustTime("2026-03-01T00:00:00Z"), Force: true})
	if err != nil || !res.Recorded {
		t.Fatalf("--force: %v", err)
	}
}

// TestSyncFromURLs fetches an OpenRouter list and a LiteLLM map over HTTP,
// detects both formats and merges them, the first source winning.
func TestSyncFromURLs(t *testing.T) {
	or := sharedData(t, "openrouter_models.2026-08-19.json")
	lite := litellm(map[string]string{"anthropic/claude-sonnet-4.5": "1e-06 1e-06", "house-model": "1e-06 2e-06"})
	fails := 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/models":
			if fails > 0 { // one transient failure, retried
				fails--
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			w.Write(or)
		case "/litellm.json":
			w.Write(lite)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	st := newState(t, openDB(t, ""))
	s := newSyncer(t, st)
	res, err := s.Sync(t.Context(), []string{srv.URL + "/api/v1/models", srv.URL + "/litellm.json"}, SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched[0].Format != rating.FormatOpenRouter || res.Fetched[1].Format != rating.FormatLiteLLM {
		t.Errorf("formats: %+v", res.Fetched)
	}
	snap := res.Version.Prices
	if mp := snap.Get("anthropic/claude-sonnet-4.5"); mp == nil || mp.Provider != "anthropic" {
		t.Fatalf("merged entry: %+v", mp)
	} else if p, _ := mp.Base[schemas.TierStandard].Get(schemas.UnitInput); p.String() != "0.000003" {
		t.Errorf("the first source (OpenRouter, 3e-6) must win over the second (1e-6): %s", p)
	}
	if snap.Get("house-model") == nil {
		t.Error("entry only in the second source missing")
	}
	for _, c := range []struct{ src, want string }{
		{srv.URL + "/missing", "status 404 Not Found"},
		{"ftp://example.com/x.json", "only http and https"},
		{"/no/such/file.json", "no such file"},
	} {
		if _, err := s.Sync(t.Context(), []string{c.src}, SyncOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.src, err, c.want)
		}
	}
	if _, err := s.SyncLists(t.Context(), []List{{"junk", []byte(`{"a":[1,2]}`)}}, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "neither a LiteLLM price map nor an OpenRouter model list") {
		t.Errorf("junk list: %v", err)
	}
}

// TestAnnouncementQueuedUntilDelivered: an announcement survives a failed
// delivery in the outbox and goes out with the next sync.
func TestAnnouncementQueuedUntilDelivered(t *testing.T) {
	st := newState(t, openDB(t, ""))
	n := &fakeNotifier{fail: true}
	s := newSyncer(t, st, n)
	syncAt(t, s, time.Time{}, litellm(map[string]string{"m": "1e-06 2e-06"}))
	res := syncAt(t, s, mustTime("2026-03-01T00:00:00Z"), litellm(map[string]string{"m": "2e-06 2e-06", "n": "1e-06 1e-06"}))
	if len(res.Undelivered) != 1 || len(n.got) != 0 {
		t.Fatalf("undelivered %v, delivered %d", res.Undelivered, len(n.got))
	}
	n.fail = false
	res = s.Deliver(t.Context())
	if len(res.Delivered) != 1 || len(n.got) != 1 {
		t.Fatalf("retry: %+v", res)
	}
	var a Announcement
	if err := json.Unmarshal(n.got[0], &a); err != nil {
		t.Fatal(err)
	}
	if a.Summary.ModelsAdded != 1 || a.Summary.PricesUp != 1 || len(a.Changes) != 2 {
		t.Fatalf("announcement: %+v", a)
	}
	c := a.Changes[0]
	if c.Model != "m" || c.Kind != rating.ChangePriceUp || c.OldPerMillion != "1" || c.NewPerMillion != "2" || c.Provider != "test" || c.ID == "" || c.VersionID != a.VersionID {
		t.Errorf("change event: %+v", c)
	}
	if p, _ := st.Store().Pending(); len(p) != 0 {
		t.Errorf("still queued: %+v", p)
	}
	if res := s.Deliver(t.Context()); len(n.got) != 1 || len(res.Delivered) != 0 {
		t.Error("delivered twice")
	}
}

type fakeNotifier struct {
	fail bool
	got  [][]byte
}

func (f *fakeNotifier) Target() string { return "fake" }
func (f *fakeNotifier) Close() error   { return nil }
func (f *fakeNotifier) Deliver(_ context.Context, p []byte) error {
	if f.fail {
		return errors.New("down")
	}
	f.got = append(f.got, bytes.Clone(p))
	return nil
}

// TestRunSwapsWhileRating: the scheduled sync picks up a changed upstream
// list and the rater uses it from the next event, without a restart.
func TestRunSwapsWhileRating(t *testing.T) {
	var mu sync.Mutex
	list := litellm(map[string]string{"m": "0.000001 0.000002"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Write(list)
	}))
	defer srv.Close()
	st := newState(t, openDB(t, ""))
	s, err := NewSyncer(SyncConfig{Sources: []string{srv.URL}}, st, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 20*time.Millisecond) }()
	r := st.NewRater()
	var out rating.Rated
	costAt := func() string {
		if err := r.RateEvent(ev("e", "c", "m", time.Now().Add(time.Hour), 1000, 0), &out); err != nil {
			return err.Error()
		}
		return out.Cost.String()
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for costAt() != want {
			if time.Now().After(deadline) {
				t.Fatalf("cost %s, want %s", costAt(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("0.001")
	mu.Lock()
	list = litellm(map[string]string{"m": "0.000003 0.000002"})
	mu.Unlock()
	waitFor("0.003")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(st.Catalog().Book.Versions()); n != 2 {
		t.Errorf("%d versions, want 2 (unchanged lists record nothing)", n)
	}
}

// TestSyncCountsResults: each sync that is not a dry run is counted once
// in tariff_price_syncs_total by result.
func TestSyncCountsResults(t *testing.T) {
	st := newState(t, openDB(t, ""))
	s := newSyncer(t, st)
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	s.SetMetrics(m)
	four := litellm(map[string]string{"a": "1e-06 1e-06", "b": "1e-06 1e-06", "c": "1e-06 1e-06", "d": "1e-06 1e-06"})
	syncAt(t, s, time.Time{}, four)                                                                                                                            // changed: the first version
	syncAt(t, s, mustTime("2026-03-01T00:00:00Z"), four)                                                                                                       // unchanged
	syncAt(t, s, mustTime("2026-03-01T00:00:00Z"), litellm(map[string]string{"a": "2e-06 1e-06", "b": "1e-06 1e-06", "c": "1e-06 1e-06", "d": "1e-06 1e-06"})) // changed
	cut := []List{{"cut", litellm(map[string]string{"a": "1e-06 1e-06"})}}
	if _, err := s.SyncLists(t.Context(), cut, SyncOptions{Effective: mustTime("2026-04-01T00:00:00Z")}); !errors.Is(err, ErrTooManyRemoved) {
		t.Fatalf("mass removal: %v", err) // refused
	}
	if _, err := s.SyncLists(t.Context(), []List{{"junk", []byte(`{"a":[1,2]}`)}}, SyncOptions{}); err == nil {
		t.Fatal("junk list accepted") // refused
	}
	if _, err := s.Sync(t.Context(), []string{filepath.Join(t.TempDir(), "missing.json")}, SyncOptions{}); err == nil {
		t.Fatal("missing file synced") // failed
	}
	if _, err := s.SyncLists(t.Context(), cut, SyncOptions{DryRun: true, Force: true}); err != nil {
		t.Fatalf("dry run: %v", err) // not counted
	}
	want := map[string]uint64{metrics.SyncChanged: 2, metrics.SyncUnchanged: 1, metrics.SyncRefused: 2, metrics.SyncFailed: 1}
	for result, n := range want {
		if got := m.PriceSyncs.With(result).Value(); got != n {
			t.Errorf("tariff_price_syncs_total{result=%q} = %d, want %d", result, got, n)
		}
	}
}

type stepLog struct{ steps []string }

func (l *stepLog) Step(name, unit string, total int64) {
	l.steps = append(l.steps, fmt.Sprintf("%s %s %d", name, unit, total))
}

func (l *stepLog) Add(n int64) {
	l.steps[len(l.steps)-1] += fmt.Sprintf(" +%d", n)
}

// TestSyncProgressSteps: a sync reports its steps in order, bytes fetched
// against the size when it is known (a file, a Content-Length) and
// without a total when it is not.
func TestSyncProgressSteps(t *testing.T) {
	data := litellm(map[string]string{"a": "1e-06 1e-06", "b": "1e-06 2e-06"})
	path := writeFile(t, "prices.json", data)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.Write(data[:10])
			w.(http.Flusher).Flush() // sent before the end: no Content-Length
			w.Write(data[10:])
			return
		}
		w.Write(data)
	}))
	defer srv.Close()
	st := newState(t, openDB(t, ""))
	s := newSyncer(t, st)
	sum := func(step string) int64 {
		var n int64
		for _, f := range strings.Fields(step) {
			if strings.HasPrefix(f, "+") {
				v, _ := strconv.ParseInt(f[1:], 10, 64)
				n += v
			}
		}
		return n
	}
	size := int64(len(data))
	var first stepLog
	if _, err := s.Sync(t.Context(), []string{path}, SyncOptions{Progress: &first}); err != nil {
		t.Fatal(err)
	}
	if len(first.steps) != 3 || !strings.HasPrefix(first.steps[0], fmt.Sprintf("fetch %s bytes %d", path, size)) || sum(first.steps[0]) != size ||
		first.steps[1] != "import models 0 +2" || first.steps[2] != "store versions 1 +1" {
		t.Fatalf("first sync steps %q; want fetch (%d of %d bytes), import +2 models, store +1 (no diff: there is no earlier version)", first.steps, size, size)
	}
	var second stepLog
	if _, err := s.Sync(t.Context(), []string{srv.URL + "/plain", srv.URL + "/chunked"}, SyncOptions{Progress: &second}); err != nil {
		t.Fatal(err)
	}
	if len(second.steps) != 4 || !strings.HasPrefix(second.steps[0], fmt.Sprintf("fetch %s/plain bytes %d", srv.URL, size)) ||
		!strings.HasPrefix(second.steps[1], fmt.Sprintf("fetch %s/chunked bytes 0", srv.URL)) || sum(second.steps[1]) != size ||
		second.steps[2] != "import models 0 +2" || second.steps[3] != "diff changes 0 +0" {
		t.Fatalf("second sync steps %q; want two fetches (the chunked one without a total), import, diff with no change and no store", second.steps)
	}
}

// TestSyncCountsWebhookDeliveries: SetMetrics also counts the attempts of
// the syncer's price webhooks, under webhook="prices".
func TestSyncCountsWebhookDeliveries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	wh, err := NewWebhookNotifier(WebhookConfig{URL: srv.URL, Secret: "sync-test-secret-0123456789"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	st := newState(t, openDB(t, ""))
	s, err := NewSyncer(SyncConfig{}, st, []Notifier{wh}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := metrics.NewTariff(metrics.NewRegistry(), "test")
	s.SetMetrics(m)
	syncAt(t, s, time.Time{}, litellm(map[string]string{"a": "1e-06 1e-06"}))
	syncAt(t, s, mustTime("2026-03-01T00:00:00Z"), litellm(map[string]string{"a": "2e-06 1e-06"}))
	if d, r := m.WebhookDeliveries.With("prices", metrics.OutcomeDelivered).Value(), m.WebhookDeliveries.With("prices", metrics.OutcomeRetried).Value(); d < 1 || r != 1 {
		t.Fatalf("price webhook deliveries: delivered %d, retried %d; want at least 1 and 1", d, r)
	}
}
