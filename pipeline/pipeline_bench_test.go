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
