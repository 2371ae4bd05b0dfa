package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/pipeline/ops/progress"
	"github.com/tariff-dev/tariff/pipeline/prices"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
)

type subcommand struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

var pricesCommands = []subcommand{
	{"sync", "fetch the configured price lists and record a new version if prices changed", cmdPricesSync},
	{"diff", "show what changed between two price lists (or the prices in force and a list)", cmdPricesDiff},
	{"list", "list models with their prices per 1M tokens, plain and with markup", cmdPricesList},
	{"show", "show every price of one model: tiers, long-context and time-of-day rules, with markup", cmdPricesShow},
}

func cmdPrices(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		for _, c := range pricesCommands {
			if c.name == args[0] {
				if err := c.run(args[1:], stdout, stderr); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				return nil
			}
		}
	}
	w := stdout
	if len(args) == 0 || (args[0] != "-h" && args[0] != "--help" && args[0] != "help") {
		w = stderr
		if len(args) > 0 {
			fmt.Fprintf(stderr, "tariff prices: unknown subcommand %q\n\n", args[0])
		}
	}
	fmt.Fprint(w, `Usage: tariff prices <subcommand> [flags]

Prices are kept as versions in the state store (state.dir), each in force
from its effective time; an event is rated with the version in force at its
own time.

Subcommands:
`)
	for _, c := range pricesCommands {
		fmt.Fprintf(w, "  %-5s  %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'tariff prices <subcommand> --help' for its flags.\n")
	if w == stdout {
		return flag.ErrHelp
	}
	return errUsage
}

// parseFlagsAnywhere parses flags before, between and after the
// positional arguments ("show MODEL --markup 30" as well as "show
// --markup 30 MODEL"); the flag package alone stops at the first
// positional one. "--" ends the flags.
func parseFlagsAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// commandConfig loads the configuration for a prices or setup command,
// with a logger that stays quiet below warnings: the command prints what
// it did itself.
func commandConfig(path string, stderr io.Writer) (*Config, zerolog.Logger, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, zerolog.Nop(), err
	}
	log := newLogger(cfg.Log, stderr)
	if log.GetLevel() < zerolog.WarnLevel {
		log = log.Level(zerolog.WarnLevel)
	}
	return cfg, log, nil
}

const configFlagHelp = "YAML configuration file; its state.dir holds the price versions (default ./tariff-data/state)"

// --- sync ---

