package pipeline

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline/metrics"
	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/rating/bundled"
	"github.com/tariff-dev/tariff/schemas"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

type discardSink struct{}

func (discardSink) WriteBatch(context.Context, *sinks.Batch) error { return nil }
func (discardSink) Close() error                                   { return nil }

// BenchmarkProcessBatch measures the whole per-partition path except Kafka
// and ClickHouse I/O: gateway decode, validation, deduplication against
// Badger, rating against the full bundled LiteLLM book, aggregation, the
// changelog record and the Badger commit (fsync off, as the I/O is not
// what this measures). One op is one event.
func BenchmarkProcessBatch(b *testing.B) {
	snap, err := rating.ParseLiteLLM(bundled.LiteLLM)
	if err != nil {
		b.Fatal(err)
	}
	book, err := rating.NewBook(nil, &rating.Version{ID: "v1", Prices: snap})
	if err != nil {
		b.Fatal(err)
	}
	rater := NewPriceRater(rating.NewBookRef(book), rating.Terms{Markups: rating.MarkupLayers{Global: &rating.MarkupRules{Default: rating.MustMarkup("30")}}})
	dec, err := schemas.DecoderFor("gateway", schemas.DecodeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	off := false
	store, err := OpenStore(StoreConfig{Dir: b.TempDir(), SyncWrites: &off}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	deps := Deps{
		Formats: map[string]string{"in": "gateway"}, Decoders: map[string]schemas.Decoder{"gateway": dec},
		Sink: discardSink{}, DLQ: &memDLQ{}, Log: &discardLog{}, Store: store, Logger: zerolog.Nop(),
		// As in tariff run: per-source counters and batch latency on.
		Metrics: metrics.NewTariff(metrics.NewRegistry(), "bench"),
	}
	p := NewProcessor(Config{}, 0, 1, map[string]int64{}, rater, deps, func(map[string]int64) error { return nil })

	const batchSize = 2000
	models := []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "o3-mini"}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	mk := func(i int) kafka.Message {
		v := fmt.Sprintf(`{"id":"ev-%d","time":%q,"customer_id":"cust-%d","provider":"openai","model":%q,"usage":{"input":1200,"cached_input":800,"output":300,"reasoning":50}}`,
			i, now, i%1000, models[i%len(models)])
		return kafka.Message{Topic: "in", Offset: int64(i), Value: []byte(v), Key: []byte(fmt.Sprintf("cust-%d", i%1000))}
	}
	b.ReportAllocs()
	var bytes int
	n := 0
	b.ResetTimer()
	for n < b.N {
		b.StopTimer()
		p.batch = sources.Batch{}
		for i := 0; i < batchSize && n < b.N; i++ {
			m := mk(n)
			bytes += len(m.Value)
			p.batch.Messages = append(p.batch.Messages, m)
			n++
		}
		b.StartTimer()
		if err := p.process(context.Background(), context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(bytes / max(b.N, 1)))
}

type discardLog struct{ n int64 }

func (l *discardLog) Append(context.Context, int, []byte) (int64, error) { l.n++; return l.n, nil }

// benchStore opens a store with fsync off (the I/O is not what the micro
// benchmarks measure) and a processor of partition 0 on it.
func benchStore(b *testing.B) (*Store, *Processor) {
	b.Helper()
	off := false
	store, err := OpenStore(StoreConfig{Dir: b.TempDir(), SyncWrites: &off}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	deps := Deps{Sink: discardSink{}, DLQ: &memDLQ{}, Log: &discardLog{}, Store: store, Logger: zerolog.Nop()}
	p := NewProcessor(Config{}, 0, 1, map[string]int64{}, nil, deps, func(map[string]int64) error { return nil })
	return store, p
}

// storeDedupKeys commits n idempotency keys (customers cust-0..999, ids
// ev-0..n-1) in batches of 2000, as committed batches leave them.
func storeDedupKeys(b *testing.B, store *Store, n int) {
	b.Helper()
	stamp := make([]byte, 8)
	exp := uint64(time.Now().Add(35 * 24 * time.Hour).Unix())
	var muts []Mutation
	for i := 0; i < n; i++ {
		muts = append(muts, Mutation{Key: dedupKey(nil, 0, fmt.Sprint("cust-", i%1000), fmt.Sprint("ev-", i)), Value: stamp, ExpiresAt: exp})
		if len(muts) == 2000 || i == n-1 {
			if err := store.Apply(0, muts, ChangelogPos{Next: int64(i + 1), Generation: 1}); err != nil {
				b.Fatal(err)
			}
			muts = muts[:0]
		}
	}
}

// BenchmarkDedupNew is the deduplication of an event never seen (nearly
// every event): the Bloom filter answers without reading Badger. The
// store holds 200,000 keys. One op is one event.
func BenchmarkDedupNew(b *testing.B) { benchDedup(b, false) }

// BenchmarkDedupSeen is the deduplication of a duplicate: the filter says
// maybe, and Badger's lookup finds the key. One op is one event.
func BenchmarkDedupSeen(b *testing.B) { benchDedup(b, true) }

func benchDedup(b *testing.B, seen bool) {
	const stored = 200_000
	store, p := benchStore(b)
	storeDedupKeys(b, store, stored)
	f, err := store.DedupFilter(0)
	if err != nil {
		b.Fatal(err)
	}
	p.seen = f
	customers, ids := make([]string, 4096), make([]string, 4096)
	for i := range ids {
		n := i * 37 % stored
		if !seen {
			n += stored
		}
		customers[i], ids[i] = fmt.Sprint("cust-", n%1000), fmt.Sprint("ev-", n)
	}
	txn := store.DB().NewTransaction(false)
	defer txn.Discard()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		got, err := p.applied(txn, customers[i%4096], ids[i%4096])
		if err != nil || got != seen {
			b.Fatalf("applied = %v, %v; want %v", got, err, seen)
		}
	}
}

// BenchmarkStateApply is the Badger commit of a batch's state: per event
// its idempotency key, and the updated hourly aggregate of one of 1,000
// (customer, model) pairs, in batches of 2,000 events, as Store.Apply
// writes them after the changelog. One op is one event.
func BenchmarkStateApply(b *testing.B) {
	store, _ := benchStore(b)
	const batch, events = 2000, 200_000
	stamp := make([]byte, 8)
	agg := make([]byte, 3*aggUnitSize)
	exp := uint64(time.Now().Add(35 * 24 * time.Hour).Unix())
	// The mutations are made first (then applied again in turn), so that
	// only the commit is measured.
	var muts [][]Mutation
	for n := 0; n < events; n += batch {
		var m []Mutation
		for i := n; i < n+batch; i++ {
			m = append(m, Mutation{Key: dedupKey(nil, 0, fmt.Sprint("cust-", i%1000), fmt.Sprint("ev-", i)), Value: stamp, ExpiresAt: exp})
			if i%2 == 0 { // about one aggregate per two events, as in a batch with repeat customers
				m = append(m, Mutation{Key: []byte(fmt.Sprintf("\x00\x00\x00\x00a-cust-%d-gpt-4o", i%1000)), Value: agg, ExpiresAt: exp})
			}
		}
		muts = append(muts, m)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		if err := store.Apply(0, muts[n/batch%len(muts)], ChangelogPos{Next: int64(n), Generation: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
