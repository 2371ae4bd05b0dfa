package gateway

import (
	"encoding/json"
	"math/bits"
	"net/http"
	"sync/atomic"
	"time"
)

// Stats counts what the gateway did since it started. Counters are safe to
// read at any time; Gateway.Stats takes a consistent-enough snapshot.
type Stats struct {
	// requests by API and HTTP status of the answer.
	requests [numAPIs][600]atomic.Int64

	// UpstreamLatency is the time from sending a request upstream to its
	// response headers (time to first byte).
	UpstreamLatency histogram
	// Overhead is the gateway's own time per forwarded request: the
	// request's whole time in the handler minus the time spent waiting for
	// the upstream (response headers, then each read of its body).
	Overhead histogram
	// PublishLatency is one Kafka publish attempt.
	PublishLatency histogram

	Unauthorized      atomic.Int64 // 401
	Paused            atomic.Int64 // 402
	EntitlementErrors atomic.Int64 // no decision; on_error applied
	UpstreamErrors    atomic.Int64 // upstream unreachable or timed out (502/504)
	Cancelled         atomic.Int64 // caller went away mid-response

	Events        atomic.Int64 // usage events recorded
	Unrecorded    atomic.Int64 // forwarded responses without usage: no event
	InvalidEvents atomic.Int64 // events the schemas decoder refuses (published anyway: the pipeline dead-letters them with the reason)
	Published     atomic.Int64 // events Kafka acknowledged directly
	Spooled       atomic.Int64 // events written to the spool
	Drained       atomic.Int64 // spooled events Kafka acknowledged later
	Parked        atomic.Int64 // events Kafka refused as too large, kept aside
	PublishErrors atomic.Int64 // failed publish attempts
	QueueFull     atomic.Int64 // events spooled by the request because the queue was full
	Lost          atomic.Int64 // events neither published nor spooled (logged in full)
}

func (s *Stats) request(a api, status int) {
	if status < 100 || status >= 600 {
		status = 599
	}
	s.requests[a][status].Add(1)
}

// StatsSnapshot is a point-in-time copy of Stats, JSON-ready.
type StatsSnapshot struct {
	Requests          []RequestCount    `json:"requests"`
	UpstreamLatency   HistogramSnapshot `json:"upstream_latency"`
	Overhead          HistogramSnapshot `json:"overhead"`
	PublishLatency    HistogramSnapshot `json:"publish_latency"`
	Unauthorized      int64             `json:"unauthorized"`
	Paused            int64             `json:"paused"`
	EntitlementErrors int64             `json:"entitlement_errors"`
	UpstreamErrors    int64             `json:"upstream_errors"`
	Cancelled         int64             `json:"cancelled"`
	Events            int64             `json:"events"`
	Unrecorded        int64             `json:"unrecorded"`
	InvalidEvents     int64             `json:"invalid_events"`
	Published         int64             `json:"published"`
	Spooled           int64             `json:"spooled"`
	Drained           int64             `json:"drained"`
	Parked            int64             `json:"parked"`
	PublishErrors     int64             `json:"publish_errors"`
	QueueFull         int64             `json:"queue_full"`
	Lost              int64             `json:"lost"`
	SpoolDepth        int64             `json:"spool_depth"`
	QueueDepth        int               `json:"queue_depth"`
}

// RequestCount is the number of requests to one API answered with one status.
type RequestCount struct {
	API    string `json:"api"`
	Status int    `json:"status"`
	Count  int64  `json:"count"`
}

// Requests returns how many requests to the API named api (chat_completions,
// responses, messages) were answered with status.
func (s StatsSnapshot) RequestsFor(apiName string, status int) int64 {
	for _, r := range s.Requests {
		if r.API == apiName && r.Status == status {
			return r.Count
		}
	}
	return 0
}

func (s *Stats) snapshot() StatsSnapshot {
	out := StatsSnapshot{
		UpstreamLatency:   s.UpstreamLatency.snapshot(),
		Overhead:          s.Overhead.snapshot(),
		PublishLatency:    s.PublishLatency.snapshot(),
		Unauthorized:      s.Unauthorized.Load(),
		Paused:            s.Paused.Load(),
		EntitlementErrors: s.EntitlementErrors.Load(),
		UpstreamErrors:    s.UpstreamErrors.Load(),
		Cancelled:         s.Cancelled.Load(),
		Events:            s.Events.Load(),
		Unrecorded:        s.Unrecorded.Load(),
		InvalidEvents:     s.InvalidEvents.Load(),
		Published:         s.Published.Load(),
		Spooled:           s.Spooled.Load(),
		Drained:           s.Drained.Load(),
		Parked:            s.Parked.Load(),
		PublishErrors:     s.PublishErrors.Load(),
		QueueFull:         s.QueueFull.Load(),
		Lost:              s.Lost.Load(),
	}
	for a := range s.requests {
		for st := range s.requests[a] {
			if n := s.requests[a][st].Load(); n > 0 {
				out.Requests = append(out.Requests, RequestCount{API: apiNames[a], Status: st, Count: n})
			}
		}
	}
	return out
}

// statsHandler serves the snapshot as JSON.
func statsHandler(snap func() StatsSnapshot) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := json.MarshalIndent(snap(), "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(b, '\n'))
	})
}

// histogram is a lock-free latency histogram with logarithmic buckets,
// four per power of two (each bucket at most 25% wide), from 1ns to hours.
type histogram struct {
	counts [histBuckets]atomic.Int64
	n      atomic.Int64
	sum    atomic.Int64 // ns
	max    atomic.Int64 // ns
}

const histBuckets = 64 * 4

func bucketOf(ns int64) int {
	if ns < 4 {
		return int(max(ns, 0))
	}
	v := uint64(ns)
	e := bits.Len64(v) - 1 // 2^e <= v < 2^(e+1), e >= 2
	return (e-1)*4 + int((v>>(e-2))&3)
}

// bucketUpper is the smallest value above bucket i.
func bucketUpper(i int) int64 {
	if i < 4 {
		return int64(i) + 1
	}
	e, sub := i/4+1, i%4
	return int64(4+sub+1) << (e - 2)
}

func (h *histogram) observe(d time.Duration) {
	ns := int64(d)
	h.counts[bucketOf(ns)].Add(1)
	h.n.Add(1)
	h.sum.Add(ns)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// HistogramSnapshot summarizes a histogram; quantiles are bucket upper
// bounds (at most 25% above the true value), capped at the maximum seen.
type HistogramSnapshot struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

func (h *histogram) snapshot() HistogramSnapshot {
	var c [histBuckets]int64
	var n int64
	for i := range c {
		c[i] = h.counts[i].Load()
		n += c[i]
	}
	s := HistogramSnapshot{Count: n, Max: time.Duration(h.max.Load())}
	if n == 0 {
		return s
	}
	s.Mean = time.Duration(h.sum.Load() / max(h.n.Load(), 1))
	q := func(p float64) time.Duration {
		want := int64(p*float64(n) + 0.5)
		want = max(want, 1)
		var cum int64
		for i := range c {
			if cum += c[i]; cum >= want {
				return min(time.Duration(bucketUpper(i)), s.Max)
			}
		}
		return s.Max
	}
	s.P50, s.P90, s.P99, s.P999 = q(0.50), q(0.90), q(0.99), q(0.999)
	return s
}
