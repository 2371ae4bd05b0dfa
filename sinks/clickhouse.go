package sinks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/schemas"
)

// ClickHouseConfig configures the ClickHouse sink.
type ClickHouseConfig struct {
	// Addr is the native-protocol address, host:port. Default 127.0.0.1:9000.
	Addr string `yaml:"addr"`
	// Database holds tariff's tables. Default "tariff".
	Database string `yaml:"database"`
	// Username and Password authenticate. Default user "default", no password.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DialTimeout bounds a connection attempt. Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// InsertTimeout bounds one batch insert. Default 60s.
	InsertTimeout time.Duration `yaml:"insert_timeout"`
}

// SetDefaults fills zero fields with their documented defaults.
func (c *ClickHouseConfig) SetDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:9000"
	}
	if c.Database == "" {
		c.Database = "tariff"
	}
	if c.Username == "" {
		c.Username = "default"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.InsertTimeout == 0 {
		c.InsertTimeout = 60 * time.Second
	}
}

// Validate reports every bad field at once.
func (c *ClickHouseConfig) Validate() error {
	var errs []error
	if c.Addr == "" || !strings.Contains(c.Addr, ":") {
		errs = append(errs, fmt.Errorf("clickhouse.addr: %q: expected host:port of the native protocol (usually port 9000)", c.Addr))
	}
	if !validIdent(c.Database) {
		errs = append(errs, fmt.Errorf("clickhouse.database: %q: expected letters, digits and underscores, not starting with a digit", c.Database))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("clickhouse.dial_timeout: %s: expected a positive duration", c.DialTimeout))
	}
	if c.InsertTimeout <= 0 {
		errs = append(errs, fmt.Errorf("clickhouse.insert_timeout: %s: expected a positive duration", c.InsertTimeout))
	}
	return errors.Join(errs...)
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// OpenClickHouse connects to database cfg.Database (which must exist; see
// Migrate) and checks the server answers.
func OpenClickHouse(ctx context.Context, cfg ClickHouseConfig) (driver.Conn, error) {
	return openClickHouse(ctx, cfg, cfg.Database)
}

