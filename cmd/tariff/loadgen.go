package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/tariff-dev/tariff/bench/loadgen"

	"github.com/tariff-dev/tariff/sources"
)

func cmdLoadgen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("loadgen", `Publish a realistic, reproducible stream of LLM usage to Kafka and write the
exact totals it must produce. Customers and models are drawn from Zipf
distributions; messages are a mix of gateway events, LiteLLM payloads,
OpenRouter responses (with --formats openrouter=N) and meter records, keyed
by customer id, with a share of duplicates (some much later, some through
another format and topic) and of malformed messages (which must all reach
the dead-letter topic).

The expected totals per (customer, price key, unit), with cost and charge as
exact decimals, and the message counts are written to --expected once every
message is acknowledged. The same --seed and --start (printed, and recorded
in the file) give the same stream again; --dry-run writes the totals without
publishing.`, "", stderr)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated")
	events := fs.Int("events", 100_000, "messages to publish: fresh requests, duplicates and malformed messages together")
	customers := fs.Int("customers", 1000, "customers to spread usage over (Zipf), up to 16,777,215; ids are cust-000000...")
	customerSkew := fs.Float64("customer-skew", 1.1, "Zipf exponent over customers (> 1; larger is more skewed)")
	models := fs.String("models", loadgen.ModelsDefault, `models: "default" (a few dozen popular chat models), "all" (every chat model with input and output prices in the price list) or a count N (the first N of default, then the rest of the list)`)
	modelSkew := fs.Float64("model-skew", 1.2, "Zipf exponent over models (> 1)")
	formats := fs.String("formats", loadgen.DefaultWeights.String(), "relative weights of the formats: gateway, litellm and openrouter (both to the partner topic), meter; e2e benchmarks use "+loadgen.MixedWeights.String())
	rate := fs.Float64("rate", 0, "target messages per second; 0 publishes as fast as the broker acknowledges")
	dupShare := fs.Float64("dup-share", 0.02, "share of messages that re-send an earlier request (at most 0.3)")
	lateDupShare := fs.Float64("late-dup-share", 0.3, "share of duplicates held back to a random later point of the stream (the rest follow within 1,000 messages)")
	crossShare := fs.Float64("cross-format-share", 0.3, "share of gateway and LiteLLM duplicates re-sent through the other of the two formats (same idempotency key, other topic)")
	malformedShare := fs.Float64("malformed-share", 0.005, "share of malformed messages: broken JSON, negative tokens, no customer, a time years ahead (at most 0.3)")
	longShare := fs.Float64("long-context-share", 0.005, "share of requests to long-context-priced models that exceed the price band")
	lateness := fs.String("lateness", loadgen.DefaultLateness.String(), "event lateness distribution, share:max buckets; within a bucket uniform from the previous max")
	span := fs.Duration("span", 0, "event time the stream covers (default: events/rate with --rate, so times follow the clock; else 1h)")
	start := fs.String("start", "", "event-time origin of the stream, RFC 3339 (default: now with --rate, else now minus --span); give the printed value to reproduce a run")
	seed := fs.Uint64("seed", 1, "random seed: the same seed and start give the same stream")
	markup := fs.String("markup", "0", "markup in percent the pipeline under test applies, e.g. 30 (charges in the expectation use it)")
	prices := fs.String("prices", "", "price list the pipeline under test rates with: a LiteLLM map or an OpenRouter model list (default: the bundled LiteLLM map)")
	expected := fs.String("expected", "expected.json", "file to write the expected totals to")
	topicGateway := fs.String("topic-gateway", loadgen.DefaultTopics.Gateway, "topic for gateway events")
	topicPartner := fs.String("topic-partner", loadgen.DefaultTopics.Partner, "topic for LiteLLM payloads and OpenRouter responses")
	topicMeter := fs.String("topic-meter", loadgen.DefaultTopics.Meter, "topic for meter records")
	topicDLQ := fs.String("topic-deadletter", loadgen.DefaultTopics.DeadLetter, "dead-letter topic of the pipeline under test (recorded in the expectation)")
	partitions := fs.Int("partitions", 0, "create missing input topics with this many partitions first (0: the topics must exist)")
	batchSize := fs.Int("batch-size", 1000, "most messages per produce request and partition")
	batchTimeout := fs.Duration("batch-timeout", 5*time.Millisecond, "how long a partial batch waits for more messages")
	compression := fs.String("compression", "none", "produce compression: none, gzip, snappy, lz4 or zstd")
	dryRun := fs.Bool("dry-run", false, "generate the stream and write the expected totals without publishing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}

	cfg := loadgen.DefaultConfig()
	cfg.Seed, cfg.Events, cfg.Customers, cfg.CustomerSkew = *seed, *events, *customers, *customerSkew
	cfg.Models, cfg.ModelSkew, cfg.Markup = *models, *modelSkew, *markup
	cfg.DupShare, cfg.LateDupShare, cfg.CrossFormatShare = *dupShare, *lateDupShare, *crossShare
	cfg.MalformedShare, cfg.LongContextShare = *malformedShare, *longShare
	cfg.Topics = loadgen.Topics{Gateway: *topicGateway, Partner: *topicPartner, Meter: *topicMeter, DeadLetter: *topicDLQ}
	var err error
	if cfg.Formats, err = loadgen.ParseWeights(*formats); err != nil {
		return fmt.Errorf("--formats: %w", err)
	}
	if cfg.Lateness, err = loadgen.ParseLateness(*lateness); err != nil {
		return fmt.Errorf("--lateness: %w", err)
	}
	cfg.Span = *span
	if cfg.Span == 0 {
		cfg.Span = time.Hour
		if *rate > 0 {
			cfg.Span = time.Duration(float64(*events) / *rate * float64(time.Second))
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	switch {
	case *start != "":
		if cfg.Start, err = time.Parse(time.RFC3339Nano, *start); err != nil {
			return fmt.Errorf("--start %q: expected an RFC 3339 time such as 2026-02-22T00:00:00Z", *start)
		}
	case *rate > 0:
		cfg.Start = now
	default:
		cfg.Start = now.Add(-cfg.Span)
	}
	if *prices != "" {
		if cfg.PriceList, err = os.ReadFile(*prices); err != nil {
			return fmt.Errorf("--prices: %w", err)
		}
	}
	var codec kafka.Compression
	switch strings.ToLower(*compression) {
	case "none", "":
	case "gzip":
		codec = kafka.Gzip
	case "snappy":
		codec = kafka.Snappy
	case "lz4":
		codec = kafka.Lz4
	case "zstd":
		codec = kafka.Zstd
	default:
		return fmt.Errorf("--compression %q: expected none, gzip, snappy, lz4 or zstd", *compression)
	}

	g, err := loadgen.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "loadgen: %d messages, %d customers, %d models, seed %d, start %s, span %s\n",
		cfg.Events, cfg.Customers, len(g.Models()), cfg.Seed, cfg.Start.Format(time.RFC3339Nano), cfg.Span)

	if *dryRun {
		t0 := time.Now()
		var m loadgen.Message
		for g.Next(&m) {
		}
		fmt.Fprintf(stdout, "generated %d messages in %s (not published)\n", cfg.Events, time.Since(t0).Round(time.Millisecond))
		return writeExpected(g, *expected, stdout)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bl := sources.SplitList(*brokers)
	if *partitions > 0 {
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := loadgen.EnsureTopics(tctx, bl[0], *partitions, cfg.Topics.Gateway, cfg.Topics.Partner, cfg.Topics.Meter)
		cancel()
		if err != nil {
			return err
		}
	}
	stats, err := loadgen.Publish(ctx, g, loadgen.PublishConfig{
		Brokers: bl, Rate: *rate, BatchSize: *batchSize, BatchTimeout: *batchTimeout, Compression: codec, Progress: stderr,
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted after %d messages were acknowledged; no expectation written (the stream is incomplete; the same flags with --seed %d --start %s --span %s give the same stream)",
				stats.Messages, cfg.Seed, cfg.Start.Format(time.RFC3339Nano), cfg.Span)
		}
		return err
	}
	fmt.Fprintf(stdout, "published %d messages (%.1f MB) in %s: %.0f msg/s; %s %d, %s %d, %s %d\n",
		stats.Messages, float64(stats.Bytes)/1e6, stats.Elapsed.Round(time.Millisecond), stats.Rate(),
		cfg.Topics.Gateway, stats.ByTopic[cfg.Topics.Gateway], cfg.Topics.Partner, stats.ByTopic[cfg.Topics.Partner],
		cfg.Topics.Meter, stats.ByTopic[cfg.Topics.Meter])
	return writeExpected(g, *expected, stdout)
}

func writeExpected(g *loadgen.Generator, path string, stdout io.Writer) error {
	e, err := g.WriteExpected(path)
	if err != nil {
		return err
	}
	c := e.Counts
	fmt.Fprintf(stdout, "expected: %d requests, %d events, %d duplicate messages (%d events, %d cross-format), %d malformed (to %s); cost %s, charge %s -> %s\n",
		c.Requests, c.Events, c.Duplicates, c.DuplicateEvents, c.CrossFormatDuplicates, c.Malformed, c.DeadLetterTopic,
		e.Cost, e.Charge, path)
	return nil
}
