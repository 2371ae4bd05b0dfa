package prices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/rating"
)

// List is one fetched price list.
type List struct {
	// Name is where it came from (a path or URL), for people.
	Name string
	Data []byte
}

// Fetched describes one parsed list.
type Fetched struct {
	Name     string
	Format   rating.Format
	Models   int
	Rejected int
}

// SyncOptions adjust one sync.
type SyncOptions struct {
	// Effective is when the new prices take effect. Zero means now, except
	// for the first version of an empty store, which takes effect from the
	// zero time so that it prices all earlier usage too. A past time
	// records a correction: events from then on re-rate with it; a time at
	// which a version is already in force is refused (history is never
	// rewritten).
	Effective time.Time
	// DryRun computes the changes and records nothing.
	DryRun bool
	// Force records a list even when it removes more than
	// SyncConfig.MaxRemovedPercent of the models in force.
	Force bool
	// Progress, when set, follows the sync's steps (tariff prices sync
	// shows them). Nil: nothing is reported.
	Progress Progress
}

// Progress follows one sync, step by step: "fetch <source>" counts bytes
// (total: the size, when the file's size or the response's Content-Length
// says it, else 0), then "import" counts the models imported, "diff" the
// changes found and "store" the versions recorded (none when nothing
// changed, or in a dry run). Its methods are called from the syncing
// goroutine, one step after another.
type Progress interface {
	// Step begins a step; the one before it is over.
	Step(name, unit string, total int64)
	// Add counts n more done in the current step.
	Add(n int64)
}

// noProgress reports nothing.
type noProgress struct{}

func (noProgress) Step(string, string, int64) {}
func (noProgress) Add(int64)                  {}

func progressOf(opts SyncOptions) Progress {
	if opts.Progress == nil {
		return noProgress{}
	}
	return opts.Progress
}

// countingReader counts what is read through it into a Progress.
type countingReader struct {
	r io.Reader
	p Progress
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.Add(int64(n))
	return n, err
}

// Result is what one sync found and did.
type Result struct {
	Fetched []Fetched
	// Previous is the version compared against (nil for the first).
	Previous *rating.Version
	// Version is the version recorded (nil when nothing changed). In a dry
	// run it is the version that would be recorded.
	Version  *rating.Version
	Changes  []rating.Change
	Recorded bool
	// Cards are the rate-card versions recorded with the price version.
	Cards []CardVersion
	// Warnings are things a person should know (cards left unchanged).
	Warnings []string
	// Delivered and Undelivered name announcement targets; an undelivered
	// announcement stays queued and is retried by the next sync.
	Delivered   []string
	Undelivered map[string]error
}

// ErrTooManyRemoved: the fetched list would remove more models than
// SyncConfig.MaxRemovedPercent allows.
var ErrTooManyRemoved = errors.New("too many models removed")

// Syncer fetches price lists, records a new price version when they differ
// from the version in force, publishes it to the live State (the pipeline
// picks it up at its next event, without pausing) and announces the
// changes. One Syncer per process; its methods serialize.
type Syncer struct {
	cfg       SyncConfig
	state     *State
	notifiers []Notifier
	client    *http.Client
	log       zerolog.Logger
	// now is the clock (replaced in tests).
	now func() time.Time
	// syncs counts each sync by result (SetMetrics); nil counts nothing.
	syncs *syncCounters
	// gate, when set, says whether Run may sync now (SetScheduleGate).
	gate func() bool
	mu   sync.Mutex
}

// syncCounters are the tariff_price_syncs_total series, one per result.
type syncCounters struct{ changed, unchanged, refused, failed *metrics.Counter }

// NewSyncer validates cfg. The syncer owns the notifiers (Close closes
// them).
func NewSyncer(cfg SyncConfig, state *State, notifiers []Notifier, log zerolog.Logger) (*Syncer, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Syncer{
		cfg: cfg, state: state, notifiers: notifiers,
		client: &http.Client{Timeout: cfg.FetchTimeout},
		log:    log.With().Str("component", "price-sync").Logger(),
		now:    time.Now,
	}, nil
}

// Interval is the configured sync interval (prices.sync_interval).
func (s *Syncer) Interval() time.Duration { return s.cfg.SyncInterval }

// State returns the price state the syncer keeps current.
func (s *Syncer) State() *State { return s.state }

// SetClock replaces the clock (tests).
func (s *Syncer) SetClock(now func() time.Time) { s.now = now }

