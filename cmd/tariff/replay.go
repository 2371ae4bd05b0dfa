package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/pipeline/ops/progress"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
)

const replayHelp = `Re-rate the usage of a time range (after a price correction, say) into a
new rating run, through the running pipeline.

replay reads the range from ClickHouse (rated_lines FINAL, events whose time
is in [--from, --to), optionally one customer's), rebuilds each event's
usage from its rows and publishes one rerate command per event to the
command topic (the kafka.topics entry of format "command"), keyed by
customer id. tariff run applies each in order with the customer's usage:
it rates the event with the prices and rate card in force now for the
event's time, takes the old amounts out of the usage_hourly/usage_daily
totals and puts the new ones in, and rewrites the event's rated_lines rows
with rating_run = the run id. The documented queries then count every
event once, at its new price. Each run applies to an event at most once:
replaying the same --run again changes nothing.

tariff run must be running: replay only publishes, then waits until every
rerate is applied (rated_lines rows with rating_run = the run) or refused
(the dead-letter topic, stage "rerate", with the reason), and prints the
old and new totals and the difference, exact.

Not changed: balances. Prepaid credit, allowances and overage drawn by the
old rating stand; the charge difference printed at the end is not drawn
from or credited to any balance (issue a grant or a charge for it).

Events older than the deduplication window (state.dedup_window, default
35 days) cannot be re-rated: their idempotency keys and running totals are
no longer kept.`

