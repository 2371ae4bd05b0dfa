package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/alertwebhooks"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", `Consume usage from Kafka, rate it and write the rated lines to ClickHouse.

With no --config and no TARIFF_KAFKA_BROKERS, everything runs in this process:
an embedded Kafka-protocol broker on 127.0.0.1:9092 (for trying tariff; not
durable), state under ./tariff-data, and rated usage in ClickHouse when one
answers on 127.0.0.1:9000, else in ./tariff-data/rated.jsonl.`, "", stderr)
	configPath := fs.String("config", "", "YAML configuration file (see config.example.yaml); none means the embedded default")
	logLevel := fs.String("log-level", "", "log level: trace, debug, info, warn or error (overrides log.level)")
	demo := fs.Bool("demo", false, "also publish realistic synthetic usage (same as 'tariff demo')")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for performance work)")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file when the run stops (for performance work)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if *memProfile != "" {
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return err
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	ctx, stop := signalContext(stderr)
	defer stop()
	return runTariff(ctx, cfg, runOptions{demo: *demo, stdout: stdout, stderr: stderr})
}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", `Run the embedded default and publish realistic synthetic usage to it, so
that rated usage shows within seconds. Stop with Ctrl-C.`, "", stderr)
	rate := fs.Int("rate", 5, "synthetic events per second")
	markup := fs.String("markup", "30", "markup in percent over provider cost")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := LoadConfig("")
	if err != nil {
		return err
	}
	if _, err := parseMarkup(*markup); err != nil {
		return fmt.Errorf("--markup: %w", err)
	}
	cfg.Prices.Markup = *markup
	ctx, stop := signalContext(stderr)
	defer stop()
	return runTariff(ctx, cfg, runOptions{demo: true, demoRate: *rate, stdout: stdout, stderr: stderr})
}

// signalContext ends the returned context at the first SIGINT or SIGTERM,
// so that tariff drains and stops in order; a second signal exits at once,
// which is safe too (a batch is committed only once durable).
func signalContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ch
		fmt.Fprintln(stderr, "stopping: finishing the batch in hand (signal again to exit at once)")
		cancel()
		<-ch
		fmt.Fprintln(stderr, "exiting at once")
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

type runOptions struct {
	demo     bool
	demoRate int
	stdout   io.Writer
	stderr   io.Writer
	// ready, when set, receives the bootstrap address once consuming starts.
	ready func(brokers []string, sink string)
}

func newLogger(cfg LogConfig, w io.Writer) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	out := w
	if cfg.Format == "console" || (cfg.Format == "" && isTerminal(w)) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05"}
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runTariff builds the components, runs them until ctx ends, and closes them
// in order: stop fetching, finish the batch in hand, close the reader, then
// the sinks, the state store and the embedded broker.
func runTariff(ctx context.Context, cfg *Config, opt runOptions) error {
	log := newLogger(cfg.Log, opt.stderr)
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		log.Info().Str("GOMEMLIMIT", os.Getenv("GOMEMLIMIT")).Msg("memory limit from the environment")
	} else {
		limit, from := memoryLimit(cfg.MemoryLimit, readSystemFile)
		if limit > 0 {
			debug.SetMemoryLimit(limit)
		}
		log.Info().Int64("memory_limit_mib", limit>>20).Str("from", from).Msg("memory limit")
	}
	var closers []namedCloser
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			c := closers[i]
			t := time.Now()
			if err := c.close(); err != nil {
				log.Warn().Err(err).Str("part", c.name).Msg("close failed")
			}
			log.Debug().Str("part", c.name).Dur("took", time.Since(t)).Msg("closed")
		}
	}()

	brokers := cfg.Kafka.Brokers
	if cfg.embedded() {
		topics := append(inputTopics(cfg), cfg.Kafka.DeadLetterTopic, cfg.Kafka.AlertsTopic)
		if len(cfg.Webhooks.Alerts) > 0 {
			topics = append(topics, cfg.Webhooks.DeliveriesTopic)
		}
		b, err := sources.StartEmbedded(cfg.Embedded, topics...)
		if err != nil {
			return err
		}
		closers = append(closers, namedCloser{"embedded broker", func() error { b.Close(); return nil }})
		brokers = []string{b.Addr()}
	}

	store, err := pipeline.OpenStore(cfg.State, log)
	if err != nil {
		return err
	}
	closers = append(closers, namedCloser{"state store", store.Close})

	rater, syncer, priceInfo, err := buildStateRater(cfg, store, brokers, log)
	if err != nil {
		return err
	}
	closers = append(closers, namedCloser{"price sync", syncer.Close})

	sink, sinkDesc, err := buildSink(ctx, cfg, log, opt.stdout)
	if err != nil {
		return err
	}
	closers = append(closers, namedCloser{"sinks", sink.Close})
	opsMetrics := newOpsMetrics()
	sink = measureSinks(sink, opsMetrics)
	syncer.SetMetrics(opsMetrics)

	rt, err := cfg.Kafka.Security.RoundTripper()
	if err != nil {
		return err
	}
	dlq, err := sinks.NewDeadLetterWriter(brokers, cfg.Kafka.DeadLetterTopic, rt)
	if err != nil {
		return err
	}
	closers = append(closers, namedCloser{"dead-letter writer", dlq.Close})
	alerts, err := pipeline.NewAlertWriter(brokers, cfg.Kafka.AlertsTopic, rt)
	if err != nil {
		return err
	}
	closers = append(closers, namedCloser{"alert writer", alerts.Close})
	// Alert webhooks: a consumer group of their own on the alerts topic
	// (pipeline/alertwebhooks). alertHooks.Recent lists the latest
	// delivery attempts; nil when no webhook is configured.
	var alertHooks *alertwebhooks.Deliverer
	if len(cfg.Webhooks.Alerts) > 0 {
		dialer, err := cfg.Kafka.Security.Dialer()
		if err != nil {
			return err
		}
		alertHooks, err = alertwebhooks.New(cfg.Webhooks, alertwebhooks.Options{
			Brokers: brokers, AlertsTopic: cfg.Kafka.AlertsTopic, GroupID: cfg.Kafka.GroupID + ".webhooks",
			Dialer: dialer, Transport: rt, SessionTimeout: cfg.Kafka.SessionTimeout,
			Deliveries: opsMetrics.WebhookDeliveries, Log: log,
		})
		if err != nil {
			return err
		}
		closers = append(closers, namedCloser{"alert webhooks", alertHooks.Close})
	}
	views := &pipeline.Views{}

	kc := cfg.Kafka.Config
	kc.Brokers = brokers
	decoders, err := buildDecoders(cfg)
	if err != nil {
		return err
	}
	// A broker that is not reachable yet (starting alongside tariff, or
	// restarting) is waited for; a misconfiguration (topics that are not
	// co-partitioned, say) is not retried, since waiting cannot fix it.
	var partitions int
	if err := waitFor(ctx, log, "kafka", func() (err error) {
		partitions, err = kc.PartitionCount(ctx)
		return err
	}); err != nil {
		return err
	}
	changelog := pipeline.NewChangelog(brokers, cfg.Kafka.ChangelogTopic, rt)
	if err := waitFor(ctx, log, "kafka", func() error { return changelog.Ensure(ctx, partitions, store.Window()) }); err != nil {
		return err
	}
	// Price versions and rate cards are shared by the instances of the
	// group through the price-state topic: catch up (or seed it) before
	// consuming usage, so this instance rates with the full history.
	var priceFollower *prices.Follower
	refusedPrices := opsMetrics.Registry.NewCounter("tariff_price_state_refused_total",
		"Writes of the price-state topic refused because they conflict with recorded price history (two writers racing); each is logged at error level.")
	if err := waitFor(ctx, log, "kafka", func() (err error) {
		priceFollower, err = sharePrices(ctx, cfg, syncer.State(), refusedPrices.Inc, log)
		return err
	}); err != nil {
		return err
	}
	if priceFollower != nil {
		// The banner shows the shared history this instance caught up with.
		priceInfo = describePrices(cfg, syncer.State(), "", syncer) + "; shared through topic " + cfg.Prices.StateTopic
	}
	outTopics := []string{cfg.Kafka.AlertsTopic, cfg.Kafka.DeadLetterTopic}
	if alertHooks != nil {
		outTopics = append(outTopics, cfg.Webhooks.DeliveriesTopic)
	}
	if err := waitFor(ctx, log, "kafka", func() error { return ensureTopics(ctx, brokers, rt, partitions, outTopics...) }); err != nil {
		return err
	}
	// Which instance owns each partition, for the admin API's forwarding.
	owners, err := startOwners(ctx, cfg, brokers, rt, partitions, log)
	if err != nil {
		return err
	}
	group, err := sources.NewGroup(ctx, kc, log)
	if err != nil {
		return err
	}
	runner := pipeline.NewRunner(cfg.Pipeline, kc, group, changelog, pipeline.Deps{
		Formats: cfg.Kafka.Topics, Decoders: decoders, Sink: sink, DLQ: dlq, Store: store, Logger: log,
		Alerts: alerts, Views: views, Metrics: opsMetrics,
	}, func() pipeline.Rater { return rater })
	if owners != nil {
		runner.SetOwners(owners)
	}
	if priceFollower != nil {
		// A partition that moved here is rated with everything recorded
		// before it was assigned; versions are recorded by one instance,
		// the owner of partition 0.
		runner.SetPartitionGate(func(ctx context.Context, _ int) error { return priceFollower.CatchUp(ctx) })
		syncer.SetScheduleGate(func() bool { ps := runner.Partitions(); return len(ps) > 0 && ps[0] == 0 })
	}

	printBanner(opt.stdout, cfg, brokers, sinkDesc, priceInfo)
	od := opsDeps{Metrics: opsMetrics, Stats: runner.Stats(), Lag: runner.Lag, Store: store,
		Prices: syncer.State(), Sink: sink, Brokers: brokers, Log: log, Stdout: opt.stdout,
		Customers: viewCustomers{views}, Entitlements: views,
		Accounts: stateAccounts{views: views, store: store}, Plans: cfg.Balances.Plans}
	routeReads(&od, views, stateAccounts{views: views, store: store}, owners, cfg, log)
	// The admin API changes balances through the command topic.
	if t := commandTopic(cfg); t != "" {
		cw, err := pipeline.NewCommandWriter(brokers, t, rt)
		if err != nil {
			return err
		}
		closers = append(closers, namedCloser{"command writer", cw.Close})
		od.Commands = cw
	}
	if alertHooks != nil {
		od.Deliveries = recentDeliveries{alertHooks}
	}
	stopOps, err := startOps(ctx, cfg, od)
	if err != nil {
		return err
	}
	closers = append(closers, namedCloser{"ops server", stopOps})
	if opt.ready != nil {
		opt.ready(brokers, sinkDesc)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runner.Run(gctx) })
	if alertHooks != nil {
		g.Go(func() error { return alertHooks.Run(gctx) })
	}
	// Ticks carry time into the balance stage, so credit expiry and period
	// ends reach accounts with no usage (pipeline.FormatCommand).
	if tk := pipeline.TickerFor(cfg.Pipeline, cfg.Kafka.Topics, brokers, rt, runner.Partitions, log); tk != nil {
		g.Go(func() error { return tk.Run(gctx) })
	}
	g.Go(func() error { return syncer.Run(gctx, syncer.Interval()) })
	if owners != nil {
		g.Go(func() error { return owners.Run(gctx) })
	}
	if priceFollower != nil {
		g.Go(func() error { return priceFollower.Run(gctx) })
	}
	if opt.demo {
		g.Go(func() error { return runDemo(gctx, brokers, opt.demoRate, log) })
	}
	g.Go(func() error { return reportProgress(gctx, runner.Stats(), log) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	st := runner.Stats()
	log.Info().Int64("rated", st.Rated.Load()).Int64("duplicates", st.Duplicates.Load()).
		Int64("dead_lettered", st.DeadLettered.Load()).Msg("stopped")
	return err
}

// waitFor retries fn while it fails with a network error (the service is
// not reachable yet), backing off up to 10s, until ctx ends. Any other error
// is returned at once.
func waitFor(ctx context.Context, log zerolog.Logger, what string, fn func() error) error {
	backoff := 200 * time.Millisecond
	for {
		err := fn()
		var nerr net.Error
		var oerr *net.OpError
		if err == nil || !(errors.As(err, &nerr) || errors.As(err, &oerr) || errors.Is(err, syscall.ECONNREFUSED)) {
			return err
		}
		log.Warn().Err(err).Dur("retry_in", backoff).Msg(what + " is not reachable; waiting")
		if !pipeline.Sleep(ctx, backoff) {
			return fmt.Errorf("%s not reachable: %w", what, err)
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

type namedCloser struct {
	name  string
	close func() error
}

func inputTopics(cfg *Config) []string {
	out := make([]string, 0, len(cfg.Kafka.Topics))
	for t := range cfg.Kafka.Topics {
		out = append(out, t)
	}
	return out
}

func buildDecoders(cfg *Config) (map[string]schemas.Decoder, error) {
	out := make(map[string]schemas.Decoder)
	for _, format := range cfg.Kafka.Topics {
		if _, ok := out[format]; ok || format == pipeline.FormatCommand {
			continue
		}
		d, err := schemas.DecoderFor(format, cfg.Kafka.Decode.Options())
		if err != nil {
			return nil, fmt.Errorf("decoder for %q: %w", format, err)
		}
		out[format] = d
	}
	return out, nil
}

// buildSink picks ClickHouse (migrating its tables) or the local file, and
// adds the console in the embedded default.
func buildSink(ctx context.Context, cfg *Config, log zerolog.Logger, stdout io.Writer) (sinks.Sink, string, error) {
	var multi sinks.Multi
	var desc string
	if cfg.ClickHouse.Enabled != "false" {
		var ch *sinks.ClickHouse
		connect := func() error {
			if err := sinks.Migrate(ctx, cfg.ClickHouse.ClickHouseConfig, log); err != nil {
				return err
			}
			var err error
			ch, err = sinks.NewClickHouse(ctx, cfg.ClickHouse.ClickHouseConfig, log)
			return err
		}
		var err error
		if cfg.ClickHouse.Enabled == "true" {
			err = waitFor(ctx, log, "clickhouse", connect) // required: wait for it
		} else {
			err = connect() // auto: fall back to the file at once
		}
		switch {
		case err == nil:
			multi = append(multi, ch)
			desc = fmt.Sprintf("ClickHouse %s, table %s.rated_lines", cfg.ClickHouse.Addr, cfg.ClickHouse.Database)
		case cfg.ClickHouse.Enabled == "true":
			return nil, "", err
		default:
			log.Info().Str("addr", cfg.ClickHouse.Addr).Msg("no ClickHouse answers there; writing rated usage to the local file instead")
			log.Debug().Err(err).Msg("clickhouse unavailable")
		}
	}
	if desc == "" {
		f, err := sinks.NewFile(cfg.Output.File)
		if err != nil {
			return nil, "", err
		}
		multi = append(multi, f)
		desc = fmt.Sprintf("%s (one JSON line per rated event)", f.Path())
	}
	if *cfg.Output.Console {
		multi = append(multi, sinks.NewConsole(stdout, cfg.Output.ConsoleMaxPerSecond))
	}
	return multi, desc, nil
}

func printBanner(w io.Writer, cfg *Config, brokers []string, sinkDesc, priceInfo string) {
	mode := "configured Kafka"
	if cfg.embedded() {
		mode = "embedded default"
	}
	fmt.Fprintf(w, "tariff %s is running (%s)\n", version, mode)
	fmt.Fprintf(w, "  send usage to:  Kafka %s, topic %s (gateway JSON; schemas/README.md)\n", brokers[0], firstTopic(cfg, "gateway"))
	fmt.Fprintf(w, "                  e.g.  tariff send --brokers %s schemas/examples/gateway_event.json\n", brokers[0])
	fmt.Fprintf(w, "  rated usage:    %s\n", sinkDesc)
	fmt.Fprintf(w, "  refused input:  Kafka topic %s, with the reason in its headers\n", cfg.Kafka.DeadLetterTopic)
	fmt.Fprintf(w, "  prices:         %s\n", priceInfo)
	fmt.Fprintf(w, "  stop:           Ctrl-C (once: finish and stop cleanly; twice: exit at once)\n")
	if cfg.embedded() {
		fmt.Fprintf(w, "  note: the embedded broker is for trying tariff and is NOT durable; point kafka.brokers at a real Kafka to bill.\n")
	}
}

func firstTopic(cfg *Config, format string) string {
	best := ""
	for t, f := range cfg.Kafka.Topics {
		if f == format && (best == "" || t < best) {
			best = t
		}
	}
	if best == "" {
		for t := range cfg.Kafka.Topics {
			if best == "" || t < best {
				best = t
			}
		}
	}
	return best
}

// reportProgress logs the counters every 10 seconds when they moved: one
// line for an operator, never one per record. Only the outcomes of usage
// count as moving (rated, duplicates, dead-lettered, unpriced): the
// message count also grows with the ticks written to every owned
// partition, and an idle instance would log a line every 10 seconds.
func reportProgress(ctx context.Context, st *pipeline.Stats, log zerolog.Logger) error {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	var last [4]int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			now := [4]int64{st.Rated.Load(), st.Duplicates.Load(), st.DeadLettered.Load(), st.Unpriced.Load()}
			if now == last {
				continue
			}
			last = now
			log.Info().Int64("messages", st.Messages.Load()).Int64("rated", now[0]).
				Int64("duplicates", now[1]).Int64("dead_lettered", now[2]).
				Int64("unpriced", now[3]).Msg("progress")
		}
	}
}