func openClickHouse(ctx context.Context, cfg ClickHouseConfig, db string) (driver.Conn, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{cfg.Addr},
		Auth:        clickhouse.Auth{Database: db, Username: cfg.Username, Password: cfg.Password},
		DialTimeout: cfg.DialTimeout,
		ReadTimeout: cfg.InsertTimeout,
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ClientInfo: clickhouse.ClientInfo{Products: []struct {
			Name    string
			Version string
		}{{Name: "tariff", Version: "0"}}},
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", cfg.Addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping clickhouse %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

// ratedLineColumns is the explicit column list of every insert into
// rated_lines. ClickHouse 18.16 rejects a batch insert without one, and an
// explicit list keeps inserts working when later migrations add columns.
const ratedLineColumns = "event_date, event_time, event_ms, customer_id, event_id, unit, quantity, unit_price, cost, charge, " +
	"provider, model, price_key, service_tier, price_version, rate_card_id, rate_card_version, source, " +
	"dim_keys, dim_values, kafka_topic, kafka_partition, kafka_offset, rated_at, " +
	"rating_run, price_provider, unlined"

// ClickHouse writes rated lines, one row per event and unit type.
//
// Rows are keyed (customer_id, event_id, unit) in a ReplacingMergeTree, so a
// batch written twice (a crash between this write and the offset commit)
// collapses to one row; the documented queries read with FINAL, so totals
// are exact even before the background merge runs.
type ClickHouse struct {
	conn    driver.Conn
	cfg     ClickHouseConfig
	log     zerolog.Logger
	columns columnPool
	group   groupCommit
}

// NewClickHouse connects and returns the sink. Run Migrate first.
func NewClickHouse(ctx context.Context, cfg ClickHouseConfig, log zerolog.Logger) (*ClickHouse, error) {
	cfg.SetDefaults()
	conn, err := OpenClickHouse(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &ClickHouse{conn: conn, cfg: cfg, log: log.With().Str("component", "clickhouse").Logger()}, nil
}

// Conn exposes the connection (for queries in tests and reports).
func (s *ClickHouse) Conn() driver.Conn { return s.conn }

// WriteBatch writes b's rated lines and aggregates. Batches that arrive
// while an insert is in flight are written together by the next one
// (groupCommit): the partitions' workers share inserts, so ClickHouse gets
// a few large inserts a second instead of three per batch per partition,
// and makes fewer parts to merge.
func (s *ClickHouse) WriteBatch(ctx context.Context, b *Batch) error {
	return s.group.do(b, func(batches []*Batch) error {
		// The writer's caller waiting or not, the insert runs to its end:
		// the batches of the others are in it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.InsertTimeout)
		defer cancel()
		if err := s.writeLines(ctx, batches); err != nil {
			return err
		}
		return s.writeAggregates(ctx, batches)
	})
}

// RatedLineColumns is the sink's column list for rated_lines, for
// writers outside it that must insert exactly its rows (the benchmark's
// bare writer).
const RatedLineColumns = ratedLineColumns

// LineColumns builds rated_lines rows the way the sink does, for writers
// outside it; the zero value is empty and ready.
type LineColumns struct{ c lineColumns }

// Reset empties the columns, keeping their storage.
func (l *LineColumns) Reset() { l.c.reset() }

// Add appends r's rows, one per line.
func (l *LineColumns) Add(r *RatedEvent) { l.c.add(r) }

// Rows is how many rows the columns hold.
func (l *LineColumns) Rows() int { return l.c.rows }

// AppendTo appends the rows to an insert of RatedLineColumns.
func (l *LineColumns) AppendTo(batch driver.Batch) error { return l.c.appendTo(batch) }

// lineColumns holds one insert's rated_lines rows column by column, in the
// order of ratedLineColumns. Appending whole columns skips the per-value
// type switch of row appends. Kept for reuse (columnPool): a sink serves
// all partitions at once.
type lineColumns struct {
	time                                []time.Time
	ms, quantity, offset                []int64
	customer, eventID, unit             []string
	price, cost, charge                 []decimal.Decimal
	provider, model, priceKey, tier     []string
	priceVersion, cardID, source, topic []string
	cardVersion                         []uint32
	partition                           []int32
	dimKeys, dimValues                  [][]string
	ratedAt                             []time.Time
	run, priceProvider, unlined         []string
	text                                []byte
	// dims backs the events' dimension keys and values, which dimKeys
	// and dimValues slice, instead of two slices per event.
	dims []string
	rows int
}

func (c *lineColumns) reset() {
	c.time, c.ms, c.quantity, c.offset = c.time[:0], c.ms[:0], c.quantity[:0], c.offset[:0]
	c.customer, c.eventID, c.unit = c.customer[:0], c.eventID[:0], c.unit[:0]
	c.price, c.cost, c.charge = c.price[:0], c.cost[:0], c.charge[:0]
	c.provider, c.model, c.priceKey, c.tier = c.provider[:0], c.model[:0], c.priceKey[:0], c.tier[:0]
	c.priceVersion, c.cardID, c.source, c.topic = c.priceVersion[:0], c.cardID[:0], c.source[:0], c.topic[:0]
	c.cardVersion, c.partition = c.cardVersion[:0], c.partition[:0]
	clear(c.dimKeys)
	clear(c.dimValues)
	c.dimKeys, c.dimValues, c.ratedAt = c.dimKeys[:0], c.dimValues[:0], c.ratedAt[:0]
	clear(c.unlined)
	c.run, c.priceProvider, c.unlined = c.run[:0], c.priceProvider[:0], c.unlined[:0]
	clear(c.dims)
	c.dims, c.rows = c.dims[:0], 0
}

// AppendUnlined appends to dst the units r's event reports a quantity for
// that have no line (request counts on a model priced by tokens, which the
// rater treats as informational), as "unit=quantity" pairs joined by
// commas ("requests=1"); nothing when every counted unit has a line.
// rated_lines keeps it on each row of the event (column unlined), so that
// the event can be rebuilt whole from its rows and re-rated (tariff
// replay): a corrected price may bill a unit the old one did not.
func AppendUnlined(dst []byte, r *RatedEvent) []byte {
	for u, q := range r.Event.Quantities {
		if q == 0 || hasLine(r.Lines, schemas.Unit(u)) {
			continue
		}
		if len(dst) > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, schemas.Unit(u).String()...)
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, q, 10)
	}
	return dst
}

// ParseUnlined reads AppendUnlined's text back into unit name -> quantity.
func ParseUnlined(s string, into map[string]int64) error {
	if s == "" {
		return nil
	}
	for _, pair := range strings.Split(s, ",") {
		unit, qty, ok := strings.Cut(pair, "=")
		n, err := strconv.ParseInt(qty, 10, 64)
		if !ok || unit == "" || err != nil || n <= 0 {
			return fmt.Errorf("unlined %q: expected unit=quantity pairs joined by commas", pair)
		}
		into[unit] = n
	}
	return nil
}

func hasLine(lines []Line, u schemas.Unit) bool {
	for i := range lines {
		if lines[i].Unit == u {
			return true
		}
	}
	return false
}

// insertChunkRows is how many rows the sink appends to an insert before
// sending them as one block of it (Flush). clickhouse-go makes fresh
// column buffers for every insert and grows them row by row; in chunks
// they grow once per insert, to a chunk, and are reused for the chunks
// after it, instead of regrowing to the whole batch (several times its
// size in garbage). The server still writes an insert's blocks as one
// part: it squashes blocks of an insert up to min_insert_block_size_rows
// (about a million) before writing.
const insertChunkRows = 2048