func cmdReplay(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", replayHelp, "", stderr)
	configPath := fs.String("config", "", "YAML configuration file: kafka (brokers, the command and dead-letter topics), clickhouse, state.dedup_window")
	from := fs.String("from", "", "start of the range, inclusive: RFC 3339 time or date (required)")
	to := fs.String("to", "", "end of the range, exclusive: RFC 3339 time or date (default now)")
	customer := fs.String("customer", "", "re-rate only this customer's usage")
	run := fs.String("run", "", "run id: letters, digits, '.', '_', '-' (default replay-<UTC time>); the same run applies to an event at most once")
	dryRun := fs.Bool("dry-run", false, "show what would be re-rated and publish nothing")
	stall := fs.Duration("timeout", 2*time.Minute, "give up waiting when no rerate has been applied or refused for this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	now := time.Now().UTC()
	r := replay{stdout: stdout, stderr: stderr, customer: *customer, dryRun: *dryRun, stall: *stall}
	var err error
	if *from == "" {
		return errors.New("--from: required: the start of the range to re-rate (RFC 3339 time or date)")
	}
	if r.from, err = parseRangeTime("--from", *from); err != nil {
		return err
	}
	r.to = now
	if *to != "" {
		if r.to, err = parseRangeTime("--to", *to); err != nil {
			return err
		}
	}
	if !r.from.Before(r.to) {
		return fmt.Errorf("--from %s, --to %s: expected --from before --to", r.from.Format(time.RFC3339Nano), r.to.Format(time.RFC3339Nano))
	}
	r.run = *run
	if r.run == "" {
		r.run = "replay-" + now.Format("20060102T150405Z")
	}
	if err := pipeline.ValidRunID(r.run); err != nil {
		return fmt.Errorf("--%w", err)
	}
	if *stall <= 0 {
		return fmt.Errorf("--timeout %s: expected a positive duration", *stall)
	}
	cfg, _, err := commandConfig(*configPath, stderr)
	if err != nil {
		return err
	}
	if oldest := now.Add(-cfg.State.DedupWindow); r.from.Before(oldest) {
		return fmt.Errorf("--from %s: before %s, the start of the deduplication window (state.dedup_window %s): older events cannot be re-rated without risking double counting",
			r.from.Format(time.RFC3339), oldest.Format(time.RFC3339), cfg.State.DedupWindow)
	}
	if r.topic = commandTopic(cfg); r.topic == "" {
		return fmt.Errorf("kafka.topics: no topic has format %q: rerate commands travel on the command topic, which tariff run must consume", pipeline.FormatCommand)
	}
	if cfg.ClickHouse.Enabled == "false" {
		return errors.New("clickhouse.enabled: false: replay reads the range from ClickHouse's rated_lines")
	}
	r.dlq = cfg.Kafka.DeadLetterTopic
	r.brokers = cfg.Kafka.Brokers
	if cfg.embedded() {
		r.brokers = []string{fmt.Sprintf("127.0.0.1:%d", cfg.Embedded.Port)}
	}
	if r.rt, err = cfg.Kafka.Security.RoundTripper(); err != nil {
		return err
	}
	if r.dialer, err = cfg.Kafka.Security.Dialer(); err != nil {
		return err
	}
	ctx := context.Background()
	conn, err := sinks.OpenClickHouse(ctx, cfg.ClickHouse.ClickHouseConfig)
	if err != nil {
		return err
	}
	defer conn.Close()
	r.conn = conn
	return r.do(ctx)
}

// parseRangeTime reads an RFC 3339 time or a date (midnight UTC).
func parseRangeTime(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s %q: expected an RFC 3339 time such as 2026-11-01T00:00:00Z or a date such as 2026-11-01", flag, s)
}

type replay struct {
	stdout, stderr io.Writer
	conn           driver.Conn
	brokers        []string
	rt             kafka.RoundTripper
	dialer         *kafka.Dialer
	topic, dlq     string
	run, customer  string
	from, to       time.Time
	dryRun         bool
	stall          time.Duration

	// events holds the old amounts of every event published, by
	// customer 0x00 event id.
	events             map[string]*oldAmounts
	oldCost, oldCharge rating.Amount
	skipped            []string // events not published, with the reason
}

type oldAmounts struct{ cost, charge rating.Amount }

// where is the range filter of every query, with its arguments. event_date
// narrows the scan to the partitions; event_ms is the exact bound.
func (r *replay) where() (string, []any) {
	w := "event_date >= toDate(?) AND event_date <= toDate(?) AND event_ms >= ? AND event_ms < ?"
	args := []any{r.from.Format("2006-01-02"), r.to.Format("2006-01-02"), r.from.UnixMilli(), r.to.UnixMilli()}
	if r.customer != "" {
		w += " AND customer_id = ?"
		args = append(args, r.customer)
	}
	return w, args
}

func (r *replay) do(ctx context.Context) error {
	where, args := r.where()
	var total uint64
	var cost, charge string
	if err := r.conn.QueryRow(ctx, "SELECT uniqExact(customer_id, event_id), toString(sum(cost)), toString(sum(charge)) FROM rated_lines FINAL WHERE "+where, args...).
		Scan(&total, &cost, &charge); err != nil {
		return fmt.Errorf("read the range from rated_lines: %w", err)
	}
	who := "all customers"
	if r.customer != "" {
		who = "customer " + r.customer
	}
	fmt.Fprintf(r.stdout, "range:   %s to %s, %s\n", r.from.Format(time.RFC3339), r.to.Format(time.RFC3339), who)
	oldCost, err1 := rating.ParseAmount(cost)
	oldCharge, err2 := rating.ParseAmount(charge)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("read the range from rated_lines: %w", err)
	}
	fmt.Fprintf(r.stdout, "found:   %d events in rated_lines, cost %s, charge %s\n", total, oldCost, oldCharge)
	if total == 0 {
		fmt.Fprintln(r.stdout, "nothing to re-rate")
		return nil
	}
	if r.dryRun {
		fmt.Fprintf(r.stdout, "dry run: nothing published (run %s would re-rate them with the prices in force now)\n", r.run)
		return nil
	}
	fmt.Fprintf(r.stdout, "run:     %s, commands to %s\n", r.run, r.topic)
	dlqStart, err := r.endOffsets(ctx, r.dlq)
	if err != nil {
		return err
	}
	if err := r.publish(ctx, int64(total)); err != nil {
		return err
	}
	for _, s := range r.skipped {
		fmt.Fprintln(r.stderr, "not re-rated:", s)
	}
	if len(r.events) == 0 {
		return fmt.Errorf("no event could be re-rated (%d skipped, reasons above)", len(r.skipped))
	}
	refused, err := r.wait(ctx, dlqStart)
	if err != nil {
		return err
	}
	return r.summary(ctx, refused)
}

