package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// recorder gets each usage event to Kafka, or to the spool when Kafka does
// not take it, without making the caller of record wait for Kafka.
//
// One goroutine (run) owns publishing. It is in one of two modes:
//
//   - direct: the spool is empty; it takes events from the in-memory queue
//     in batches and publishes them. A failed batch goes to the spool,
//     which switches it to:
//   - draining: the spool is not empty; events from the queue are appended
//     to the spool behind the older ones (keeping arrival order), and the
//     oldest spooled batch is published and then deleted, with capped
//     exponential backoff between failed attempts. When the spool is empty
//     again it returns to direct mode.
//
// record never blocks on Kafka: when the queue is full (Kafka slow or
// down and the loop busy with an attempt) it appends the event to the
// spool itself, a local fsynced write.
//
// What is not covered: an event still in the queue or in a publish attempt
// when the process is killed (SIGKILL, power loss) is lost; the window is
// the time to the Kafka ack or spool write, milliseconds normally and at
// most publish_timeout. A graceful stop publishes or spools everything.
type recorder struct {
	pub      Publisher
	spool    *Spool
	queue    chan kafka.Message
	timeout  time.Duration
	batch    int
	retryMax time.Duration
	stats    *Stats
	log      zerolog.Logger
	errLog   zerolog.Logger // sampled

	stop chan struct{}
	done chan struct{}
}

