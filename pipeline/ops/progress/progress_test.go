package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestLine(t *testing.T) {
	m := &Meter{cfg: Config{Label: "loadgen", Unit: "messages acknowledged", RateUnit: "msg/s", Total: 1_000_000,
		Extra: func(time.Duration) string { return "1.5 MB/s" }}}
	if got, want := m.Line(250_000, 10*time.Second, false), "loadgen: 250,000/1,000,000 messages acknowledged (25.0%), 25,000 msg/s, 1.5 MB/s, ETA 30s"; got != want {
		t.Errorf("line\n got %q\nwant %q", got, want)
	}
	if got, want := m.Line(1_000_000, 40*time.Second, true), "loadgen: 1,000,000/1,000,000 messages acknowledged (100.0%), 25,000 msg/s, 1.5 MB/s, 40s"; got != want {
		t.Errorf("final line\n got %q\nwant %q", got, want)
	}
	u := &Meter{cfg: Config{Label: "replay", Unit: "records", RateUnit: "records/s"}}
	if got, want := u.Line(1234, 2*time.Second, false), "replay: 1,234 records, 617 records/s"; got != want {
		t.Errorf("unknown total\n got %q\nwant %q", got, want)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567"} {
		if got := Group(n); got != want {
			t.Errorf("Group(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPlainAndTerminal(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var out syncBuf
		m := Start(Config{Out: &out, Label: "migrate", Unit: "statements", Total: 10, Interval: 5 * time.Millisecond, Terminal: &tty})
		for i := 0; i < 10; i++ {
			m.Add(1)
			time.Sleep(3 * time.Millisecond)
		}
		m.Done()
		s := out.String()
		m.Done()
		if out.String() != s {
			t.Errorf("tty %v: a second Done wrote more", tty)
		}
		lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
		last := lines[len(lines)-1]
		if !strings.HasSuffix(s, "\n") || !strings.Contains(last, "migrate: 10/10 statements (100.0%)") || strings.Contains(last, "ETA") {
			t.Fatalf("tty %v: output %q does not end with the final line", tty, s)
		}
		if redraw := strings.Contains(s, "\r\x1b[K"); redraw != tty {
			t.Errorf("tty %v: redrawn in place: %v; want only on a terminal\n%q", tty, redraw, s)
		}
		if !tty && strings.Count(s, "\n") < 2 {
			t.Errorf("plain output has no intermediate lines: %q", s)
		}
	}
	Start(Config{}).Done() // no output: nothing happens
}
