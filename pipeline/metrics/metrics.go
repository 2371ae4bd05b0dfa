// Package metrics keeps tariff's operational counters, gauges and
// histograms and writes them in the Prometheus text exposition format
// (version 0.0.4), without a client library.
//
// Series are created once, at setup, with With(label values...), and kept:
// updating a kept series (Counter.Add, Gauge.Set, Histogram.Observe) is one
// or two atomic operations and never allocates, so it is fit for the hot
// path. With itself takes a lock and may allocate; do not call it per
// record.
//
// A Registry is safe for concurrent use: series can be updated while
// another goroutine writes the exposition.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

type kind uint8

const (
	kindCounter kind = iota
	kindGauge
	kindHistogram
)

var kindNames = [...]string{"counter", "gauge", "histogram"}

// Registry holds metric families and writes them sorted by name.
type Registry struct {
	mu   sync.Mutex
	fams map[string]*family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{fams: make(map[string]*family)} }

// family is one metric name with its series. Series are kept in creation
// order; the exposition sorts them by label values so that it is stable.
type family struct {
	name, help string
	kind       kind
	labels     []string
	buckets    []float64 // histograms: upper bounds, ascending, without +Inf

	mu     sync.RWMutex
	byKey  map[string]int
	series []*series
	// collect, when set, emits series computed at scrape time (a set of
	// labels not known in advance, such as the partitions this instance
	// owns now).
	collect func(emit func(value float64, labelValues ...string))
}

type series struct {
	values []string // label values, in family label order
	// Exactly one of the following is used, by the family's kind.
	u    atomic.Uint64 // counter
	bits atomic.Uint64 // gauge: float64 bits
	fn   func() float64
	h    *Histogram
}

func (r *Registry) register(name, help string, k kind, labels []string, buckets []float64) *family {
	if !validName(name, true) {
		panic("BUG: metric name " + strconv.Quote(name) + " is not a valid Prometheus name")
	}
	for _, l := range labels {
		if !validName(l, false) || strings.HasPrefix(l, "__") || (k == kindHistogram && l == "le") {
			panic("BUG: metric " + name + ": label name " + strconv.Quote(l) + " is not valid here")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.fams[name]; dup {
		panic("BUG: metric " + name + " registered twice")
	}
	f := &family{name: name, help: help, kind: k, labels: append([]string(nil), labels...), buckets: buckets, byKey: make(map[string]int)}
	r.fams[name] = f
	return f
}

// validName reports whether s is a metric name (colons allowed) or a label
// name.
func validName(s string, metric bool) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c == ':' && metric:
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// get returns the series with these label values, creating it with init.
func (f *family) get(values []string, init func(*series)) *series {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("BUG: metric %s has labels %v; got %d values %q", f.name, f.labels, len(values), values))
	}
	key := strings.Join(values, "\xff")
	f.mu.RLock()
	var s *series
	if i, ok := f.byKey[key]; ok {
		s = f.series[i]
	}
	f.mu.RUnlock()
	if s != nil {
		return s
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.byKey[key]; ok {
		return f.series[i]
	}
	s = &series{values: append([]string(nil), values...)}
	if init != nil {
		init(s)
	}
	f.byKey[key] = len(f.series)
	f.series = append(f.series, s)
	return s
}

// --- counters ---

// CounterVec is a counter family; With picks one series.
type CounterVec struct{ f *family }

// Counter is one monotonically increasing series.
type Counter struct{ s *series }

// NewCounterVec registers a counter family. By convention its name ends in
// _total.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	return &CounterVec{r.register(name, help, kindCounter, labels, nil)}
}

// NewCounter registers a counter without labels.
func (r *Registry) NewCounter(name, help string) *Counter {
	return r.NewCounterVec(name, help).With()
}

// With returns the series with these label values (one per label, in the
// order registered), creating it at zero. Keep the result.
func (v *CounterVec) With(labelValues ...string) *Counter {
	return &Counter{v.f.get(labelValues, nil)}
}

// WithFunc makes the series with these label values read fn at each
// scrape, for a total kept elsewhere (pipeline.Stats). fn must be
// monotonic and safe to call concurrently.
func (v *CounterVec) WithFunc(fn func() float64, labelValues ...string) {
	v.f.get(labelValues, func(s *series) { s.fn = fn })
}