// SetMetrics makes the syncer count every sync that is not a dry run in
// m.PriceSyncs by result: changed (a version was recorded), unchanged,
// refused (an invalid list, one that removes too many models, or a
// version that would rewrite history) or failed (a source could not be
// fetched, or the store not written). Call it before the first sync; a nil
// m counts nothing.
func (s *Syncer) SetMetrics(m *metrics.Tariff) {
	if m == nil {
		s.syncs = nil
		return
	}
	s.syncs = &syncCounters{
		changed: m.PriceSyncs.With(metrics.SyncChanged), unchanged: m.PriceSyncs.With(metrics.SyncUnchanged),
		refused: m.PriceSyncs.With(metrics.SyncRefused), failed: m.PriceSyncs.With(metrics.SyncFailed),
	}
	// Price-change webhooks count their attempts under webhook="prices".
	for _, n := range s.notifiers {
		if w, ok := n.(*WebhookNotifier); ok {
			w.CountIn(m.WebhookDeliveries)
		}
	}
}

// count counts one sync's result (see SetMetrics).
func (s *Syncer) count(res *Result, err error, opts SyncOptions) {
	c := s.syncs
	if c == nil || opts.DryRun {
		return
	}
	var refused refusedError
	switch {
	case errors.As(err, &refused), errors.Is(err, ErrTooManyRemoved), errors.Is(err, ErrConflict):
		c.refused.Inc()
	case err != nil:
		c.failed.Inc()
	case res != nil && res.Recorded:
		c.changed.Inc()
	default:
		// Equal prices, or a version another writer of the store recorded
		// first: this sync recorded nothing.
		c.unchanged.Inc()
	}
}

// refusedError marks a price list refused as invalid (it cannot be parsed,
// or holds no models), as opposed to a failure to fetch or store. Its text
// is the wrapped error's.
type refusedError struct{ error }

func (e refusedError) Unwrap() error { return e.error }

// Close closes the notifiers.
func (s *Syncer) Close() error {
	var errs []error
	for _, n := range s.notifiers {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}

// Fetch reads each source: a file, or an http(s) URL fetched with the
// configured timeout (transient failures retried twice).
func (s *Syncer) Fetch(ctx context.Context, sources []string) ([]List, error) {
	return fetch(ctx, s.client, s.cfg, sources, noProgress{})
}

// Fetch reads sources as Syncer.Fetch does, for callers without a syncer
// (`tariff prices diff`). cfg's zero fields take their defaults.
func Fetch(ctx context.Context, cfg SyncConfig, sources []string) ([]List, error) {
	cfg.SetDefaults()
	return fetch(ctx, &http.Client{Timeout: cfg.FetchTimeout}, cfg, sources, noProgress{})
}

func fetch(ctx context.Context, client *http.Client, cfg SyncConfig, sources []string, p Progress) ([]List, error) {
	out := make([]List, 0, len(sources))
	for _, src := range sources {
		if err := checkSource(src); err != nil {
			return nil, fmt.Errorf("price source: %w", err)
		}
		var data []byte
		var err error
		if isURL(src) {
			data, err = get(ctx, client, cfg.MaxListBytes, src, p)
		} else {
			data, err = readFile(src, cfg.MaxListBytes, p)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, List{Name: src, Data: data})
	}
	return out, nil
}

func readFile(path string, limit int64, p Progress) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read price list: %w", err)
	}
	defer f.Close()
	var size int64
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	p.Step("fetch "+path, "bytes", size)
	data, err := io.ReadAll(io.LimitReader(countingReader{f, p}, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read price list %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("price list %s: larger than prices.max_list_bytes (%d)", path, limit)
	}
	return data, nil
}

func get(ctx context.Context, client *http.Client, limit int64, u string, p Progress) ([]byte, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("fetch %s: %w (last error: %v)", u, ctx.Err(), err)
			case <-time.After(500 * time.Millisecond << (attempt - 1)):
			}
		}
		var data []byte
		var retry bool
		data, retry, err = getOnce(ctx, client, limit, u, p)
		if err == nil {
			return data, nil
		}
		if !retry {
			break
		}
	}
	return nil, err
}

func getOnce(ctx context.Context, client *http.Client, limit int64, u string, p Progress) (data []byte, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, fmt.Errorf("fetch %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tariff-price-sync/1")
	resp, err := client.Do(req)
	if err != nil {
		return nil, ctx.Err() == nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		transient := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		return nil, transient, fmt.Errorf("fetch %s: status %s, expected 200 OK", u, resp.Status)
	}
	// Content-Length is -1 when unknown (chunked, compressed): no ETA then.
	p.Step("fetch "+u, "bytes", max(resp.ContentLength, 0))
	data, err = io.ReadAll(io.LimitReader(countingReader{resp.Body, p}, limit+1))
	if err != nil {
		return nil, true, fmt.Errorf("fetch %s: %w", u, err)
	}
	if int64(len(data)) > limit {
		return nil, false, fmt.Errorf("fetch %s: larger than prices.max_list_bytes (%d)", u, limit)
	}
	return data, false, nil
}

