// Package accounts fills the balance stage's entitlement views with real
// accounts for benchmarks, through the pipeline's own path: grant commands
// in the command format, applied by a pipeline.Processor with its Badger
// state, exactly as tariff applies them from the command topic. Nothing is
// written to the views by hand, so a benchmark over them measures what
// tariff serves.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/pipeline"
	"github.com/tariff-dev/tariff/sinks"
	"github.com/tariff-dev/tariff/sources"
)

// CommandTopic is the topic name the commands are delivered as.
const CommandTopic = "commands"

// CustomerID is the id of customer i: "cust-" and i in at least seven
// digits, so ids of a million customers have one length.
func CustomerID(i int) string {
	s := strconv.Itoa(i)
	for len(s) < 7 {
		s = "0" + s
	}
	return "cust-" + s
}

// GrantCommand is the JSON command granting amount USD to customer at at:
// the wire form the command topic carries.
func GrantCommand(customer, amount string, at time.Time) []byte {
	return fmt.Appendf(nil, `{"id":"grant-%s","customer_id":%q,"kind":"grant","at":%q,"grant":{"id":"pack-%s","amount":%q,"currency":"USD"}}`,
		customer, customer, at.UTC().Format(time.RFC3339Nano), customer, amount)
}

// Config says which accounts to build.
type Config struct {
	// Dir is the Badger directory the processor keeps its state in; it
	// should be empty. Required.
	Dir string
	// Customers is how many accounts: CustomerID(0) to CustomerID(n-1).
	Customers int
	// Amount is each customer's prepaid grant in USD. Default "25".
	Amount string
	// At is when the grants are issued. Default one hour ago.
	At time.Time
	// BatchMessages is the commands per batch. Default 5000, tariff's
	// default max_batch_messages.
	BatchMessages int
	// Extra are more commands (balance.Command JSON) applied after the
	// grants, in order: plan changes, pauses, voids for a known data set.
	Extra [][]byte
}

// Fill applies one grant command per customer and returns the views the
// processor published once each batch was committed. It fails if any
// command is refused.
func Fill(ctx context.Context, cfg Config) (*pipeline.Views, error) {
	if cfg.Dir == "" {
		return nil, errors.New("accounts: Dir: a directory is required")
	}
	if cfg.Customers <= 0 {
		return nil, fmt.Errorf("accounts: Customers: %d: expected a positive count", cfg.Customers)
	}
	if cfg.Amount == "" {
		cfg.Amount = "25"
	}
	if cfg.At.IsZero() {
		cfg.At = time.Now().Add(-time.Hour)
	}
	if cfg.BatchMessages <= 0 {
		cfg.BatchMessages = 5000
	}
	// Fsync buys nothing for a throwaway state and would make a million
	// accounts take minutes.
	noSync := false
	store, err := pipeline.OpenStore(pipeline.StoreConfig{Dir: cfg.Dir, SyncWrites: &noSync}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	defer store.Close()
	views := &pipeline.Views{}
	dlq := &refusals{}
	deps := pipeline.Deps{
		Formats:  map[string]string{CommandTopic: pipeline.FormatCommand},
		Decoders: nil, // commands need no usage decoder
		Sink:     discard{}, DLQ: dlq, Log: &discardLog{}, Store: store,
		Views: views, Logger: zerolog.Nop(),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := &grantSource{cfg: cfg, cancel: cancel}
	p := pipeline.NewProcessor(pipeline.Config{}, 0, 1, map[string]int64{}, nil, deps, func(map[string]int64) error { return nil })
	if err := p.Run(ctx, src); err != nil {
		return nil, fmt.Errorf("apply grant commands: %w", err)
	}
	if n := dlq.n.Load(); n > 0 {
		return nil, fmt.Errorf("accounts: %d grant commands refused, first: %s", n, dlq.first.Load())
	}
	if src.next < cfg.Customers+len(cfg.Extra) {
		return nil, fmt.Errorf("accounts: stopped after %d of %d customers: %w", src.next, cfg.Customers, context.Cause(ctx))
	}
	return views, nil
}

// grantSource hands out the grant commands in batches, then ends the run.
type grantSource struct {
	cfg    Config
	next   int
	cancel func()
}

func (s *grantSource) Fetch(ctx context.Context, b *sources.Batch) error {
	b.Reset()
	total := s.cfg.Customers + len(s.cfg.Extra)
	if s.next >= total {
		s.cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	for ; s.next < total && len(b.Messages) < s.cfg.BatchMessages; s.next++ {
		var c string
		var v []byte
		if s.next < s.cfg.Customers {
			c = CustomerID(s.next)
			v = GrantCommand(c, s.cfg.Amount, s.cfg.At)
		} else {
			v = s.cfg.Extra[s.next-s.cfg.Customers]
		}
		b.Messages = append(b.Messages, kafka.Message{Topic: CommandTopic, Partition: 0, Offset: int64(s.next), Key: []byte(c), Value: v})
		b.Bytes += len(v)
	}
	return nil
}

type discard struct{}

func (discard) WriteBatch(context.Context, *sinks.Batch) error { return nil }
func (discard) Close() error                                   { return nil }

type discardLog struct{ n int64 }

func (l *discardLog) Append(context.Context, int, []byte) (int64, error) { l.n++; return l.n, nil }

// refusals counts dead-lettered commands: a refused grant is a bug in
// this package, which Fill reports.
type refusals struct {
	n     atomic.Int64
	first atomic.Value
}

func (r *refusals) Write(_ context.Context, recs []sinks.DeadLetter) error {
	for _, d := range recs {
		if r.n.Add(1) == 1 {
			r.first.Store(d.Reason)
		}
	}
	return nil
}