// replayRow is one rated_lines row as replay reads it.
type replayRow struct {
	customer, event, unit       string
	quantity, ms                int64
	cost, charge                string
	provider, model, priceKey   string
	priceProvider, tier, source string
	run                         string
	dimKeys, dimValues          []string
	unlined                     string
	ratedAt                     time.Time
}

const replayColumns = "customer_id, event_id, unit, quantity, event_ms, toString(cost), toString(charge), provider, model, price_key, " +
	"price_provider, service_tier, source, rating_run, dim_keys, dim_values, unlined, rated_at"

// publish streams the range's rows, rebuilds each event and publishes its
// rerate command, with a progress meter.
func (r *replay) publish(ctx context.Context, total int64) error {
	where, args := r.where()
	rows, err := r.conn.Query(ctx, "SELECT "+replayColumns+" FROM rated_lines FINAL WHERE "+where+" ORDER BY customer_id, event_id, unit", args...)
	if err != nil {
		if strings.Contains(err.Error(), "rating_run") || strings.Contains(err.Error(), "unlined") || strings.Contains(err.Error(), "price_provider") {
			return fmt.Errorf("read rated_lines: %w (run tariff migrate: replay needs migration 0003)", err)
		}
		return fmt.Errorf("read rated_lines: %w", err)
	}
	defer rows.Close()
	w := &kafka.Writer{
		Addr: kafka.TCP(r.brokers...), Transport: r.rt, Topic: r.topic,
		// The partitioner of every tariff producer: the command lands in the
		// partition of the customer's usage (pipeline.CommandWriter).
		Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, BatchSize: 500,
		MaxAttempts: 5, WriteBackoffMin: 100 * time.Millisecond, WriteBackoffMax: 2 * time.Second,
	}
	defer w.Close()
	meter := progress.Start(progress.Config{Out: r.stderr, Label: "replay", Unit: "rerate commands published", RateUnit: "commands/s", Total: total})
	defer meter.Done()
	r.events = make(map[string]*oldAmounts, total)
	var batch []kafka.Message
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := w.WriteMessages(ctx, batch...); err != nil {
			return fmt.Errorf("publish rerate commands to %s: %w", r.topic, err)
		}
		meter.Add(int64(len(batch)))
		batch = batch[:0]
		return nil
	}
	var group []replayRow
	emit := func() error {
		if len(group) == 0 {
			return nil
		}
		defer func() { group = group[:0] }()
		cmd, old, err := r.command(ctx, group)
		if err != nil {
			r.skipped = append(r.skipped, fmt.Sprintf("customer %q event %q: %v", group[0].customer, group[0].event, err))
			return nil
		}
		b, err := json.Marshal(cmd)
		if err != nil {
			return fmt.Errorf("encode rerate of %s: %w", cmd.Event.ID, err)
		}
		r.events[cmd.CustomerID+"\x00"+cmd.Event.ID] = old
		var ok1, ok2 bool
		r.oldCost, ok1 = r.oldCost.Add(old.cost)
		r.oldCharge, ok2 = r.oldCharge.Add(old.charge)
		if !ok1 || !ok2 {
			return errors.New("old totals overflow")
		}
		batch = append(batch, kafka.Message{Key: []byte(cmd.CustomerID), Value: b})
		if len(batch) >= 500 {
			return flush()
		}
		return nil
	}
	for rows.Next() {
		var x replayRow
		if err := rows.Scan(&x.customer, &x.event, &x.unit, &x.quantity, &x.ms, &x.cost, &x.charge, &x.provider, &x.model, &x.priceKey,
			&x.priceProvider, &x.tier, &x.source, &x.run, &x.dimKeys, &x.dimValues, &x.unlined, &x.ratedAt); err != nil {
			return fmt.Errorf("read rated_lines: %w", err)
		}
		if len(group) > 0 && (group[0].customer != x.customer || group[0].event != x.event) {
			if err := emit(); err != nil {
				return err
			}
		}
		group = append(group, x)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read rated_lines: %w", err)
	}
	if err := emit(); err != nil {
		return err
	}
	return flush()
}