// Parse parses and merges lists into one snapshot. An entry listed by two
// lists comes from the earlier one (the order of prices.sources is the
// order of precedence). Entries that cannot be imported exactly are in the
// snapshot's Rejected and left out.
func Parse(lists []List) (*rating.Snapshot, []Fetched, error) {
	if len(lists) == 0 {
		return nil, nil, errors.New("no price lists")
	}
	var (
		fetched  []Fetched
		merged   []*rating.ModelPrice
		rejected []*rating.EntryError
		seen     = map[string]bool{}
		format   rating.Format
	)
	for i, l := range lists {
		f := rating.DetectFormat(l.Data)
		if f == rating.FormatUnknown {
			return nil, nil, fmt.Errorf("price list %s: neither a LiteLLM price map nor an OpenRouter model list", l.Name)
		}
		snap, err := rating.ParsePriceList(l.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("price list %s: %w", l.Name, err)
		}
		if len(snap.Prices) == 0 {
			return nil, nil, fmt.Errorf("price list %s: no models", l.Name)
		}
		if len(lists) == 1 {
			return snap, []Fetched{{l.Name, f, len(snap.Prices), len(snap.Rejected)}}, nil
		}
		if i == 0 {
			format = f
		}
		fetched = append(fetched, Fetched{l.Name, f, len(snap.Prices), len(snap.Rejected)})
		for _, mp := range snap.Prices {
			if !seen[mp.Key] {
				seen[mp.Key] = true
				merged = append(merged, mp)
			}
		}
		rejected = append(rejected, snap.Rejected...)
	}
	snap, err := rating.NewSnapshot(format, merged)
	if err != nil {
		return nil, nil, err
	}
	snap.Rejected = rejected
	return snap, fetched, nil
}

// Sync fetches the configured sources (or opts' override) and records and
// announces a new version if the prices changed. See SyncLists.
func (s *Syncer) Sync(ctx context.Context, sources []string, opts SyncOptions) (*Result, error) {
	if len(sources) == 0 {
		sources = s.cfg.Sources
	}
	if len(sources) == 0 {
		return nil, errors.New("no price sources: set prices.sources in the configuration or pass --source FILE|URL (for example https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json)")
	}
	lists, err := fetch(ctx, s.client, s.cfg, sources, progressOf(opts))
	if err != nil {
		s.count(nil, err, opts)
		return nil, err
	}
	return s.SyncLists(ctx, lists, opts)
}

// SyncLists compares lists with the version in force at the effective time
// and, when rating.Diff finds a change, records a new version in one
// transaction with the rate-card versions it starts and its queued
// announcements; then publishes the new catalog to the live State and
// delivers the announcements. Equal prices record nothing: a sync never
// rewrites or duplicates a version.
func (s *Syncer) SyncLists(ctx context.Context, lists []List, opts SyncOptions) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.record(lists, opts)
	s.count(res, err, opts)
	if err != nil {
		return res, err
	}
	// Deliver after recording, outside the catalog lock: a slow webhook
	// must not hold up a card edit.
	s.deliverPending(ctx, res, opts)
	return res, nil
}