func cmdPricesSync(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("prices sync", `Fetch the price lists (prices.sources in the configuration, or --source),
compare them with the version in force and, if any price changed, record a
new version in the state store, in force from now (or --effective). The
changes are announced on the changes topic (prices.changes_topic, when
kafka.brokers is set) and to prices.webhooks. Unchanged prices record
nothing; recorded versions are never rewritten.

Progress (bytes fetched with the rate and, when the size is known, an ETA;
then models imported, changes found, versions stored) goes to standard
error: one line redrawn on a terminal, plain lines otherwise.

Runs against the state directory, which 'tariff run' holds while it runs:
there, its scheduled sync (prices.sync_interval) does this.`, "", stderr)
	configPath := fs.String("config", "", configFlagHelp)
	var sources stringList
	fs.Var(&sources, "source", "a price list to sync from, a file or an http(s) URL (LiteLLM price map or OpenRouter model list); repeatable, earlier wins; replaces prices.sources")
	effective := fs.String("effective", "", "when the new prices take effect: RFC 3339 time or date (default now; a past time records a correction)")
	dryRun := fs.Bool("dry-run", false, "show the changes without recording or announcing anything")
	force := fs.Bool("force", false, "record the list even if it removes more models than prices.max_removed_percent allows")
	models := fs.Bool("models", false, "also list every model added and removed (by default only counted)")
	pos, err := parseFlagsAnywhere(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q: sources are given with --source", pos[0])
	}
	eff, err := parseEffective(*effective)
	if err != nil {
		return err
	}
	cfg, log, err := commandConfig(*configPath, stderr)
	if err != nil {
		return err
	}
	store, err := openState(cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	st, _, err := openPriceState(cfg, store, log, false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// With kafka.brokers, the version is recorded through the price-state
	// topic, and compared with the shared history, not a stale copy.
	if _, err := sharePrices(ctx, cfg, st, nil, log); err != nil {
		return err
	}
	syncer, err := buildSyncer(cfg, st, cfg.Kafka.Brokers, log)
	if err != nil {
		return err
	}
	defer syncer.Close()
	sp := &syncProgress{out: stderr}
	res, err := syncer.Sync(ctx, sources, prices.SyncOptions{Effective: eff, DryRun: *dryRun, Force: *force, Progress: sp})
	sp.done()
	if res != nil {
		printSyncResult(stdout, res, *dryRun, *models)
	}
	return err
}

// syncProgress shows each step of a sync (prices.Progress) on its own
// progress meter, labelled "prices sync: <step>"; a step's final line is
// written when the next one begins.
type syncProgress struct {
	out io.Writer
	// terminal overrides terminal detection (tests); nil detects.
	terminal *bool
	m        *progress.Meter
}

func (p *syncProgress) Step(name, unit string, total int64) {
	p.done()
	p.m = progress.Start(progress.Config{Out: p.out, Label: "prices sync: " + name, Unit: unit, Total: total, Terminal: p.terminal})
}

func (p *syncProgress) Add(n int64) {
	if p.m != nil {
		p.m.Add(n)
	}
}

func (p *syncProgress) done() {
	if p.m != nil {
		p.m.Done()
		p.m = nil
	}
}

func printSyncResult(w io.Writer, res *prices.Result, dryRun, models bool) {
	for _, f := range res.Fetched {
		fmt.Fprintf(w, "source %s: %s, %d models", f.Name, formatName(f.Format), f.Models)
		if f.Rejected > 0 {
			fmt.Fprintf(w, " (%d entries refused: prices not exactly representable)", f.Rejected)
		}
		fmt.Fprintln(w)
	}
	if res.Previous == nil {
		if res.Version != nil {
			verb := "recorded"
			if !res.Recorded {
				verb = "would record"
			}
			fmt.Fprintf(w, "%s %s as the first price version, in force for all usage\n", verb, res.Version.ID)
		}
		return
	}
	fmt.Fprintf(w, "compared with %s (%s)\n", res.Previous.ID, since(res.Previous.EffectiveFrom))
	if len(res.Changes) == 0 {
		fmt.Fprintln(w, "no price changed: nothing recorded")
	} else {
		fmt.Fprintln(w)
		writeDiffTable(w, res.Changes, models)
		fmt.Fprintln(w)
	}
	switch {
	case res.Recorded:
		fmt.Fprintf(w, "recorded %s, %s\n", res.Version.ID, since(res.Version.EffectiveFrom))
	case dryRun && res.Version != nil:
		fmt.Fprintf(w, "dry run: would record %s, %s\n", res.Version.ID, since(res.Version.EffectiveFrom))
	}
	for _, c := range res.Cards {
		verb := "added"
		if !res.Recorded {
			verb = "would add"
		}
		fmt.Fprintf(w, "rate card %s: %s version %d pinned to it (%s)\n", c.CardID, verb, c.Version, prices.RolloutName(c.Rollout))
	}
	for _, s := range res.Warnings {
		fmt.Fprintln(w, "warning:", s)
	}
	for _, d := range res.Delivered {
		fmt.Fprintf(w, "announced: %s\n", d)
	}
	keys := make([]string, 0, len(res.Undelivered))
	for k := range res.Undelivered {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "not announced yet (queued, retried at the next sync): %s: %v\n", k, res.Undelivered[k])
	}
}

func formatName(f rating.Format) string {
	switch f {
	case rating.FormatLiteLLM:
		return "LiteLLM price map"
	case rating.FormatOpenRouter:
		return "OpenRouter model list"
	}
	return f.String()
}

func since(t time.Time) string {
	if t.IsZero() {
		return "in force for all usage"
	}
	return "in force from " + t.UTC().Format(time.RFC3339)
}

// --- diff ---

func cmdPricesDiff(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("prices diff", `Show what changed from OLD to NEW as a table: each model added or removed and
each price that appeared, disappeared, went up or went down, with the change
in percent. Token prices are shown per 1M tokens, other units per unit.

OLD and NEW are each a price list file or URL (LiteLLM or OpenRouter), a
price version id from the state store, or "current" (the version in force
now). With only one argument, OLD is "current".`, "[OLD] NEW", stderr)
	configPath := fs.String("config", "", configFlagHelp)
	models := fs.Bool("models", true, "list every model added and removed (false: only count them)")
	pos, err := parseFlagsAnywhere(fs, args)
	if err != nil {
		return err
	}
	var oldArg, newArg string
	switch len(pos) {
	case 1:
		oldArg, newArg = "current", pos[0]
	case 2:
		oldArg, newArg = pos[0], pos[1]
	default:
		return fmt.Errorf("expected [OLD] NEW (one or two price lists or versions), got %d arguments; see 'tariff prices diff --help'", len(pos))
	}
	r := &priceResolver{configPath: *configPath, stderr: stderr}
	oldSnap, oldName, err := r.snapshot(oldArg)
	if err != nil {
		return fmt.Errorf("OLD: %w", err)
	}
	newSnap, newName, err := r.snapshot(newArg)
	if err != nil {
		return fmt.Errorf("NEW: %w", err)
	}
	changes := rating.Diff(oldSnap, newSnap)
	fmt.Fprintf(stdout, "old: %s\nnew: %s\n\n", oldName, newName)
	if len(changes) == 0 {
		fmt.Fprintln(stdout, "no differences")
		return nil
	}
	writeDiffTable(stdout, changes, *models)
	return nil
}

// priceResolver turns a diff argument into a snapshot, opening the state
// store only when an argument needs it.
type priceResolver struct {
	configPath string
	stderr     io.Writer
	view       *priceView
}

func (r *priceResolver) snapshot(arg string) (*rating.Snapshot, string, error) {
	if _, err := os.Stat(arg); err == nil || strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		lists, err := prices.Fetch(ctx, prices.SyncConfig{}, []string{arg})
		if err != nil {
			return nil, "", err
		}
		snap, fetched, err := prices.Parse(lists)
		if err != nil {
			return nil, "", err
		}
		return snap, fmt.Sprintf("%s (%s, %d models)", arg, formatName(fetched[0].Format), fetched[0].Models), nil
	}
	if r.view == nil {
		cfg, log, err := commandConfig(r.configPath, r.stderr)
		if err != nil {
			return nil, "", err
		}
		if r.view, err = currentPrices(cfg, log, time.Now()); err != nil {
			return nil, "", err
		}
	}
	if arg == "current" {
		return r.view.version.Prices, r.view.desc, nil
	}
	if v := r.view.book.Version(arg); v != nil && r.view.stored {
		return v.Prices, fmt.Sprintf("price version %s (%s, %d models)", v.ID, since(v.EffectiveFrom), len(v.Prices.Prices)), nil
	}
	return nil, "", fmt.Errorf("%q: not a file, a URL, \"current\" or a price version id recorded in %s", arg, r.view.stateDir)
}