// command rebuilds one event from its rows (every row of an event carries
// the event's fields; each holds one unit's line) and makes its rerate
// command.
func (r *replay) command(ctx context.Context, rows []replayRow) (*pipeline.Rerate, *oldAmounts, error) {
	f := &rows[0]
	c := &pipeline.Rerate{Kind: pipeline.RerateKind, ID: pipeline.RerateID(r.run, f.event), CustomerID: f.customer, Run: r.run,
		Event: pipeline.RerateEvent{ID: f.event, Time: time.UnixMilli(f.ms).UTC(), Provider: f.provider, Model: f.model,
			ServiceTier: f.tier, Source: f.source, Quantities: make(map[string]int64, len(rows)+1)},
		Old: pipeline.RerateOld{Run: f.run, PriceKey: f.priceKey, Provider: f.priceProvider}}
	if len(f.dimKeys) != len(f.dimValues) {
		return nil, nil, fmt.Errorf("dim_keys and dim_values differ in length (%d, %d)", len(f.dimKeys), len(f.dimValues))
	}
	for i := range f.dimKeys {
		c.Event.Dimensions = append(c.Event.Dimensions, schemas.Dimension{Key: f.dimKeys[i], Value: f.dimValues[i]})
	}
	if err := sinks.ParseUnlined(f.unlined, c.Event.Quantities); err != nil {
		return nil, nil, err
	}
	old := &oldAmounts{}
	for i := range rows {
		x := &rows[i]
		// A rewrite replaces all of an event's rows at once; rows that
		// disagree would mean the event's rating is not one rating.
		if x.run != f.run || x.priceKey != f.priceKey || x.priceProvider != f.priceProvider || x.ms != f.ms || x.model != f.model {
			return nil, nil, fmt.Errorf("its rows disagree (rating run %q/%q, price key %q/%q): not one rating", f.run, x.run, f.priceKey, x.priceKey)
		}
		cost, err := rating.ParseAmount(x.cost)
		if err != nil {
			return nil, nil, fmt.Errorf("unit %s cost: %w", x.unit, err)
		}
		charge, err := rating.ParseAmount(x.charge)
		if err != nil {
			return nil, nil, fmt.Errorf("unit %s charge: %w", x.unit, err)
		}
		c.Event.Quantities[x.unit] = x.quantity
		c.Old.Lines = append(c.Old.Lines, pipeline.RerateLine{Unit: x.unit, Quantity: x.quantity, Cost: cost, Charge: charge})
		old.cost, _ = old.cost.Add(cost)
		old.charge, _ = old.charge.Add(charge)
		if x.ratedAt.After(c.Old.RatedAt) {
			c.Old.RatedAt = x.ratedAt.UTC()
		}
	}
	if f.priceProvider == "" {
		// Rows written before migration 0003 have no price_provider: the
		// daily total of the event's price entry names it.
		p, err := r.priceProvider(ctx, f.customer, f.priceKey, c.Event.Time)
		if err != nil {
			return nil, nil, err
		}
		c.Old.Provider = p
	}
	return c, old, nil
}