// record does SyncLists' work up to publishing the new catalog.
func (s *Syncer) record(lists []List, opts SyncOptions) (*Result, error) {
	s.state.writeMu.Lock()
	defer s.state.writeMu.Unlock()
	// A shared store first applies what other instances wrote: the sync
	// compares with the shared version in force, not a stale local one.
	if err := s.state.store.catchUp(); err != nil {
		return nil, err
	}
	p := progressOf(opts)
	p.Step("import", "models", 0)
	snap, fetched, err := Parse(lists)
	if err != nil {
		return nil, refusedError{err}
	}
	p.Add(int64(len(snap.Prices)))
	names := make([]string, len(lists))
	for i, l := range lists {
		names[i] = l.Name
	}
	res := &Result{Fetched: fetched}
	cat := s.state.Catalog()
	book := cat.Book

	now := s.now().UTC().Truncate(time.Millisecond)
	eff := opts.Effective.UTC()
	if opts.Effective.IsZero() {
		eff = now
		if len(book.Versions()) == 0 {
			eff = time.Time{}
		}
	}
	prev := book.VersionAt(eff)
	if prev == nil && len(book.Versions()) > 0 {
		prev = book.Versions()[0] // a correction before all history
	}
	res.Previous = prev
	if prev != nil {
		p.Step("diff", "changes", 0)
		res.Changes = rating.Diff(prev.Prices, snap)
		p.Add(int64(len(res.Changes)))
		if len(res.Changes) == 0 {
			return res, nil
		}
		if sum := Summarize(res.Changes); !opts.Force && len(prev.Prices.Prices) > 0 &&
			sum.ModelsRemoved*100 > s.cfg.MaxRemovedPercent*len(prev.Prices.Prices) {
			return res, fmt.Errorf("the new list removes %d of the %d models in force (more than prices.max_removed_percent = %d%%); if that is right, sync with --force: %w",
				sum.ModelsRemoved, len(prev.Prices.Prices), s.cfg.MaxRemovedPercent, ErrTooManyRemoved)
		}
		// Keep one copy of each unchanged entry across versions.
		if snap, _, err = rating.Share(prev.Prices, snap); err != nil {
			return nil, err
		}
	}
	v, err := NewVersion(eff, snap)
	if err != nil {
		return nil, err
	}
	res.Version = v
	if prev != nil && prev.EffectiveFrom.Equal(eff) {
		return res, fmt.Errorf("price version %s is already in force from %s and is never rewritten; record the new prices with another effective time: %w",
			prev.ID, eff.Format(time.RFC3339Nano), ErrConflict)
	}
	res.Cards, res.Warnings = cardVersionsFor(cat, v)
	if opts.DryRun {
		return res, nil
	}
	rec := Record{Version: v, Cards: res.Cards}
	if prev != nil && len(s.notifiers) > 0 {
		payload, err := json.Marshal(newAnnouncement(prev, v, res.Changes, names, now))
		if err != nil {
			return nil, fmt.Errorf("encode price change announcement: %w", err)
		}
		rec.Outbox = make(map[string][]byte, len(s.notifiers))
		for _, n := range s.notifiers {
			rec.Outbox[n.Target()] = payload
		}
	}
	p.Step("store", "versions", 1)
	switch err := s.state.store.Save(rec); {
	case errors.Is(err, ErrExists):
		// Recorded already by another writer of this store: reload.
		res.Version = nil
		return res, s.state.Reload()
	case err != nil:
		return nil, err
	}
	res.Recorded = true
	p.Add(1)
	if s.state.store.shared != nil {
		// The follower applied this version (and may have applied other
		// instances' writes since book was read): publish the store's.
		if err := s.state.Reload(); err != nil {
			return nil, err
		}
		s.logRecorded(v, eff, snap, res)
		return res, nil
	}
	newBook, err := book.With(v)
	if err != nil {
		return nil, fmt.Errorf("BUG: recorded price version %s does not fit the book: %w", v.ID, err)
	}
	if err := s.state.reloadCards(newBook); err != nil {
		return nil, err
	}
	s.logRecorded(v, eff, snap, res)
	return res, nil
}

func (s *Syncer) logRecorded(v *rating.Version, eff time.Time, snap *rating.Snapshot, res *Result) {
	sum := Summarize(res.Changes)
	s.log.Info().Str("version", v.ID).Time("effective_from", eff).Int("models", len(snap.Prices)).
		Int("models_added", sum.ModelsAdded).Int("models_removed", sum.ModelsRemoved).
		Int("prices_up", sum.PricesUp).Int("prices_down", sum.PricesDown).Msg("recorded new price version")
}

