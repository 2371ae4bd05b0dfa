// Package progress shows how far a long command has got: done of total,
// the rate and an ETA. On a terminal one line is redrawn in place a few
// times a second; anywhere else (a log file, CI) a plain line is written
// every few seconds, so the output stays readable and small.
//
// Commands that run for minutes (loadgen, prices sync over large lists,
// migrate, replay) use it instead of logging per item.
package progress

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one meter.
type Config struct {
	// Out receives the reports. Nil makes a meter that reports nothing.
	Out io.Writer
	// Label starts every line, e.g. "loadgen".
	Label string
	// Unit names what is counted, e.g. "messages acknowledged".
	Unit string
	// RateUnit names the rate, e.g. "msg/s". Default "/s" after Unit's
	// first word.
	RateUnit string
	// Total is the count expected; 0 when unknown (no percentage, no ETA).
	Total int64
	// Read, when set, is the count, read at each report (an atomic kept by
	// the caller); otherwise Add and Set keep it.
	Read func() int64
	// Extra, when set, adds text after the rate (e.g. "12.5 MB/s"); it gets
	// the time since Start.
	Extra func(elapsed time.Duration) string
	// Interval between reports. Default 250ms on a terminal, 5s otherwise.
	Interval time.Duration
	// Start is when the work began. Default: when the meter starts.
	Start time.Time
	// Terminal overrides terminal detection (tests); nil detects.
	Terminal *bool
}

// Meter reports progress until Done.
type Meter struct {
	cfg  Config
	tty  bool
	n    atomic.Int64
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Start begins reporting.
func Start(cfg Config) *Meter {
	m := &Meter{cfg: cfg, done: make(chan struct{})}
	if cfg.Out == nil {
		return m
	}
	if m.cfg.Start.IsZero() {
		m.cfg.Start = time.Now()
	}
	if cfg.Terminal != nil {
		m.tty = *cfg.Terminal
	} else {
		m.tty = IsTerminal(cfg.Out)
	}
	if m.cfg.Interval <= 0 {
		m.cfg.Interval = 5 * time.Second
		if m.tty {
			m.cfg.Interval = 250 * time.Millisecond
		}
	}
	if m.cfg.RateUnit == "" {
		w, _, _ := strings.Cut(m.cfg.Unit, " ")
		m.cfg.RateUnit = w + "/s"
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(m.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
				m.report(false)
			}
		}
	}()
	return m
}

// Add counts n more done.
func (m *Meter) Add(n int64) { m.n.Add(n) }

// Set sets the count done.
func (m *Meter) Set(n int64) { m.n.Store(n) }

// Done stops the reports and writes the final line, with the time taken.
// It may be called more than once.
func (m *Meter) Done() {
	if m.cfg.Out == nil {
		return
	}
	m.once.Do(func() {
		close(m.done)
		m.wg.Wait()
		m.report(true)
	})
}

func (m *Meter) count() int64 {
	if m.cfg.Read != nil {
		return m.cfg.Read()
	}
	return m.n.Load()
}

// Line formats a report of n done after elapsed; final reports the time
// taken instead of the ETA.
func (m *Meter) Line(n int64, elapsed time.Duration, final bool) string {
	c := &m.cfg
	var b strings.Builder
	if c.Label != "" {
		b.WriteString(c.Label)
		b.WriteString(": ")
	}
	b.WriteString(Group(n))
	if c.Total > 0 {
		b.WriteString("/")
		b.WriteString(Group(c.Total))
	}
	b.WriteString(" ")
	b.WriteString(c.Unit)
	if c.Total > 0 {
		fmt.Fprintf(&b, " (%.1f%%)", 100*float64(n)/float64(c.Total))
	}
	rate := float64(n) / max(elapsed.Seconds(), 1e-9)
	b.WriteString(", ")
	b.WriteString(Group(int64(rate)))
	b.WriteString(" ")
	b.WriteString(c.RateUnit)
	if c.Extra != nil {
		if x := c.Extra(elapsed); x != "" {
			b.WriteString(", ")
			b.WriteString(x)
		}
	}
	switch {
	case final:
		b.WriteString(", ")
		b.WriteString(elapsed.Round(time.Millisecond).String())
	case c.Total > 0 && n < c.Total && rate > 0:
		b.WriteString(", ETA ")
		b.WriteString(time.Duration(float64(c.Total-n) / rate * float64(time.Second)).Round(time.Second).String())
	}
	return b.String()
}

func (m *Meter) report(final bool) {
	line := m.Line(m.count(), time.Since(m.cfg.Start), final)
	if !m.tty {
		fmt.Fprintln(m.cfg.Out, line)
		return
	}
	// Carriage return and erase-line redraw the same line.
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(m.cfg.Out, "\r\x1b[K%s%s", line, end)
}

// IsTerminal reports whether w is a terminal (a character device).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Group writes n with thousands separators: 1,234,567.
func Group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
