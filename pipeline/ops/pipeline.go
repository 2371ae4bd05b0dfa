package ops

import (
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/tariff-dev/tariff/pipeline"
)

const (
	sampleEvery = 5 * time.Second
	// keepSamples is the throughput history the dashboard draws: 15 minutes.
	keepSamples = 180
	// rateWindow is the window the current rates are computed over.
	rateWindow = time.Minute
)

// Counters is a snapshot of the pipeline's counters.
type Counters struct {
	Messages     int64 `json:"messages"`
	Events       int64 `json:"events"`
	Rated        int64 `json:"rated"`
	Duplicates   int64 `json:"duplicates"`
	DeadLettered int64 `json:"dead_lettered"`
	Unpriced     int64 `json:"unpriced"`
	KeyMismatch  int64 `json:"key_mismatch"`
	Redelivered  int64 `json:"redelivered"`
	Retries      int64 `json:"retries"`
	Batches      int64 `json:"batches"`
}

func readCounters(st *pipeline.Stats) Counters {
	if st == nil {
		return Counters{}
	}
	return Counters{
		Messages: st.Messages.Load(), Events: st.Events.Load(), Rated: st.Rated.Load(),
		Duplicates: st.Duplicates.Load(), DeadLettered: st.DeadLettered.Load(), Unpriced: st.Unpriced.Load(),
		KeyMismatch: st.KeyMismatch.Load(), Redelivered: st.Redelivered.Load(), Retries: st.Retries.Load(),
		Batches: st.Batches.Load(),
	}
}

type sample struct {
	At time.Time
	C  Counters
}

// sampler keeps a ring of counter snapshots for rates and history.
type sampler struct {
	stats *pipeline.Stats
	now   func() time.Time
	mu    sync.Mutex
	ring  []sample
}

func newSampler(st *pipeline.Stats, now func() time.Time) *sampler {
	s := &sampler{stats: st, now: now, ring: make([]sample, 0, keepSamples)}
	s.sample()
	return s
}

func (s *sampler) sample() {
	smp := sample{At: s.now(), C: readCounters(s.stats)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) == keepSamples {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:keepSamples-1]
	}
	s.ring = append(s.ring, smp)
}

func (s *sampler) samples() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.ring...)
}

// Rates are per-second rates over the last minute (or what has been
// sampled of it).
type Rates struct {
	WindowSeconds float64 `json:"window_seconds"`
	Messages      float64 `json:"messages_per_second"`
	Rated         float64 `json:"rated_per_second"`
	DeadLettered  float64 `json:"dead_lettered_per_second"`
}

// HistoryPoint is the throughput between two samples.
type HistoryPoint struct {
	At           time.Time `json:"at"`
	Messages     float64   `json:"messages_per_second"`
	Rated        float64   `json:"rated_per_second"`
	DeadLettered float64   `json:"dead_lettered_per_second"`
}

func perSecond(a, b int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(b-a) / d.Seconds()
}

// PartitionLag is one partition number's lag.
type PartitionLag struct {
	Partition int   `json:"partition"`
	Lag       int64 `json:"lag"`
}

// PipelineView is what /v1/pipeline returns.
type PipelineView struct {
	Available     bool           `json:"available"`
	StartedAt     time.Time      `json:"started_at"`
	UptimeSeconds int64          `json:"uptime_seconds"`
	Counters      Counters       `json:"counters"`
	Rates         Rates          `json:"rates"`
	History       []HistoryPoint `json:"history"`
	LagReported   bool           `json:"lag_reported"`
	TotalLag      int64          `json:"total_lag"`
	Lag           []PartitionLag `json:"lag"`
	Checks        []CheckResult  `json:"checks"`
}

func (s *Server) apiPipeline(w http.ResponseWriter, r *http.Request) {
	now := s.deps.Now()
	cur := sample{At: now, C: readCounters(s.deps.Stats)}
	v := PipelineView{
		Available: s.deps.Stats != nil, StartedAt: s.started.UTC(),
		UptimeSeconds: int64(now.Sub(s.started).Seconds()), Counters: cur.C,
		History: []HistoryPoint{}, Lag: []PartitionLag{},
	}
	smp := append(s.sampler.samples(), cur)
	for i := 1; i < len(smp); i++ {
		a, b := smp[i-1], smp[i]
		d := b.At.Sub(a.At)
		if d <= 0 {
			continue
		}
		v.History = append(v.History, HistoryPoint{At: b.At.UTC(),
			Messages: perSecond(a.C.Messages, b.C.Messages, d), Rated: perSecond(a.C.Rated, b.C.Rated, d),
			DeadLettered: perSecond(a.C.DeadLettered, b.C.DeadLettered, d)})
	}
	// The oldest sample within the window is the base of the rates.
	base := smp[0]
	for _, x := range smp {
		if now.Sub(x.At) <= rateWindow {
			base = x
			break
		}
	}
	if d := now.Sub(base.At); d > 0 {
		v.Rates = Rates{WindowSeconds: d.Seconds(),
			Messages: perSecond(base.C.Messages, cur.C.Messages, d), Rated: perSecond(base.C.Rated, cur.C.Rated, d),
			DeadLettered: perSecond(base.C.DeadLettered, cur.C.DeadLettered, d)}
	}
	if s.deps.Lag != nil {
		v.LagReported = true
		for p, l := range s.deps.Lag() {
			v.Lag = append(v.Lag, PartitionLag{p, l})
			v.TotalLag += l
		}
		sort.Slice(v.Lag, func(i, j int) bool { return v.Lag[i].Partition < v.Lag[j].Partition })
	}
	s.checkMu.Lock()
	v.Checks = append([]CheckResult{}, s.lastCheck...)
	s.checkMu.Unlock()
	writeJSON(w, http.StatusOK, v)
}
