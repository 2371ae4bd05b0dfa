package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// demoModels are real models of the bundled price list, with a rough share
// of traffic and typical request sizes.
var demoModels = []struct {
	provider, model string
	weight          int
	input, output   int // typical uncached input and output tokens
	cacheShare      int // percent of requests that read the prompt cache
}{
	{"openai", "gpt-4o", 30, 1800, 400, 40},
	{"openai", "gpt-4o-mini", 25, 900, 250, 30},
	{"anthropic", "claude-sonnet-4-5", 25, 2500, 600, 60},
	{"openai", "o3-mini", 10, 1200, 900, 20},
	{"gemini", "gemini-2.5-pro", 10, 3000, 700, 0},
}

var demoCustomers = []string{"acme", "globex", "initech", "umbrella", "hooli", "stark"}

// runDemo publishes synthetic gateway events at rate per second until ctx
// ends. Each event gets a fresh idempotency key.
func runDemo(ctx context.Context, brokers []string, rate int, log zerolog.Logger) error {
	if rate <= 0 {
		rate = 5
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        TopicGateway,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	run := strconv.FormatInt(time.Now().Unix(), 36)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	total := 0
	for _, m := range demoModels {
		total += m.weight
	}
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		pick := rng.IntN(total)
		m := demoModels[0]
		for _, c := range demoModels {
			if pick < c.weight {
				m = c
				break
			}
			pick -= c.weight
		}
		customer := demoCustomers[min(rng.IntN(len(demoCustomers)), rng.IntN(len(demoCustomers)))] // skewed to the first
		usage := map[string]int{
			"input":  m.input/2 + rng.IntN(m.input),
			"output": m.output/2 + rng.IntN(m.output),
		}
		if rng.IntN(100) < m.cacheShare {
			usage["cached_input"] = 1000 + rng.IntN(8000)
		}
		ev := map[string]any{
			"id":          fmt.Sprintf("demo-%s-%d", run, n),
			"time":        time.Now().UTC().Format(time.RFC3339Nano),
			"customer_id": customer,
			"provider":    m.provider,
			"model":       m.model,
			"dimensions":  map[string]string{"team": []string{"search", "chat", "agents"}[rng.IntN(3)]},
			"usage":       usage,
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(customer), Value: b}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn().Err(err).Msg("demo: publish failed")
		}
	}
}
