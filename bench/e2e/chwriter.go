package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/bench/loadgen"
	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
	"github.com/tariff-dev/tariff/sinks"
)

// writerResult is the bare ClickHouse writer's run.
type writerResult struct {
	rows, inserts int64
	busy          time.Duration // time spent inserting (column building, prepare, send), summed over rounds
	table         string
}

func (w writerResult) rowsPerSec() float64 { return float64(w.rows) / w.busy.Seconds() }

// bareWriter inserts the rated lines of the generator's stream into a
// scratch copy of rated_lines with clickhouse-go alone, in batches as
// large as tariff's at full speed (one insert per batch of batchMessages
// messages of one partition number, one writer per partition,
// whole-column appends; tariff's sink also shares inserts between
// partitions and sends them in chunks), and measures only the inserting.
//
// The rows are made outside the timed part: the stream is generated again
// (the generator is deterministic), each fresh message's events are those
// the decoders make of it (loadgen's Intended) and are rated with the same
// bundled price list and markup as tariff, and partition and offset are
// those the producer's hash balancer gives. Batches are prepared a round
// at a time (two per partition) to bound memory, then the round is
// inserted concurrently and timed.
func bareWriter(ctx context.Context, conn driver.Conn, db string, cfg loadgen.Config, partitions, batchMessages int) (writerResult, error) {
	res := writerResult{table: db + ".rated_lines_bare"}
	if err := conn.Exec(ctx, "CREATE TABLE "+res.table+" AS "+db+".rated_lines"); err != nil {
		return res, fmt.Errorf("create %s: %w", res.table, err)
	}
	g, err := loadgen.New(cfg)
	if err != nil {
		return res, err
	}
	rater, err := bundledRater(cfg.Markup)
	if err != nil {
		return res, err
	}
	type tp struct {
		topic     string
		partition int
	}
	var (
		m        loadgen.Message
		balancer kafka.Hash
		parts    = make([]int, partitions)
		offsets  = map[tp]int64{}
		pending  = make([][]sinks.RatedEvent, partitions) // per partition: events of the batch being filled
		msgs     = make([]int, partitions)                // ... and its message count
		round    [][]sinks.RatedEvent
		now      = time.Now().UTC()
	)
	for i := range parts {
		parts[i] = i
	}
	flushRound := func() error {
		if len(round) == 0 {
			return nil
		}
		rows, took, err := insertRound(ctx, conn, res.table, round, partitions)
		if err != nil {
			return err
		}
		res.rows += rows
		res.inserts += int64(len(round))
		res.busy += took
		round = round[:0]
		return nil
	}
	for g.Next(&m) {
		p := balancer.Balance(kafka.Message{Key: m.Key}, parts...)
		k := tp{m.Topic, p}
		off := offsets[k]
		offsets[k] = off + 1
		msgs[p]++
		if m.Kind == loadgen.KindFresh {
			for _, ev := range g.Intended(&m) {
				var out sinks.RatedEvent
				if err := rater.Rate(&ev, &out); err != nil {
					return res, fmt.Errorf("rate event %s of the stream: %w", ev.ID, err)
				}
				out.Topic, out.Partition, out.Offset, out.RatedAt = m.Topic, p, off, now
				pending[p] = append(pending[p], out)
			}
		}
		if msgs[p] == batchMessages {
			round = append(round, pending[p])
			pending[p], msgs[p] = nil, 0
			if len(round) == 2*partitions {
				if err := flushRound(); err != nil {
					return res, err
				}
			}
		}
	}
	for p := range pending {
		if len(pending[p]) > 0 {
			round = append(round, pending[p])
		}
	}
	return res, flushRound()
}

// insertRound inserts batches with up to writers concurrent inserts and
// returns the rows and the wall time.
func insertRound(ctx context.Context, conn driver.Conn, table string, batches [][]sinks.RatedEvent, writers int) (int64, time.Duration, error) {
	work := make(chan []sinks.RatedEvent)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		rows     int64
		firstErr error
	)
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				n, err := insertLines(ctx, conn, table, b)
				mu.Lock()
				rows += n
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	return rows, time.Since(start), firstErr
}

// insertLines is one batch insert: the rows built column by column as
// tariff's sink builds them (sinks.LineColumns), appended whole, sent.
func insertLines(ctx context.Context, conn driver.Conn, table string, events []sinks.RatedEvent) (int64, error) {
	var c sinks.LineColumns
	for i := range events {
		c.Add(&events[i])
	}
	if c.Rows() == 0 {
		return 0, nil
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+sinks.RatedLineColumns+")")
	if err != nil {
		return 0, fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	defer batch.Abort()
	if err := c.AppendTo(batch); err != nil {
		return 0, fmt.Errorf("%s: %w", table, err)
	}
	if err := batch.Send(); err != nil {
		return 0, fmt.Errorf("insert %d rows into %s: %w", c.Rows(), table, err)
	}
	return int64(c.Rows()), nil
}

// bundledRater rates with the price list bundled in the binary and a
// global markup in percent, as `tariff run` with prices.markup does.
func bundledRater(markup string) (pipeline.Rater, error) {
	snap, err := rating.ParsePriceList(bundled.LiteLLM)
	if err != nil {
		return nil, fmt.Errorf("bundled price list: %w", err)
	}
	book, err := rating.NewBook(nil, &rating.Version{ID: bundled.VersionID(snap.Source.String(), bundled.LiteLLM), Prices: snap})
	if err != nil {
		return nil, fmt.Errorf("bundled price list: %w", err)
	}
	m, err := rating.ParseMarkup(markup)
	if err != nil {
		return nil, fmt.Errorf("markup %q: %w", markup, err)
	}
	return pipeline.NewPriceRater(rating.NewBookRef(book), rating.Terms{Markups: rating.MarkupLayers{Global: &rating.MarkupRules{Default: m}}}), nil
}
