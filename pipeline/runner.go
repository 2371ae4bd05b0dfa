package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/sources"
)

// Runner is one tariff instance in the consumer group: for every
// generation it runs one Processor per owned partition number, after
// rebuilding that partition's state from the changelog.
type Runner struct {
	cfg       Config
	src       sources.Config
	group     *sources.Group
	changelog *Changelog
	deps      Deps
	newRater  func() Rater
	log       zerolog.Logger
	fatal     chan error
	// gate, when set, must succeed before a partition is processed
	// (SetPartitionGate).
	gate func(ctx context.Context, partition int) error
	// owners, when set, records which partitions this instance owns
	// (SetOwners, owners.go).
	owners *Owners

	mu      sync.Mutex
	sources map[int]*sources.PartitionSource // live partition readers, for lag
}

// NewRunner builds a runner. deps.Log must be changelog; newRater makes
// one rater per partition processor.
func NewRunner(cfg Config, src sources.Config, group *sources.Group, changelog *Changelog, deps Deps, newRater func() Rater) *Runner {
	cfg.setDefaults()
	src.SetDefaults()
	if deps.Stats == nil {
		deps.Stats = &Stats{}
	}
	deps.Log = changelog
	return &Runner{
		cfg: cfg, src: src, group: group, changelog: changelog, deps: deps, newRater: newRater,
		log:     deps.Logger.With().Str("component", "runner").Logger(),
		fatal:   make(chan error, 1),
		sources: make(map[int]*sources.PartitionSource),
	}
}

// SetPartitionGate makes every partition, each time it is assigned, wait
// for gate to succeed before it is restored and processed; a failing gate
// is retried with backoff until it succeeds or the generation ends.
// `tariff run` passes the price follower's catch-up: a partition that moved
// from another instance is rated with every price version and rate card
// recorded before it was assigned here. Call it before Run.
func (r *Runner) SetPartitionGate(gate func(ctx context.Context, partition int) error) { r.gate = gate }

// Lag returns, per owned partition number, the messages not yet fetched
// across the input topics, as the readers last saw it.
func (r *Runner) Lag() map[int]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int]int64, len(r.sources))
	for p, s := range r.sources {
		out[p] = s.Lag()
	}
	return out
}

// Partitions returns the partition numbers this instance is processing
// now (restored and running), in order: where its ticks go.
func (r *Runner) Partitions() []int {
	r.mu.Lock()
	out := make([]int, 0, len(r.sources))
	for p := range r.sources {
		out = append(out, p)
	}
	r.mu.Unlock()
	sort.Ints(out)
	return out
}

// Stats returns the counters shared by all partitions.
func (r *Runner) Stats() *Stats { return r.deps.Stats }