// Inc adds one. A nil Counter counts nothing, so a component built
// without metrics (tests, one-shot commands) needs no branch of its own.
func (c *Counter) Inc() {
	if c != nil {
		c.s.u.Add(1)
	}
}

// Add adds n. A nil Counter counts nothing.
func (c *Counter) Add(n uint64) {
	if c != nil {
		c.s.u.Add(n)
	}
}

// Value returns the current count (0 for a nil Counter).
func (c *Counter) Value() uint64 {
	if c == nil {
		return 0
	}
	return c.s.u.Load()
}

// --- gauges ---

// GaugeVec is a gauge family; With picks one series.
type GaugeVec struct{ f *family }

// Gauge is one series that goes up and down.
type Gauge struct{ s *series }

// NewGaugeVec registers a gauge family.
func (r *Registry) NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	return &GaugeVec{r.register(name, help, kindGauge, labels, nil)}
}

// NewGauge registers a gauge without labels.
func (r *Registry) NewGauge(name, help string) *Gauge { return r.NewGaugeVec(name, help).With() }

// NewGaugeFunc registers a gauge without labels whose value is read from fn
// at each scrape.
func (r *Registry) NewGaugeFunc(name, help string, fn func() float64) {
	r.NewGaugeVec(name, help).WithFunc(fn)
}

// With returns the series with these label values, creating it at zero.
func (v *GaugeVec) With(labelValues ...string) *Gauge { return &Gauge{v.f.get(labelValues, nil)} }

// WithFunc makes the series with these label values read fn at each scrape.
func (v *GaugeVec) WithFunc(fn func() float64, labelValues ...string) {
	v.f.get(labelValues, func(s *series) { s.fn = fn })
}

// Collect sets a function that emits, at each scrape, series whose label
// values are not known in advance (per-partition lag: the partitions an
// instance owns change at every rebalance). Emitted series come after the
// ones made with With. emit must be called only during fn.
func (v *GaugeVec) Collect(fn func(emit func(value float64, labelValues ...string))) {
	v.f.mu.Lock()
	v.f.collect = fn
	v.f.mu.Unlock()
}

// Set sets the value.
func (g *Gauge) Set(v float64) { g.s.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) {
	for {
		old := g.s.bits.Load()
		if g.s.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Value returns the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.s.bits.Load()) }

// --- histograms ---

// HistogramVec is a histogram family; With picks one series.
type HistogramVec struct{ f *family }

// Histogram counts observations in buckets. Observe is lock-free: a bucket
// counter, the count and the sum are updated separately, so a scrape racing
// an observation may see the count one ahead of the sum. Prometheus's own
// client accepts the same; rates over minutes are unaffected.
type Histogram struct {
	upper  []float64
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
}

// DefaultSeconds are latency buckets from 1ms to 60s, for batches and
// flushes.
var DefaultSeconds = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// NewHistogramVec registers a histogram family with the given bucket upper
// bounds (ascending; +Inf is implied).
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	if len(buckets) == 0 {
		panic("BUG: histogram " + name + " without buckets")
	}
	for i := range buckets {
		if math.IsNaN(buckets[i]) || math.IsInf(buckets[i], 0) || (i > 0 && buckets[i] <= buckets[i-1]) {
			panic(fmt.Sprintf("BUG: histogram %s: buckets %v are not finite and strictly ascending", name, buckets))
		}
	}
	return &HistogramVec{r.register(name, help, kindHistogram, labels, append([]float64(nil), buckets...))}
}

// NewHistogram registers a histogram without labels.
func (r *Registry) NewHistogram(name, help string, buckets []float64) *Histogram {
	return r.NewHistogramVec(name, help, buckets).With()
}

// With returns the series with these label values, creating it empty.
func (v *HistogramVec) With(labelValues ...string) *Histogram {
	return v.f.get(labelValues, func(s *series) {
		s.h = &Histogram{upper: v.f.buckets, counts: make([]atomic.Uint64, len(v.f.buckets)+1)}
	}).h
}