func newRecorder(cfg *Config, pub Publisher, spool *Spool, stats *Stats, log zerolog.Logger) *recorder {
	return &recorder{
		pub:      pub,
		spool:    spool,
		queue:    make(chan kafka.Message, cfg.Spool.QueueSize),
		timeout:  cfg.PublishTimeout,
		batch:    cfg.Spool.BatchSize,
		retryMax: cfg.Spool.RetryMax,
		stats:    stats,
		log:      log,
		errLog:   log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// record hands one event over. It does not block on Kafka; it may block
// for a local spool write when the queue is full. Ownership of m passes to
// the recorder. Must not be called after close.
func (r *recorder) record(m kafka.Message) {
	select {
	case r.queue <- m:
		return
	default:
	}
	r.stats.QueueFull.Add(1)
	r.spoolOrLog([]kafka.Message{m}, "queue full")
}

// spoolOrLog appends msgs to the spool. If even that fails (disk full,
// spool broken), the events are written to the error log in full: the
// last place they can be recovered from.
func (r *recorder) spoolOrLog(msgs []kafka.Message, why string) {
	if err := r.spool.Append(msgs); err != nil {
		r.stats.Lost.Add(int64(len(msgs)))
		for i := range msgs {
			r.log.Error().Err(err).Str("why", why).Str("topic", msgs[i].Topic).Bytes("key", msgs[i].Key).
				Bytes("event", msgs[i].Value).Msg("usage event could not be published nor spooled; it is only in this log line")
		}
		return
	}
	r.stats.Spooled.Add(int64(len(msgs)))
}

// run is the publishing loop; it returns after close, once every queued
// event is published or spooled.
func (r *recorder) run() {
	defer close(r.done)
	batch := make([]kafka.Message, 0, r.batch)
	var sp spooled
	backoff := 100 * time.Millisecond
	gcTick := time.NewTicker(5 * time.Minute)
	defer gcTick.Stop()
	for {
		if r.spool.Depth() > 0 {
			// Draining: queued events go behind the spooled ones.
			if batch = r.takeQueued(batch[:0]); len(batch) > 0 {
				r.spoolOrLog(batch, "draining")
			}
			if r.drainOnce(&sp) {
				backoff = 100 * time.Millisecond
				if r.spool.Depth() == 0 {
					r.log.Info().Msg("spool drained: publishing directly again")
				}
				continue
			}
			if !r.wait(backoff, &batch) {
				r.finish(batch[:0])
				return
			}
			backoff = min(2*backoff, r.retryMax)
			continue
		}
		select {
		case m := <-r.queue:
			batch = r.takeQueued(append(batch[:0], m))
			if err := r.publish(batch); err != nil {
				r.stats.PublishErrors.Add(1)
				r.errLog.Warn().Err(err).Int("events", len(batch)).Msg("kafka did not take usage events: spooling them")
				r.spoolOrLog(batch, "publish failed")
			} else {
				r.stats.Published.Add(int64(len(batch)))
			}
		case <-gcTick.C:
			r.spool.gc()
		case <-r.stop:
			r.finish(batch[:0])
			return
		}
	}
}

// takeQueued appends to batch what the queue holds, up to the batch size,
// without waiting.
func (r *recorder) takeQueued(batch []kafka.Message) []kafka.Message {
	for len(batch) < r.batch {
		select {
		case m := <-r.queue:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// wait sleeps for d while moving newly queued events to the spool. It
// returns false when the recorder is stopping.
func (r *recorder) wait(d time.Duration, batch *[]kafka.Message) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-r.stop:
			return false
		case m := <-r.queue:
			*batch = r.takeQueued(append((*batch)[:0], m))
			r.spoolOrLog(*batch, "draining")
		}
	}
}

func (r *recorder) publish(msgs []kafka.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	t := time.Now()
	err := r.pub.Publish(ctx, msgs)
	r.stats.PublishLatency.observe(time.Since(t))
	return err
}

// drainOnce publishes the oldest spooled batch and deletes it. It reports
// whether it made progress.
func (r *recorder) drainOnce(sp *spooled) bool {
	if err := r.spool.peek(sp, r.batch); err != nil {
		r.errLog.Error().Err(err).Msg("read gateway spool")
		return false
	}
	if len(sp.bad) > 0 {
		if err := r.spool.park(sp.bad); err == nil {
			_ = r.spool.remove(sp.badKeys)
		}
	}
	if len(sp.msgs) == 0 {
		return len(sp.bad) > 0
	}
	err := r.publish(sp.msgs)
	isolated := false
	if errors.Is(err, ErrMessageTooLarge) {
		isolated = true
		// One message Kafka will never take must not block the queue:
		// publish one by one and park the ones refused.
		err = r.isolate(sp)
	}
	if err != nil {
		r.stats.PublishErrors.Add(1)
		r.errLog.Warn().Err(err).Int64("spool_depth", r.spool.Depth()).Msg("kafka still unavailable: events stay in the spool")
		return false
	}
	if !isolated {
		r.stats.Drained.Add(int64(len(sp.msgs)))
	}
	if err := r.spool.remove(sp.keys); err != nil {
		// Published but not deleted: they will be published again, which
		// deduplication absorbs.
		r.errLog.Error().Err(err).Msg("delete published events from the spool")
		return false
	}
	return true
}

// isolate publishes sp's messages one at a time, parking those Kafka
// refuses as too large. It stops at the first other error.
func (r *recorder) isolate(sp *spooled) error {
	for i := range sp.msgs {
		err := r.publish(sp.msgs[i : i+1])
		if errors.Is(err, ErrMessageTooLarge) {
			r.log.Error().Err(err).Bytes("key", sp.msgs[i].Key).Int("bytes", len(sp.msgs[i].Value)).
				Msg("kafka refuses a usage event as too large: parked in the spool for an operator")
			if perr := r.spool.park(sp.msgs[i : i+1]); perr != nil {
				return perr
			}
			r.stats.Parked.Add(1)
			continue
		}
		if err != nil {
			// Delete what went out so far; the rest stays queued.
			_ = r.spool.remove(sp.keys[:i])
			sp.keys = sp.keys[:0]
			return err
		}
		r.stats.Drained.Add(1)
	}
	return nil
}

// finish runs at stop: the events still queued are published, or spooled
// if the spool is in use or Kafka fails.
func (r *recorder) finish(batch []kafka.Message) {
	for {
		batch = r.takeQueued(batch[:0])
		if len(batch) == 0 {
			return
		}
		if r.spool.Depth() > 0 {
			r.spoolOrLog(batch, "stopping")
			continue
		}
		if err := r.publish(batch); err != nil {
			r.stats.PublishErrors.Add(1)
			r.spoolOrLog(batch, "stopping, publish failed")
		} else {
			r.stats.Published.Add(int64(len(batch)))
		}
	}
}

// close stops the loop and waits until every queued event is published or
// spooled. Call it once, after every record call has returned.
func (r *recorder) close() {
	close(r.stop)
	<-r.done
}
