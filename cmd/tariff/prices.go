package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
)

// parseMarkup reads a markup percentage ("30", "30%", "12.5").
func parseMarkup(s string) (rating.Markup, error) {
	m, err := rating.ParseMarkup(s)
	if err != nil {
		return rating.Markup{}, fmt.Errorf("%q: expected a percentage such as 30 or 12.5%%: %w", s, err)
	}
	return m, nil
}

// readPriceList returns the configured price list (or the bundled one) and
// a name for people.
func readPriceList(file string) ([]byte, string, error) {
	if file == "" {
		return bundled.LiteLLM, bundled.LiteLLMSource, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("read price list: %w", err)
	}
	return data, file, nil
}

// loadBook reads the configured price list (or the bundled one) into a
// one-version book. It returns a description for people.
func loadBook(file string) (*rating.Book, string, error) {
	data, source, err := readPriceList(file)
	if err != nil {
		return nil, "", err
	}
	snap, err := rating.ParsePriceList(data)
	if err != nil {
		return nil, "", fmt.Errorf("price list %s: %w", source, err)
	}
	// Entries with a price that cannot be held exactly are left out and
	// listed; rating an event of such a model then fails as unpriced
	// instead of rounding. Say so, but run with the rest of the list.
	rejected := len(snap.Rejected)
	v := &rating.Version{ID: bundled.VersionID(snap.Source.String(), data), Prices: snap}
	book, err := rating.NewBook(nil, v)
	if err != nil {
		return nil, "", fmt.Errorf("price list %s: %w", source, err)
	}
	desc := fmt.Sprintf("%s: %d models, version %s", source, len(snap.Prices), v.ID)
	if rejected > 0 {
		desc += fmt.Sprintf(" (%d entries refused: %v)", rejected, snap.Err())
	}
	return book, desc, nil
}

// globalMarkup is prices.markup as the global markup layer.
func globalMarkup(cfg *Config) (rating.MarkupRules, error) {
	m, err := parseMarkup(cfg.Prices.Markup)
	if err != nil {
		return rating.MarkupRules{}, fmt.Errorf("prices.markup: %w", err)
	}
	return rating.MarkupRules{Default: m}, nil
}

// buildRater returns the pipeline's rater over the configured price list
// and global markup, and a one-line description of the prices. It keeps
// no history; buildStateRater is the versioned, per-customer one.
func buildRater(cfg *Config) (pipeline.Rater, string, error) {
	book, desc, err := loadBook(cfg.Prices.File)
	if err != nil {
		return nil, "", err
	}
	global, err := globalMarkup(cfg)
	if err != nil {
		return nil, "", err
	}
	if len(cfg.Prices.Aliases) > 0 {
		book = book.WithAliases(rating.NewAliases(cfg.Prices.Aliases))
	}
	terms := rating.Terms{Markups: rating.MarkupLayers{Global: &global}}
	return pipeline.NewPriceRater(rating.NewBookRef(book), terms), desc + ", markup " + global.Default.String(), nil
}

// syncConfig returns the prices section's sync settings with defaults,
// validated. (Config.SetDefaults and Validate do not reach them yet.)
func syncConfig(cfg *Config) (prices.SyncConfig, error) {
	sc := cfg.Prices.SyncConfig
	sc.SetDefaults()
	if err := sc.Validate(); err != nil {
		return sc, fmt.Errorf("config:\n%w", err)
	}
	return sc, nil
}

// openPriceState loads price versions, rate cards and assignments from the
// state store. An empty store is seeded with the configured price list
// (prices.file, else the bundled LiteLLM map) as the first version, in
// force for all history; seeded tells what was recorded ("" if nothing).
// After that the store is the source of truth: prices.file and the bundled
// map only seed, and `tariff prices sync` (or the scheduled sync) records
// newer prices, so upgrading tariff never silently changes prices.
func openPriceState(cfg *Config, store *pipeline.Store, log zerolog.Logger, seed bool) (st *prices.State, seeded string, err error) {
	global, err := globalMarkup(cfg)
	if err != nil {
		return nil, "", err
	}
	sc, err := syncConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	var aliases rating.Aliases
	if len(cfg.Prices.Aliases) > 0 {
		aliases = rating.NewAliases(cfg.Prices.Aliases)
	}
	st, err = prices.Load(prices.NewStore(store.DB()), global, aliases, log)
	if err != nil {
		return nil, "", err
	}
	if !seed || len(st.Catalog().Book.Versions()) > 0 {
		return st, "", nil
	}
	data, source, err := readPriceList(cfg.Prices.File)
	if err != nil {
		return nil, "", err
	}
	syncer, err := prices.NewSyncer(sc, st, nil, log)
	if err != nil {
		return nil, "", err
	}
	res, err := syncer.SyncLists(context.Background(), []prices.List{{Name: source, Data: data}}, prices.SyncOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("record the first price version: %w", err)
	}
	return st, fmt.Sprintf("%s (%d models) as %s, in force for all usage", source, res.Fetched[0].Models, res.Version.ID), nil
}