// Observe records one value. A nil Histogram records nothing.
func (h *Histogram) Observe(v float64) {
	if h == nil {
		return
	}
	// A linear scan beats a binary search for the dozen buckets used here.
	i := 0
	for i < len(h.upper) && v > h.upper[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// ObserveSeconds records a duration given in nanoseconds (time.Duration)
// as seconds.
func (h *Histogram) ObserveSeconds(nanos int64) { h.Observe(float64(nanos) / 1e9) }

// Count returns the number of observations (0 for a nil Histogram).
func (h *Histogram) Count() uint64 {
	if h == nil {
		return 0
	}
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// --- exposition ---

// WriteText writes every family in the text exposition format, families
// sorted by name and series by label values.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := make([]*family, 0, len(r.fams))
	for _, f := range r.fams {
		fams = append(fams, f)
	}
	r.mu.Unlock()
	sort.Slice(fams, func(i, j int) bool { return fams[i].name < fams[j].name })
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		f.write(bw)
	}
	return bw.Flush()
}

func (f *family) write(w *bufio.Writer) {
	f.mu.RLock()
	ss := append([]*series(nil), f.series...)
	collect := f.collect
	f.mu.RUnlock()
	sort.SliceStable(ss, func(i, j int) bool { return lessValues(ss[i].values, ss[j].values) })
	type point struct {
		values []string
		v      float64
	}
	var extra []point
	if collect != nil {
		collect(func(v float64, values ...string) {
			if len(values) != len(f.labels) {
				panic(fmt.Sprintf("BUG: metric %s has labels %v; collector emitted %q", f.name, f.labels, values))
			}
			extra = append(extra, point{append([]string(nil), values...), v})
		})
		sort.SliceStable(extra, func(i, j int) bool { return lessValues(extra[i].values, extra[j].values) })
	}
	if len(ss) == 0 && len(extra) == 0 {
		return // a family with no series yet says nothing
	}
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, kindNames[f.kind])
	for _, s := range ss {
		switch {
		case f.kind == kindHistogram:
			f.writeHistogram(w, s)
		case s.fn != nil:
			f.writeSample(w, f.name, s.values, "", s.fn())
		case f.kind == kindCounter:
			f.writeSample(w, f.name, s.values, "", float64(s.u.Load()))
		default:
			f.writeSample(w, f.name, s.values, "", math.Float64frombits(s.bits.Load()))
		}
	}
	for _, p := range extra {
		f.writeSample(w, f.name, p.values, "", p.v)
	}
}

func (f *family) writeHistogram(w *bufio.Writer, s *series) {
	h := s.h
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		le := "+Inf"
		if i < len(h.upper) {
			le = formatFloat(h.upper[i])
		}
		f.writeSample(w, f.name+"_bucket", s.values, le, float64(cum))
	}
	f.writeSample(w, f.name+"_sum", s.values, "", math.Float64frombits(h.sum.Load()))
	f.writeSample(w, f.name+"_count", s.values, "", float64(cum))
}

// writeSample writes `name{labels} value`; le, when not empty, is added
// as the last label.
func (f *family) writeSample(w *bufio.Writer, name string, values []string, le string, v float64) {
	w.WriteString(name)
	if len(values) > 0 || le != "" {
		w.WriteByte('{')
		for i, l := range f.labels {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(l)
			w.WriteString(`="`)
			writeLabelValue(w, values[i])
			w.WriteByte('"')
		}
		if le != "" {
			if len(values) > 0 {
				w.WriteByte(',')
			}
			w.WriteString(`le="`)
			w.WriteString(le)
			w.WriteByte('"')
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

func lessValues(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			// Numeric label values (partitions) sort as numbers.
			x, errx := strconv.ParseInt(a[i], 10, 64)
			y, erry := strconv.ParseInt(b[i], 10, 64)
			if errx == nil && erry == nil {
				return x < y
			}
			return a[i] < b[i]
		}
	}
	return false
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		// Whole numbers (counts, Unix times) in full, not 1.771632e+09.
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// escapeHelp escapes a HELP text: backslash and newline.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// writeLabelValue escapes a label value: backslash, double quote, newline.
func writeLabelValue(w *bufio.Writer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			w.WriteString(`\\`)
		case '"':
			w.WriteString(`\"`)
		case '\n':
			w.WriteString(`\n`)
		default:
			w.WriteByte(c)
		}
	}
}

// Handler serves the registry at GET (and HEAD) requests.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Cache-Control", "no-store")
		if req.Method == http.MethodHead {
			return
		}
		_ = r.WriteText(w) // a failed write is the scraper gone; nothing to tell it
	})
}