func (s *ClickHouse) writeLines(ctx context.Context, batches []*Batch) error {
	if !hasLines(batches) {
		return nil
	}
	c := s.columns.lines()
	defer s.columns.putLines(c)
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO rated_lines ("+ratedLineColumns+")")
	if err != nil {
		return fmt.Errorf("prepare insert into rated_lines: %w", err)
	}
	defer batch.Abort() // no-op once sent
	rows := 0
	c.reset()
	for _, b := range batches {
		for i := range b.Events {
			r := &b.Events[i]
			if c.rows+len(r.Lines) > insertChunkRows && c.rows > 0 {
				if err := c.appendTo(batch); err != nil {
					return err
				}
				rows += c.rows
				if err := batch.Flush(); err != nil {
					return fmt.Errorf("send %d rows of an insert into rated_lines: %w", c.rows, err)
				}
				c.reset()
			}
			c.add(r)
		}
	}
	if err := c.appendTo(batch); err != nil {
		return err
	}
	rows += c.rows
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into rated_lines: %w", rows, err)
	}
	return nil
}

func hasLines(batches []*Batch) bool {
	for _, b := range batches {
		for i := range b.Events {
			if len(b.Events[i].Lines) > 0 {
				return true
			}
		}
	}
	return false
}

// add appends r's rows.
func (c *lineColumns) add(r *RatedEvent) {
	ev := &r.Event
	var keys, values []string
	if n := len(ev.Dimensions); n > 0 {
		at := len(c.dims)
		for _, d := range ev.Dimensions {
			c.dims = append(c.dims, d.Key)
		}
		for _, d := range ev.Dimensions {
			c.dims = append(c.dims, d.Value)
		}
		keys, values = c.dims[at:at+n:at+n], c.dims[at+n:at+2*n:at+2*n]
	}
	t := ev.Time.UTC()
	c.text = AppendUnlined(c.text[:0], r)
	unlined := ""
	if len(c.text) > 0 {
		unlined = string(c.text) // one string shared by the event's rows
	}
	for _, l := range r.Lines {
		c.time = append(c.time, t)
		c.ms = append(c.ms, t.UnixMilli())
		c.customer = append(c.customer, ev.CustomerID)
		c.eventID = append(c.eventID, ev.ID)
		c.unit = append(c.unit, l.Unit.String())
		c.quantity = append(c.quantity, l.Quantity)
		// Exact: prices have PriceScale (24) digits and costs at most as
		// many (quantity x price), matching the columns' scales; charges
		// have Scale (28) digits, matching charge's.
		c.price = append(c.price, l.UnitPrice.ScaledDecimal())
		c.cost = append(c.cost, l.Cost.ScaledDecimal())
		c.charge = append(c.charge, l.Charge.ScaledDecimal())
		c.provider = append(c.provider, ev.Provider)
		c.model = append(c.model, ev.Model)
		c.priceKey = append(c.priceKey, r.PriceKey)
		c.tier = append(c.tier, ev.Tier.String())
		c.priceVersion = append(c.priceVersion, r.PriceVersion)
		c.cardID = append(c.cardID, r.RateCardID)
		c.cardVersion = append(c.cardVersion, r.RateCardVersion)
		c.source = append(c.source, string(ev.Source))
		c.dimKeys = append(c.dimKeys, keys)
		c.dimValues = append(c.dimValues, values)
		c.topic = append(c.topic, r.Topic)
		c.partition = append(c.partition, int32(r.Partition))
		c.offset = append(c.offset, r.Offset)
		c.ratedAt = append(c.ratedAt, r.RatedAt.UTC())
		c.run = append(c.run, r.Run)
		c.priceProvider = append(c.priceProvider, r.Provider)
		c.unlined = append(c.unlined, unlined)
	}
	c.rows = len(c.time)
}

// appendTo appends the rows to batch.
func (c *lineColumns) appendTo(batch driver.Batch) error {
	if c.rows == 0 {
		return nil
	}
	// In ratedLineColumns order: event_date and event_time both take the time.
	cols := []any{c.time, c.time, c.ms, c.customer, c.eventID, c.unit, c.quantity, c.price, c.cost, c.charge,
		c.provider, c.model, c.priceKey, c.tier, c.priceVersion, c.cardID, c.cardVersion, c.source,
		c.dimKeys, c.dimValues, c.topic, c.partition, c.offset, c.ratedAt,
		c.run, c.priceProvider, c.unlined}
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			return fmt.Errorf("append column %d of rated_lines: %w", i, err)
		}
	}
	return nil
}

