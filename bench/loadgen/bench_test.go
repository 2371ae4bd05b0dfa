package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/tariff-dev/tariff/pipeline/testenv"
)

// BenchmarkGenerate measures generating one message (drawing, encoding and
// accounting it in the expectation), per format and for the default mix.
// Bytes are message bytes.
func BenchmarkGenerate(b *testing.B) {
	for _, bc := range []struct {
		name string
		w    Weights
	}{
		{"gateway", Weights{FormatGateway: 1}},
		{"litellm", Weights{FormatLiteLLM: 1}},
		{"meter", Weights{FormatMeter: 1}},
		{"mix", DefaultWeights},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Events, cfg.Start, cfg.Formats = b.N+1, testStart, bc.w
			cfg.Customers = 100_000
			g, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			var m Message
			var bytes int64
			b.ReportAllocs()
			b.ResetTimer()
			for g.Next(&m) {
				bytes += int64(len(m.Value))
			}
			b.StopTimer()
			b.ReportMetric(float64(bytes)/float64(b.N+1), "B/msg")
			b.ReportMetric(float64(bytes)/1e6/b.Elapsed().Seconds(), "MB/s")
		})
	}
}

// BenchmarkExpected measures turning a stream's accumulated quantities into
// decimal totals (per message of the stream).
func BenchmarkExpected(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Events, cfg.Start, cfg.Customers = 100_000, testStart, 100_000
	g, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var m Message
	for g.Next(&m) {
	}
	b.ReportAllocs()
	b.ResetTimer()
	var lines int
	for range b.N {
		lines = len(g.Expected().Lines)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(cfg.Events), "ns/msg")
	b.ReportMetric(float64(lines), "lines")
}

// BenchmarkPublish publishes b.N messages of the default mix to the real
// broker (TARIFF_TEST_KAFKA), acks=all, as fast as it acknowledges.
func BenchmarkPublish(b *testing.B) {
	broker := testenv.Kafka(b)
	name := testenv.Name(b, "lgb")
	topics := Topics{Gateway: name + "_gw", Partner: name + "_partner", Meter: name + "_meter"}
	testenv.CreateTopics(b, broker, 4, topics.Gateway, topics.Partner, topics.Meter)
	dropTopicsAtEnd(b, broker, topics.Gateway, topics.Partner, topics.Meter)
	cfg := DefaultConfig()
	cfg.Events, cfg.Start, cfg.Topics, cfg.Customers = b.N, testStart, topics, 100_000
	g, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	stats, err := Publish(ctx, g, PublishConfig{Brokers: []string{broker}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(stats.Bytes / int64(b.N))
	b.ReportMetric(stats.Rate(), "msg/s")
}