// Run takes part in the group until ctx ends or a partition fails in a way
// retrying cannot fix. On return every partition worker has stopped: the
// batches in hand are finished and committed, and the group is left.
func (r *Runner) Run(ctx context.Context) error {
	defer func() {
		t := time.Now()
		if err := r.group.Close(); err != nil {
			r.log.Debug().Err(err).Msg("leave group")
		}
		r.log.Info().Dur("took", time.Since(t)).Msg("left the consumer group; partition workers stopped")
	}()
	gens := make(chan *sources.Generation)
	errc := make(chan error, 1)
	go func() {
		for {
			gen, err := r.group.Next(ctx)
			if err != nil {
				errc <- err
				return
			}
			select {
			case gens <- gen:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-r.fatal:
			return err
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("consumer group: %w", err)
		case gen := <-gens:
			for _, p := range gen.Partitions {
				gen.Start(func(gctx context.Context) { r.runPartition(gctx, gen, p) })
			}
		}
	}
}

// runPartition owns partition p for the generation: restore, then process
// until the generation ends.
func (r *Runner) runPartition(ctx context.Context, gen *sources.Generation, p int) {
	log := r.log.With().Int("partition", p).Int32("generation", gen.ID).Logger()
	started := time.Now()
	if r.gate != nil {
		backoff := r.cfg.RetryMin
		for {
			err := r.gate(ctx, p)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			log.Warn().Err(err).Msg("partition gate failed; retrying before processing")
			if !Sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, r.cfg.RetryMax)
		}
	}
	offsets, err := r.restore(ctx, p)
	if err != nil {
		if ctx.Err() == nil {
			r.fail(fmt.Errorf("restore partition %d: %w", p, err))
		}
		return
	}
	start := make(map[string]int64, len(r.src.Topics))
	behind := map[string]int64{}
	for topic := range r.src.Topics {
		if o, ok := offsets[topic]; ok {
			start[topic] = o
			if c, ok := gen.Committed[topic][p]; !ok || c < o {
				behind[topic] = o
			}
		} else if o, ok := gen.Committed[topic][p]; ok {
			start[topic] = o
		}
	}
	// The state is ahead of the group's committed offsets when a commit
	// failed (a rebalance in progress) after its batch was durable: commit
	// the stored offsets now, or the group would show lag that is not
	// there until the partition's next input.
	if len(behind) > 0 {
		if err := gen.Commit(p, behind); err != nil {
			log.Debug().Err(err).Msg("catching the group's committed offsets up to the state failed; the next batch commits them")
		}
	}
	if v := r.deps.Views; v != nil {
		// The partition's customers are known to entitlement and the
		// admin API from now, not from their next usage; they are
		// forgotten when the partition goes. kafka-go starts a
		// generation's workers only after the previous generation's have
		// returned, so a forget never races the next owner's load here.
		n, err := v.load(r.deps.Store, p)
		if err != nil {
			r.fail(err)
			return
		}
		defer v.forget(p)
		log.Debug().Int("accounts", n).Msg("account views loaded")
	}
	if r.owners != nil {
		// Claimed once the views answer, released before they are
		// forgotten: reads forwarded here find the partition's customers.
		r.owners.claim(ctx, p, gen.ID)
		defer r.owners.release(p)
	}
	src, err := sources.NewPartitionSource(r.src, p, start)
	if err != nil {
		r.fail(err)
		return
	}
	defer src.Close()
	r.mu.Lock()
	r.sources[p] = src
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.sources, p)
		r.mu.Unlock()
	}()
	log.Info().Dur("restore", time.Since(started)).Interface("from", start).Msg("partition started")
	proc := NewProcessor(r.cfg, p, gen.ID, offsets, r.newRater(), r.deps, func(next map[string]int64) error {
		return gen.Commit(p, next)
	})
	if err := proc.Run(ctx, src); err != nil {
		r.fail(fmt.Errorf("partition %d: %w", p, err))
	}
	log.Info().Msg("partition stopped")
}

// restore applies partition p's changelog from the local position to its
// end, then returns the stored offsets.
func (r *Runner) restore(ctx context.Context, p int) (map[string]int64, error) {
	pos, err := r.deps.Store.ChangelogPos(p)
	if err != nil {
		return nil, err
	}
	backoff := r.cfg.RetryMin
	for {
		var applied int
		newPos, err := r.changelog.Replay(ctx, p, pos, func(offset int64, gen int32, muts []Mutation) error {
			applied++
			return r.deps.Store.Apply(p, muts, ChangelogPos{Next: offset + 1, Generation: gen})
		})
		if err == nil {
			if newPos != pos {
				if err := r.deps.Store.Apply(p, nil, newPos); err != nil {
					return nil, err
				}
			}
			if applied > 0 {
				r.log.Info().Int("partition", p).Int("records", applied).Msg("state restored from changelog")
			}
			return r.deps.Store.NextOffsets(p, r.src.TopicNames())
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.log.Warn().Err(err).Int("partition", p).Msg("changelog replay failed; retrying")
		pos = newPos
		if !Sleep(ctx, backoff) {
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, r.cfg.RetryMax)
	}
}

func (r *Runner) fail(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	select {
	case r.fatal <- err:
	default:
	}
}