// priceProvider finds the provider of a price entry in the customer's
// daily totals of the day; it must be exactly one.
func (r *replay) priceProvider(ctx context.Context, customer, priceKey string, t time.Time) (string, error) {
	rows, err := r.conn.Query(ctx, "SELECT DISTINCT provider FROM usage_daily FINAL WHERE customer_id = ? AND price_key = ? AND day = toDate(?)",
		customer, priceKey, t.Format("2006-01-02"))
	if err != nil {
		return "", fmt.Errorf("find the provider of price key %q in usage_daily: %w", priceKey, err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return "", err
		}
		found = append(found, p)
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	if len(found) != 1 {
		return "", fmt.Errorf("its rows predate price_provider and usage_daily names %d providers (%s) for price key %q that day: cannot tell which totals hold it",
			len(found), strings.Join(found, ", "), priceKey)
	}
	return found[0], nil
}

// endOffsets returns the next offset of each partition of topic.
func (r *replay) endOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	cl := &kafka.Client{Addr: kafka.TCP(r.brokers...), Transport: r.rt, Timeout: 30 * time.Second}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("kafka.dead_letter_topic %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		var e error
		if len(md.Topics) == 1 {
			e = md.Topics[0].Error
		}
		return nil, fmt.Errorf("kafka.dead_letter_topic %s: not found (%v): replay reads refused rerates from it", topic, e)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range md.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p.ID))
	}
	res, err := cl.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	out := map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// wait follows the run until every published rerate is applied (its rows