// cardVersionsFor returns the card versions a new price version starts.
// A card whose latest version pins a price version (so its customers get
// the prices of their version, not of the event's time) gets a new version
// pinned to v, with the same markups and rollout policy, from v's
// effective time: under new-customers-only, customers who join from then
// on get v while everyone else keeps theirs; under all-customers everyone
// moves to v at that time. A card that follows the book (no pin) needs
// nothing: the book's effective times already apply to all its customers.
func cardVersionsFor(cat *Catalog, v *rating.Version) ([]CardVersion, []string) {
	ids := make([]string, 0, len(cat.Cards))
	for id := range cat.Cards {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []CardVersion
	var warnings []string
	for _, id := range ids {
		c := cat.Cards[id]
		last := c.Versions[len(c.Versions)-1]
		if last.PriceVersion == "" {
			continue
		}
		if v.EffectiveFrom.Before(last.EffectiveFrom) {
			warnings = append(warnings, fmt.Sprintf("rate card %s: its version %d takes effect at %s, after the new prices (%s); its customers keep the prices it pins",
				id, last.Version, last.EffectiveFrom.Format(time.RFC3339), v.EffectiveFrom.Format(time.RFC3339)))
			continue
		}
		nv := last
		nv.Version = last.Version + 1
		nv.EffectiveFrom = v.EffectiveFrom
		nv.PriceVersion = v.ID
		out = append(out, CardVersion{CardID: id, CardVersion: nv})
	}
	return out, warnings
}

// deliverPending tries every queued announcement (this sync's and any left
// by earlier ones).
func (s *Syncer) deliverPending(ctx context.Context, res *Result, opts SyncOptions) {
	if opts.DryRun || len(s.notifiers) == 0 {
		return
	}
	pending, err := s.state.store.Pending()
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot read queued price announcements")
		return
	}
	byTarget := make(map[string]Notifier, len(s.notifiers))
	for _, n := range s.notifiers {
		byTarget[n.Target()] = n
	}
	for _, p := range pending {
		if s.state.store.shared != nil && !s.state.store.hasVersion(p.VersionID) {
			// Queued before its version was written through the
			// price-state topic (saveShared): announce only what is
			// recorded.
			s.log.Debug().Str("target", p.Target).Str("version", p.VersionID).Msg("price announcement held back: its version is not recorded yet")
			continue
		}
		n := byTarget[p.Target]
		if n == nil {
			// A target removed from the configuration: keep the entry (a
			// person may restore the target) but say so.
			s.log.Warn().Str("target", p.Target).Str("version", p.VersionID).Msg("queued price announcement for a target no longer configured")
			continue
		}
		err := n.Deliver(ctx, p.Payload)
		if err == nil {
			err = s.state.store.Delivered(p.Target, p.VersionID)
		}
		if err != nil {
			if res.Undelivered == nil {
				res.Undelivered = map[string]error{}
			}
			res.Undelivered[p.Target+" "+p.VersionID] = err
			s.log.Warn().Err(err).Str("target", p.Target).Str("version", p.VersionID).Msg("price announcement not delivered; queued for the next sync")
			continue
		}
		res.Delivered = append(res.Delivered, p.Target+" "+p.VersionID)
	}
}

// Deliver retries queued announcements without syncing.
func (s *Syncer) Deliver(ctx context.Context) *Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := &Result{}
	s.deliverPending(ctx, res, SyncOptions{})
	return res
}

// SetScheduleGate makes Run sync only while gate reports true: with
// several instances in one consumer group, `tariff run` passes "this
// instance owns partition 0", so the scheduled sync records each version
// once, in one instance, rather than once per instance on each one's
// clock. Run asks the gate every few seconds; an instance that becomes
// the writer syncs at once. Call it before Run; nil (the default) always
// syncs.
func (s *Syncer) SetScheduleGate(gate func() bool) { s.gate = gate }

// gateCheck is how often Run asks the schedule gate.
const gateCheck = 5 * time.Second

// Run syncs now and then every interval until ctx ends, for `tariff run`.
// A failed sync (a source down, a refused list) is logged and retried at
// the next tick: billing goes on with the prices in force. Run returns nil
// when ctx ends, and at once when no sources are configured. With a
// schedule gate (SetScheduleGate) it syncs only while the gate is open.
//
// cmd/tariff's buildStateRater documents the wiring into `tariff run`.
func (s *Syncer) Run(ctx context.Context, interval time.Duration) error {
	if len(s.cfg.Sources) == 0 || interval <= 0 {
		return nil
	}
	tick := interval
	if s.gate != nil {
		tick = min(interval, gateCheck)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var last time.Time // start of this instance's last sync while open
	skipping := false
	for {
		switch {
		case s.gate != nil && !s.gate():
			if !skipping {
				s.log.Debug().Msg("scheduled price sync skipped: another instance of the group (the owner of partition 0) runs it")
			}
			skipping, last = true, time.Time{}
		case last.IsZero() || time.Since(last) >= interval-tick/2:
			skipping = false
			start := time.Now()
			last = start
			res, err := s.Sync(ctx, nil, SyncOptions{})
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				s.log.Warn().Err(err).Dur("took", time.Since(start)).Msg("price sync failed; prices in force are kept")
			case !res.Recorded:
				s.log.Debug().Dur("took", time.Since(start)).Msg("price sync: no change")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