// writeDiffTable prints changes as an aligned table, then a summary line.
func writeDiffTable(w io.Writer, changes []rating.Change, models bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tUNIT\tPER\tOLD\tNEW\tCHANGE")
	hidden := 0
	for _, c := range changes {
		switch c.Kind {
		case rating.ChangeModelAdded, rating.ChangeModelRemoved:
			if !models {
				hidden++
				continue
			}
			what := "model added"
			if c.Kind == rating.ChangeModelRemoved {
				what = "model removed"
			}
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t%s\n", c.Model, what)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Model, unitLabel(c), per(c.Unit), priceCell(c.Old, c.Unit), priceCell(c.New, c.Unit), changeCell(c))
	}
	tw.Flush()
	s := prices.Summarize(changes)
	fmt.Fprintf(w, "\n%d changes: %d models added, %d removed; prices: %d up, %d down, %d added, %d removed\n",
		len(changes), s.ModelsAdded, s.ModelsRemoved, s.PricesUp, s.PricesDown, s.PricesAdded, s.PricesRemoved)
	if hidden > 0 {
		fmt.Fprintf(w, "(%d models added or removed not listed: use --models)\n", hidden)
	}
}

func unitLabel(c rating.Change) string {
	var q []string
	if c.Tier != schemas.TierStandard {
		q = append(q, c.Tier.String())
	}
	if c.Condition != "" && c.Condition != "always" {
		q = append(q, c.Condition)
	}
	if len(q) == 0 {
		return c.Unit.String()
	}
	return c.Unit.String() + " (" + strings.Join(q, ", ") + ")"
}

func per(u schemas.Unit) string {
	switch u {
	case schemas.UnitRequests:
		return "request"
	case schemas.UnitWebSearch:
		return "search"
	case schemas.UnitImages:
		return "image"
	case schemas.UnitSeconds:
		return "second"
	}
	return "1M tokens"
}

// perUnit states a price per 1M tokens for token units, per unit else.
func perUnit(p rating.Price, u schemas.Unit) decimal.Decimal {
	if prices.IsTokenUnit(u) {
		return prices.PerMillion(p)
	}
	return p.Decimal()
}

func priceCell(p *rating.Price, u schemas.Unit) string {
	if p == nil {
		return "-"
	}
	return perUnit(*p, u).String()
}

func changeCell(c rating.Change) string {
	switch c.Kind {
	case rating.ChangePriceAdded:
		return "new"
	case rating.ChangePriceRemoved:
		return "removed"
	}
	if c.Old.IsZero() {
		return "from 0"
	}
	pct := c.Relative.Mul(decimal.NewFromInt(100)).Round(2)
	if pct.Sign() > 0 {
		return "+" + pct.String() + "%"
	}
	return pct.String() + "%"
}

// --- the prices in force ---

// priceView is the price book as a command sees it: the state's versions,
// or the configured / bundled list when none is recorded.
type priceView struct {
	at       time.Time
	book     *rating.Book
	version  *rating.Version
	stored   bool
	stateDir string
	desc     string
	// markup is what customers joining now pay over cost: the default rate
	// card's, else prices.markup.
	markup     rating.Markup
	markupFrom string
}

func currentPrices(cfg *Config, log zerolog.Logger, at time.Time) (*priceView, error) {
	store, err := openState(cfg, log)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	st, _, err := openPriceState(cfg, store, log, false)
	if err != nil {
		return nil, err
	}
	global, _ := globalMarkup(cfg)
	pv := &priceView{at: at, stateDir: cfg.State.Dir, markup: global.Default, markupFrom: "prices.markup"}
	cat := st.Catalog()
	if c := cat.Cards[cat.DefaultCard]; c != nil {
		v := c.Versions[0]
		for _, cv := range c.Versions {
			if !cv.EffectiveFrom.After(at) {
				v = cv
			}
		}
		if v.Markups.Default.IsSet() {
			pv.markup, pv.markupFrom = v.Markups.Default, fmt.Sprintf("rate card %s version %d", c.ID, v.Version)
		}
	}
	if len(cat.Book.Versions()) > 0 {
		pv.book, pv.stored = cat.Book, true
		if pv.version = cat.Book.VersionAt(at); pv.version == nil {
			return nil, fmt.Errorf("no price version is in force at %s (the first takes effect at %s)", at.UTC().Format(time.RFC3339), cat.Book.Versions()[0].EffectiveFrom.Format(time.RFC3339))
		}
		pv.desc = fmt.Sprintf("price version %s (%s, %d models)", pv.version.ID, since(pv.version.EffectiveFrom), len(pv.version.Prices.Prices))
		return pv, nil
	}
	book, desc, err := loadBook(cfg.Prices.File)
	if err != nil {
		return nil, err
	}
	pv.book, pv.version = book, book.Latest()
	pv.desc = desc + " (no price versions recorded in " + cfg.State.Dir + " yet: 'tariff setup' records one)"
	return pv, nil
}

// --- list ---

func cmdPricesList(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("prices list", `List the models of the prices in force with their input, output and cached
input prices in USD per 1M tokens, and the same with markup applied (the
default rate card's markup, else prices.markup, unless --markup is given).
Prices are the ones a standard-tier request below any long-context threshold
pays, fallbacks included (a cached price not listed is the input price).
"-" means no price: such usage is refused, never billed as zero.`, "", stderr)
	configPath := fs.String("config", "", configFlagHelp)
	provider := fs.String("provider", "", "only models of this provider (as the price list names it, e.g. anthropic, openai, bedrock, vertex_ai-anthropic_models)")
	match := fs.String("match", "", "only models whose name contains this text (case-insensitive)")
	markup := fs.String("markup", "", "markup in percent to apply, e.g. 30 (default: the default rate card's, else prices.markup)")
	at := fs.String("at", "", "the prices in force at this time (RFC 3339 or date; default now)")
	pos, err := parseFlagsAnywhere(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (filter with --match or --provider)", pos[0])
	}
	pv, err := viewFor(*configPath, *at, *markup, stderr)
	if err != nil {
		return err
	}
	var rows []*rating.ModelPrice
	providers := map[string]int{}
	for _, mp := range pv.version.Prices.Prices {
		providers[mp.Provider]++
		if *provider != "" && mp.Provider != *provider {
			continue
		}
		if *match != "" && !strings.Contains(strings.ToLower(mp.Key), strings.ToLower(*match)) {
			continue
		}
		rows = append(rows, mp)
	}
	if *provider != "" && providers[*provider] == 0 {
		return fmt.Errorf("--provider %q: no model in %s has this provider; providers are: %s", *provider, pv.version.ID, providerList(providers))
	}
	fmt.Fprintf(stdout, "%s\nUSD per 1M tokens; markup %s (%s)\n\n", pv.desc, pv.markup, pv.markupFrom)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	mk := "+" + pv.markup.String()
	fmt.Fprintf(tw, "MODEL\tPROVIDER\tINPUT\tOUTPUT\tCACHED\tINPUT %s\tOUTPUT %s\tCACHED %s\n", mk, mk, mk)
	for _, mp := range rows {
		if mp.Unpriced != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\n", mp.Key, mp.Provider)
			continue
		}
		p, ok := mp.Table(0, 0, schemas.TierStandard)
		units := []schemas.Unit{schemas.UnitInput, schemas.UnitOutput, schemas.UnitCachedInput}
		cells := make([]string, 0, 6)
		for _, u := range units {
			cells = append(cells, cell(p[u], ok[u], rating.NoMarkup))
		}
		for _, u := range units {
			cells = append(cells, cell(p[u], ok[u], pv.markup))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mp.Key, mp.Provider, strings.Join(cells, "\t"))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\n%d models\n", len(rows))
	return nil
}

func providerList(m map[string]int) string {
	names := make([]string, 0, len(m))
	for p := range m {
		names = append(names, p)
	}
	sort.Strings(names)
	if len(names) > 40 {
		return strings.Join(names[:40], ", ") + fmt.Sprintf(" and %d more", len(names)-40)
	}
	return strings.Join(names, ", ")
}

// cell is a per-1M-token price with markup applied, exact.
func cell(p rating.Price, ok bool, m rating.Markup) string {
	if !ok {
		return "-"
	}
	return prices.PerMillion(p).Mul(m.Multiplier()).String()
}

// viewFor resolves the common flags of list and show.
func viewFor(configPath, at, markup string, stderr io.Writer) (*priceView, error) {
	when := time.Now()
	if at != "" {
		t, err := parseEffective(at)
		if err != nil {
			return nil, errors.New(strings.Replace(err.Error(), "--effective", "--at", 1))
		}
		if !t.IsZero() {
			when = t
		}
	}
	cfg, log, err := commandConfig(configPath, stderr)
	if err != nil {
		return nil, err
	}
	pv, err := currentPrices(cfg, log, when)
	if err != nil {
		return nil, err
	}
	if markup != "" {
		m, err := parseMarkup(markup)
		if err != nil {
			return nil, fmt.Errorf("--markup: %w", err)
		}
		pv.markup, pv.markupFrom = m, "--markup"
	}
	return pv, nil
}

// --- show ---

func cmdPricesShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("prices show", `Show every price of the entry MODEL resolves to in the prices in force: each
stated price per service tier, under each rule (long-context thresholds,
time-of-day windows), plain and with markup, then the prices an event gets
by fallback where the list states none. MODEL is resolved as events are
(provider prefixes, dated names, the alias table).`, "MODEL", stderr)
	configPath := fs.String("config", "", configFlagHelp)
	provider := fs.String("provider", "", "the provider the event would report, e.g. azure (it can select another entry)")
	markup := fs.String("markup", "", "markup in percent to apply (default: the default rate card's, else prices.markup)")
	at := fs.String("at", "", "the prices in force at this time (RFC 3339 or date; default now)")
	pos, err := parseFlagsAnywhere(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("expected one MODEL, got %d arguments; see 'tariff prices show --help'", len(pos))
	}
	model := pos[0]
	pv, err := viewFor(*configPath, *at, *markup, stderr)
	if err != nil {
		return err
	}
	mp, v, err := pv.book.PriceAt(model, *provider, pv.at)
	if err != nil {
		return fmt.Errorf("model %q: no price entry matches in %s; look for it with: tariff prices list --match %s", model, pv.version.ID, matchHint(model))
	}
	fmt.Fprintf(stdout, "%s (provider %s", mp.Key, mp.Provider)
	if mp.Mode != "" {
		fmt.Fprintf(stdout, ", mode %s", mp.Mode)
	}
	fmt.Fprintln(stdout, ")")
	if mp.Key != model {
		fmt.Fprintf(stdout, "resolved from %q\n", model)
	}
	fmt.Fprintf(stdout, "price version %s, %s\n", v.ID, since(v.EffectiveFrom))
	fmt.Fprintf(stdout, "markup %s (%s): charge = cost x %s\n\n", pv.markup, pv.markupFrom, pv.markup.Multiplier())
	if mp.Unpriced != "" {
		fmt.Fprintf(stdout, "no usable price: %s; its usage is refused, never billed as zero\n", mp.Unpriced)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	mk := "+" + pv.markup.String()
	fmt.Fprintf(tw, "WHEN\tTIER\tUNIT\tPER\tPRICE\tPRICE %s\n", mk)
	layer := func(when string, r *rating.Rates) {
		for t := schemas.Tier(0); t < schemas.NumTiers; t++ {
			for u := schemas.Unit(0); u < schemas.NumUnits; u++ {
				p, ok := r[t].Get(u)
				if !ok {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", when, t, u, per(u), perUnit(p, u), perUnit(p, u).Mul(pv.markup.Multiplier()))
			}
		}
	}
	layer("always", &mp.Base)
	for i := range mp.Rules {
		layer(ruleText(&mp.Rules[i]), &mp.Rules[i].Rates)
	}
	tw.Flush()

	// What a plain standard-tier request gets beyond the stated prices.
	p, ok := mp.Table(0, 0, schemas.TierStandard)
	var derived []string
	for u := schemas.Unit(0); u < schemas.NumUnits; u++ {
		if _, stated := mp.Base[schemas.TierStandard].Get(u); stated || !ok[u] {
			continue
		}
		how := "derived"
		switch {
		case ok[schemas.UnitInput] && p[u] == p[schemas.UnitInput] && u != schemas.UnitInput:
			how = "billed as input"
		case ok[schemas.UnitOutput] && p[u] == p[schemas.UnitOutput] && u != schemas.UnitOutput:
			how = "billed as output"
		case u == schemas.UnitCacheWrite1h:
			how = "2 x input, Anthropic's 1-hour cache write"
		}
		derived = append(derived, fmt.Sprintf("always\tstandard\t%s\t%s\t%s\t%s\t(%s)", u, per(u), perUnit(p[u], u), perUnit(p[u], u).Mul(pv.markup.Multiplier()), how))
	}
	if len(derived) > 0 {
		fmt.Fprintln(stdout, "\nby fallback (not stated by the list):")
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, d := range derived {
			fmt.Fprintln(tw, d)
		}
		tw.Flush()
	}
	fmt.Fprintln(stdout, "\nA tier without its own price falls back to the standard one; a unit with no price at all is refused.")
	return nil
}

func matchHint(model string) string {
	if i := strings.LastIndexByte(model, '/'); i >= 0 {
		model = model[i+1:]
	}
	if len(model) > 12 {
		model = model[:12]
	}
	return model
}

func ruleText(r *rating.Rule) string {
	var parts []string
	if r.AbovePromptTokens != rating.NoPromptCondition {
		parts = append(parts, fmt.Sprintf("above %d prompt tokens", r.AbovePromptTokens))
	}
	if r.Window != nil {
		parts = append(parts, fmt.Sprintf("%02d:%02d-%02d:%02d UTC", r.Window.Start/60, r.Window.Start%60, r.Window.End/60, r.Window.End%60))
	}
	if len(parts) == 0 {
		return "always (rule)"
	}
	return strings.Join(parts, ", ")
}