// carry the run) or refused (on the dead-letter topic since publishing),
// with a progress meter; it gives up when nothing moves for r.stall.
// It returns the refused events' reasons by key.
func (r *replay) wait(ctx context.Context, dlqStart map[int]int64) (map[string]string, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	refused := map[string]string{}
	prefix := pipeline.RerateID(r.run, "")
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for p, off := range dlqStart {
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: r.brokers, Topic: r.dlq, Partition: p, Dialer: r.dialer, MaxWait: 500 * time.Millisecond})
		if err := rd.SetOffset(off); err != nil {
			rd.Close()
			return nil, fmt.Errorf("read %s/%d: %w", r.dlq, p, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rd.Close()
			for {
				m, err := rd.ReadMessage(rctx)
				if err != nil {
					return
				}
				var stage, reason string
				for _, h := range m.Headers {
					switch h.Key {
					case sinks.HeaderDLQDecoder:
						stage = string(h.Value)
					case sinks.HeaderDLQReason:
						reason = string(h.Value)
					}
				}
				if stage != "rerate" {
					continue
				}
				var c struct {
					ID         string `json:"id"`
					CustomerID string `json:"customer_id"`
				}
				if json.Unmarshal(m.Value, &c) != nil || !strings.HasPrefix(c.ID, prefix) {
					continue
				}
				mu.Lock()
				refused[c.CustomerID+"\x00"+strings.TrimPrefix(c.ID, prefix)] = reason
				mu.Unlock()
			}
		}()
	}

	total := int64(len(r.events))
	var applied map[string]bool
	done := func() (int64, error) {
		a, err := r.applied(ctx)
		if err != nil {
			return 0, err
		}
		applied = a
		mu.Lock()
		defer mu.Unlock()
		n := int64(len(a))
		for k := range refused {
			if !a[k] {
				n++
			}
		}
		return n, nil
	}
	var count int64
	meter := progress.Start(progress.Config{Out: r.stderr, Label: "replay", Unit: "rerates applied or refused", RateUnit: "events/s", Total: total,
		Read: func() int64 { mu.Lock(); defer mu.Unlock(); return count }})
	defer meter.Done()
	last, lastMove := int64(-1), time.Now()
	for {
		asked := time.Now()
		n, err := done()
		if err != nil {
			return nil, err
		}
		// Poll at most every second, and leave ClickHouse idle at least
		// twice as long as the last poll took (a FINAL read over a large
		// range is not free).
		pause := max(time.Second, 2*time.Since(asked))
		mu.Lock()
		count = n
		mu.Unlock()
		if n >= total {
			break
		}
		if n != last {
			last, lastMove = n, time.Now()
		} else if time.Since(lastMove) > r.stall {
			missing := total - n
			hint := "is tariff run running? It applies rerate commands from " + r.topic
			if n > 0 {
				hint = "is tariff run still running and keeping up?"
			}
			return nil, fmt.Errorf("%d of %d rerates neither applied nor refused after %s without progress: %s (replaying the same --run later publishes only what is still needed and changes nothing twice)",
				missing, total, r.stall, hint)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	out := map[string]string{}
	for k, reason := range refused {
		if !applied[k] {
			out[k] = reason
		}
	}
	return out, nil
}

// applied returns the published events whose rows now carry the run.
func (r *replay) applied(ctx context.Context) (map[string]bool, error) {
	where, args := r.where()
	rows, err := r.conn.Query(ctx, "SELECT DISTINCT customer_id, event_id FROM rated_lines FINAL WHERE rating_run = ? AND "+where, append([]any{r.run}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("read progress from rated_lines: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var c, e string
		if err := rows.Scan(&c, &e); err != nil {
			return nil, err
		}
		if _, ok := r.events[c+"\x00"+e]; ok {
			out[c+"\x00"+e] = true
		}
	}
	return out, rows.Err()
}

// summary prints the old and new totals of the events published: an
// applied event counts at its new amounts, a refused one at its old ones
// (it did not change).
func (r *replay) summary(ctx context.Context, refused map[string]string) error {
	where, args := r.where()
	rows, err := r.conn.Query(ctx, "SELECT customer_id, event_id, toString(sum(cost)), toString(sum(charge)) FROM rated_lines FINAL WHERE rating_run = ? AND "+where+
		" GROUP BY customer_id, event_id", append([]any{r.run}, args...)...)
	if err != nil {
		return fmt.Errorf("read the new totals from rated_lines: %w", err)
	}
	defer rows.Close()
	newCost, newCharge := r.oldCost, r.oldCharge
	applied := 0
	for rows.Next() {
		var c, e, cost, charge string
		if err := rows.Scan(&c, &e, &cost, &charge); err != nil {
			return err
		}
		old, ok := r.events[c+"\x00"+e]
		if !ok {
			continue
		}
		nc, err1 := rating.ParseAmount(cost)
		nch, err2 := rating.ParseAmount(charge)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		newCost, _ = newCost.Sub(old.cost)
		newCost, _ = newCost.Add(nc)
		newCharge, _ = newCharge.Sub(old.charge)
		newCharge, _ = newCharge.Add(nch)
		applied++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(refused)) {
		c, e, _ := strings.Cut(k, "\x00")
		fmt.Fprintf(r.stderr, "refused: customer %q event %q: %s\n", c, e, refused[k])
	}
	fmt.Fprintf(r.stdout, "re-rated: %d of %d events (run %s); %d refused (reasons on standard error and on the dead-letter topic), %d not published\n",
		applied, len(r.events), r.run, len(refused), len(r.skipped))
	dCost, _ := newCost.Sub(r.oldCost)
	dCharge, _ := newCharge.Sub(r.oldCharge)
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tcost\tcharge")
	fmt.Fprintf(tw, "old\t%s\t%s\n", r.oldCost, r.oldCharge)
	fmt.Fprintf(tw, "new\t%s\t%s\n", newCost, newCharge)
	fmt.Fprintf(tw, "difference\t%s\t%s\n", signed(dCost), signed(dCharge))
	tw.Flush()
	fmt.Fprintf(r.stdout, "balances: not re-drawn; the charge difference %s is not reflected in any balance\n", signed(dCharge))
	if len(refused) > 0 || len(r.skipped) > 0 {
		return errRejected
	}
	return nil
}

func signed(a rating.Amount) string {
	if a.Sign() > 0 {
		return "+" + a.String()
	}
	return a.String()
}