// sharePrices makes st write its price versions, rate cards and default
// card through the price-state topic (prices.state_topic, created if
// missing) and brings st up to the topic's end; an empty topic is first
// seeded with st's own history (an instance upgraded from before sharing).
// It returns nil when kafka.brokers is not configured: the embedded broker
// is not durable and serves one instance, and offline commands write the
// local store as before. onRefused, when set, counts each write of the
// topic refused as conflicting with recorded history.
func sharePrices(ctx context.Context, cfg *Config, st *prices.State, onRefused func(), log zerolog.Logger) (*prices.Follower, error) {
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, nil
	}
	rt, err := cfg.Kafka.Security.RoundTripper()
	if err != nil {
		return nil, err
	}
	kl, err := prices.NewKafkaLog(cfg.Kafka.Brokers, cfg.Prices.StateTopic, rt)
	if err != nil {
		return nil, err
	}
	if err := kl.Ensure(ctx); err != nil {
		return nil, err
	}
	f, err := prices.NewFollower(kl, cfg.Prices.StateTopic, st, prices.FollowerOptions{OnRefused: onRefused}, log)
	if err != nil {
		return nil, err
	}
	if err := f.Start(ctx); err != nil {
		return nil, fmt.Errorf("catch up with price-state topic %s: %w", cfg.Prices.StateTopic, err)
	}
	return f, nil
}

// buildSyncer returns the syncer of cfg's sources, announcing to the
// changes topic when brokers are known and to the configured webhooks.
func buildSyncer(cfg *Config, st *prices.State, brokers []string, log zerolog.Logger) (*prices.Syncer, error) {
	sc, err := syncConfig(cfg)
	if err != nil {
		return nil, err
	}
	var notifiers []prices.Notifier
	if len(brokers) > 0 {
		rt, err := cfg.Kafka.Security.RoundTripper()
		if err != nil {
			return nil, err
		}
		kn, err := prices.NewKafkaNotifier(brokers, sc.ChangesTopic, rt)
		if err != nil {
			return nil, err
		}
		notifiers = append(notifiers, kn)
	}
	for _, w := range sc.Webhooks {
		wn, err := prices.NewWebhookNotifier(w, log)
		if err != nil {
			return nil, err
		}
		notifiers = append(notifiers, wn)
	}
	return prices.NewSyncer(sc, st, notifiers, log)
}

// buildStateRater is the rater `tariff run` should use once the state
// store is open: versioned prices from the store (seeded on first start),
// each customer's rate card with its rollout policy, and a syncer to run
// beside the pipeline. To wire it in run.go (replacing buildRater):
//
//	rater, syncer, priceInfo, err := buildStateRater(cfg, store, brokers, log)
//	if err != nil {
//		return err
//	}
//	closers = append(closers, namedCloser{"price sync", syncer.Close})
//	...
//	g.Go(func() error { return syncer.Run(gctx, syncer.Interval()) })
//
// With no prices.sources configured Run returns at once.
func buildStateRater(cfg *Config, store *pipeline.Store, brokers []string, log zerolog.Logger) (pipeline.Rater, *prices.Syncer, string, error) {
	st, seeded, err := openPriceState(cfg, store, log, true)
	if err != nil {
		return nil, nil, "", err
	}
	syncer, err := buildSyncer(cfg, st, brokers, log)
	if err != nil {
		return nil, nil, "", err
	}
	return st.NewRater(), syncer, describePrices(cfg, st, seeded, syncer), nil
}

// describePrices is the banner's line about prices: versions, the one in
// force, the default card, the sync.
func describePrices(cfg *Config, st *prices.State, seeded string, syncer *prices.Syncer) string {
	cat := st.Catalog()
	desc := fmt.Sprintf("%d price versions in %s", len(cat.Book.Versions()), cfg.State.Dir)
	if v := cat.Book.VersionAt(time.Now()); v != nil {
		desc += fmt.Sprintf(", in force: %s (%d models)", v.ID, len(v.Prices.Prices))
	} else {
		desc += ", none in force yet"
	}
	if seeded != "" {
		desc += "; recorded " + seeded
	}
	if c := cat.Cards[cat.DefaultCard]; c != nil {
		last := c.Versions[len(c.Versions)-1]
		desc += fmt.Sprintf("; new customers join rate card %s (markup %s, %s)", c.ID, markupOrNone(last.Markups.Default), prices.RolloutName(last.Rollout))
	} else {
		desc += ", markup " + cfg.Prices.Markup + "% (no rate card: run tariff setup)"
	}
	if len(cfg.Prices.Sources) > 0 {
		desc += fmt.Sprintf("; syncing %s every %s", strings.Join(cfg.Prices.Sources, ", "), syncer.Interval())
	}
	return desc
}

func markupOrNone(m rating.Markup) string {
	if !m.IsSet() {
		return "none"
	}
	return m.String()
}

// openState opens the state store for a command, with a hint when tariff
// run holds it.
func openState(cfg *Config, log zerolog.Logger) (*pipeline.Store, error) {
	store, err := pipeline.OpenStore(cfg.State, log)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("%w\nthe state directory %s is in use by another process: stop tariff run (its scheduled sync records new prices while it runs), or point --config at another state.dir", err, cfg.State.Dir)
		}
		return nil, err
	}
	return store, nil
}

// parseEffective reads --effective: RFC 3339 ("2026-03-01T00:00:00Z"), a
// date ("2026-03-01", midnight UTC) or "now" / "" (zero: the default).
func parseEffective(s string) (time.Time, error) {
	switch s {
	case "", "now":
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--effective %q: expected an RFC 3339 time such as 2026-03-01T00:00:00Z or a date such as 2026-03-01", s)
}