const aggregateColumns = "customer_id, provider, price_key, unit, quantity, events, cost, charge, partition, version"

// aggColumns holds one insert's aggregate rows column by column, in the
// order of the window column and aggregateColumns. Pooled like
// lineColumns.
type aggColumns struct {
	start                              []time.Time
	customer, provider, priceKey, unit []string
	quantity                           []int64
	events, version                    []uint64
	cost, charge                       []decimal.Decimal
	partition                          []int32
}

func (c *aggColumns) reset() {
	c.start, c.quantity, c.events, c.version, c.partition = c.start[:0], c.quantity[:0], c.events[:0], c.version[:0], c.partition[:0]
	c.customer, c.provider, c.priceKey, c.unit = c.customer[:0], c.provider[:0], c.priceKey[:0], c.unit[:0]
	c.cost, c.charge = c.cost[:0], c.charge[:0]
}

// appendTo appends c's rows to batch.
func (c *aggColumns) appendTo(batch driver.Batch, table string) error {
	cols := []any{c.start, c.customer, c.provider, c.priceKey, c.unit, c.quantity, c.events, c.cost, c.charge, c.partition, c.version}
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			return fmt.Errorf("append column %d of %s: %w", i, table, err)
		}
	}
	return nil
}

// writeAggregates inserts the batch's hourly and daily totals, each table
// in one insert, sent in chunks of insertChunkRows rows.
func (s *ClickHouse) writeAggregates(ctx context.Context, batches []*Batch) error {
	c := s.columns.aggs()
	defer s.columns.putAggs(c)
	for _, g := range [...]struct {
		gran  Granularity
		table string
		col   string
	}{{GranularityHour, "usage_hourly", "window_start"}, {GranularityDay, "usage_daily", "day"}} {
		if err := s.writeAggregatesOf(ctx, batches, g.gran, g.table, g.col, c); err != nil {
			return err
		}
	}
	return nil
}

func (s *ClickHouse) writeAggregatesOf(ctx context.Context, batches []*Batch, gran Granularity, table, col string, c *aggColumns) error {
	n := 0
	for _, b := range batches {
		for i := range b.Aggregates {
			if b.Aggregates[i].Granularity == gran {
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+col+", "+aggregateColumns+")")
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	defer batch.Abort() // no-op once sent
	c.reset()
	for _, b := range batches {
		for i := range b.Aggregates {
			a := &b.Aggregates[i]
			if a.Granularity != gran {
				continue
			}
			c.start = append(c.start, a.WindowStart.UTC())
			c.customer, c.provider, c.priceKey = append(c.customer, a.CustomerID), append(c.provider, a.Provider), append(c.priceKey, a.PriceKey)
			c.unit, c.quantity, c.events = append(c.unit, a.Unit.String()), append(c.quantity, a.Quantity), append(c.events, uint64(a.Events))
			c.cost, c.charge = append(c.cost, a.Cost.ScaledDecimal()), append(c.charge, a.Charge.ScaledDecimal())
			c.partition, c.version = append(c.partition, a.Partition), append(c.version, a.Version)
			if len(c.start) == insertChunkRows {
				if err := c.appendTo(batch, table); err != nil {
					return err
				}
				if err := batch.Flush(); err != nil {
					return fmt.Errorf("send %d rows of an insert into %s: %w", len(c.start), table, err)
				}
				c.reset()
			}
		}
	}
	if len(c.start) > 0 {
		if err := c.appendTo(batch, table); err != nil {
			return err
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", n, table, err)
	}
	return nil
}

// columnPool keeps the sink's column buffers between inserts. A
// sync.Pool would not do: it is emptied at every garbage collection,
// which under a memory limit can run several times a second.
type columnPool struct {
	lineCols freeList[lineColumns]
	aggCols  freeList[aggColumns]
}

func (p *columnPool) lines() *lineColumns { return p.lineCols.get() }
func (p *columnPool) aggs() *aggColumns   { return p.aggCols.get() }

func (p *columnPool) putLines(c *lineColumns) {
	c.reset()
	p.lineCols.put(c)
}

func (p *columnPool) putAggs(c *aggColumns) {
	c.reset()
	p.aggCols.put(c)
}

// freeList holds values for reuse; the zero value is empty and ready.
type freeList[T any] struct {
	mu    sync.Mutex
	items []*T
}

// get returns a value put back earlier, or a new one.
func (f *freeList[T]) get() *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.items); n > 0 {
		x := f.items[n-1]
		f.items = f.items[:n-1]
		return x
	}
	return new(T)
}

func (f *freeList[T]) put(x *T) {
	f.mu.Lock()
	f.items = append(f.items, x)
	f.mu.Unlock()
}

func (s *ClickHouse) Close() error { return s.conn.Close() }
