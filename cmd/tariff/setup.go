package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/sinks"
)

func cmdSetup(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("setup", `Create everything tariff needs to start billing, in one step:

  1. prices: the first price version in the state store, from --source (or
     prices.sources, prices.file, else the LiteLLM map bundled in tariff),
     in force for all usage;
  2. a default rate card with --markup, which customers join when tariff
     first sees their usage;
  3. the Kafka topics (input topics, dead-letter, alerts and price changes)
     when kafka.brokers is configured;
  4. the ClickHouse database and tables when ClickHouse answers.

Safe to run again: what exists is kept and reported as such. Running it
with another --markup or --rollout adds a version to the default card,
effective now, which the rollout policy applies to new customers only or
to all customers.`, "", stderr)
	configPath := fs.String("config", "", configFlagHelp)
	markup := fs.String("markup", "", `markup in percent over provider cost, e.g. 30 or 30% (default: prices.markup, "0")`)
	rolloutFlag := fs.String("rollout", "", "who gets a new card version or new prices: all-customers or new-customers-only (default: prices.rollout, all-customers)")
	cardID := fs.String("card", "default", "id of the default rate card")
	var sources stringList
	fs.Var(&sources, "source", "price list for the first version, a file or http(s) URL; repeatable (default: prices.sources, prices.file, else the bundled LiteLLM map)")
	partitions := fs.Int("partitions", 3, "partitions of each Kafka topic created (input topics are co-partitioned: the same count)")
	replication := fs.Int("replication-factor", -1, "replication factor of each Kafka topic created; -1 uses the broker's default.replication.factor")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *partitions < 1 {
		return fmt.Errorf("--partitions %d: expected 1 or more", *partitions)
	}
	if *replication == 0 || *replication < -1 {
		return fmt.Errorf("--replication-factor %d: expected -1 (broker default) or 1 or more", *replication)
	}
	cfg, log, err := commandConfig(*configPath, stderr)
	if err != nil {
		return err
	}
	sc, err := syncConfig(cfg)
	if err != nil {
		return err
	}
	if *markup == "" {
		*markup = cfg.Prices.Markup
	}
	m, err := parseMarkup(*markup)
	if err != nil {
		return fmt.Errorf("--markup: %w", err)
	}
	if *rolloutFlag == "" {
		*rolloutFlag = sc.Rollout
	}
	rollout, err := prices.ParseRollout(*rolloutFlag)
	if err != nil {
		return fmt.Errorf("--rollout: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// 1. Prices.
	store, err := openState(cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	st, _, err := openPriceState(cfg, store, log, false)
	if err != nil {
		return err
	}
	// With kafka.brokers, prices and cards are recorded through the
	// price-state topic that every tariff run of the group follows.
	if _, err := sharePrices(ctx, cfg, st, nil, log); err != nil {
		return fmt.Errorf("kafka %s: %w", strings.Join(cfg.Kafka.Brokers, ","), err)
	}
	if vs := st.Catalog().Book.Versions(); len(vs) > 0 {
		latest := vs[len(vs)-1]
		fmt.Fprintf(stdout, "prices:     kept: %d price versions in %s, latest %s (%s); 'tariff prices sync' records newer prices\n",
			len(vs), cfg.State.Dir, latest.ID, since(latest.EffectiveFrom))
	} else {
		lists, err := setupLists(ctx, cfg, sc, sources)
		if err != nil {
			return err
		}
		syncer, err := prices.NewSyncer(sc, st, nil, log)
		if err != nil {
			return err
		}
		res, err := syncer.SyncLists(ctx, lists, prices.SyncOptions{})
		if err != nil {
			return fmt.Errorf("record the first price version: %w", err)
		}
		var from []string
		for _, f := range res.Fetched {
			from = append(from, fmt.Sprintf("%s (%s, %d models)", f.Name, formatName(f.Format), f.Models))
		}
		fmt.Fprintf(stdout, "prices:     recorded %s from %s, in force for all usage, in %s\n", res.Version.ID, strings.Join(from, " + "), cfg.State.Dir)
	}

	// 2. The default rate card.
	ch, err := st.SetCard(*cardID, rating.MarkupRules{Default: m}, rollout, time.Now().UTC().Truncate(time.Second))
	if err != nil {
		return err
	}
	terms := fmt.Sprintf("markup %s, %s", m, prices.RolloutName(rollout))
	if ch.PriceVersion != "" {
		terms += ", prices of " + ch.PriceVersion
	}
	switch {
	case ch.Created:
		fmt.Fprintf(stdout, "rate card:  created %s version 1 (%s); customers join it when their first usage arrives\n", ch.CardID, terms)
	case ch.Added:
		fmt.Fprintf(stdout, "rate card:  added %s version %d (%s), in force from now for %s\n", ch.CardID, ch.Version, terms, map[bool]string{true: "customers who join from now on", false: "every customer"}[rollout == rating.RolloutNewCustomersOnly])
	default:
		fmt.Fprintf(stdout, "rate card:  kept %s version %d (%s)\n", ch.CardID, ch.Version, terms)
	}
	if def := st.Catalog().DefaultCard; def != ch.CardID {
		fmt.Fprintf(stdout, "            note: the default card new customers join is %s, not %s\n", def, ch.CardID)
	}

	// 3. Kafka topics.
	if len(cfg.Kafka.Brokers) == 0 {
		fmt.Fprintln(stdout, "kafka:      skipped: no kafka.brokers configured (the embedded broker creates its topics when tariff run starts)")
	} else {
		topics := append(inputTopics(cfg), cfg.Kafka.DeadLetterTopic, cfg.Kafka.AlertsTopic, sc.ChangesTopic)
		created, kept, err := createTopics(ctx, cfg.Kafka.Brokers, topics, *partitions, *replication)
		if err != nil {
			return fmt.Errorf("kafka %s: %w", strings.Join(cfg.Kafka.Brokers, ","), err)
		}
		if len(created) > 0 {
			fmt.Fprintf(stdout, "kafka:      created %s (%d partitions)\n", strings.Join(created, ", "), *partitions)
		}
		if len(kept) > 0 {
			fmt.Fprintf(stdout, "kafka:      kept existing %s\n", strings.Join(kept, ", "))
		}
	}

	// 4. ClickHouse.
	switch {
	case cfg.ClickHouse.Enabled == "false":
		fmt.Fprintln(stdout, "clickhouse: skipped: clickhouse.enabled is false")
	default:
		if err := sinks.Migrate(ctx, cfg.ClickHouse.ClickHouseConfig, log); err != nil {
			if cfg.ClickHouse.Enabled == "true" {
				return err
			}
			fmt.Fprintf(stdout, "clickhouse: skipped: ClickHouse at %s did not answer (%v); run 'tariff migrate' once it does\n", cfg.ClickHouse.Addr, firstLine(err))
		} else {
			fmt.Fprintf(stdout, "clickhouse: database %s at %s is up to date\n", cfg.ClickHouse.Database, cfg.ClickHouse.Addr)
		}
	}
	return nil
}

// setupLists picks the price lists of the first version.
func setupLists(ctx context.Context, cfg *Config, sc prices.SyncConfig, flagSources []string) ([]prices.List, error) {
	srcs := flagSources
	if len(srcs) == 0 {
		srcs = sc.Sources
	}
	if len(srcs) > 0 {
		return prices.Fetch(ctx, sc, srcs)
	}
	data, name, err := readPriceList(cfg.Prices.File)
	if err != nil {
		return nil, err
	}
	return []prices.List{{Name: name, Data: data}}, nil
}

// createTopics creates the topics that do not exist yet.
func createTopics(ctx context.Context, brokers, topics []string, partitions, replication int) (created, kept []string, err error) {
	sort.Strings(topics)
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: replication})
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return nil, nil, fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for _, t := range topics {
		switch err := resp.Errors[t]; {
		case err == nil:
			created = append(created, t)
		case errors.Is(err, kafka.TopicAlreadyExists):
			kept = append(kept, t)
		default:
			errs = append(errs, fmt.Errorf("create topic %s: %w", t, err))
		}
	}
	return created, kept, errors.Join(errs...)
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
