package svgchart

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

// element is one parsed SVG element with its attributes and text.
type element struct {
	name  string
	attrs map[string]string
	text  string
}

// parse decodes doc as XML (failing the test when it is not well-formed)
// and returns its elements in order.
func parse(t *testing.T, doc []byte) []element {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var out []element
	var stack []int
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			e := element{name: tk.Name.Local, attrs: map[string]string{}}
			for _, a := range tk.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			out = append(out, e)
			stack = append(stack, len(out)-1)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				out[stack[len(stack)-1]].text += string(tk)
			}
		}
	}
	if len(out) == 0 || out[0].name != "svg" {
		t.Fatalf("root is not <svg>:\n%s", doc)
	}
	return out
}

func num(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("attribute %q is not a number", s)
	}
	return v
}

func write(t *testing.T, c *Chart) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := c.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestChartWellFormedPointsInsideLabels(t *testing.T) {
	for _, c := range []*Chart{
		{
			Title: "Growth by customers <with balances> & more", XLabel: "customers", XLog: true,
			YLeft: "events/s", YRight: "peak RSS (MiB)",
			Series: []Series{
				{Name: "events/s", Points: []Point{{1000, 27000, ""}, {10000, 26000, ""}, {100000, 24000, ""}, {1000000, 19000, ""}}},
				{Name: "peak RSS", Axis: AxisRight, Points: []Point{{1000, 120, ""}, {10000, 140, ""}, {100000, 260, ""}, {1000000, 498, ""}}},
			},
		},
		{
			Title: "partitions", XLabel: "partitions", YLeft: "CPU ns per event",
			Series: []Series{{Name: "CPU", Points: []Point{{1, 51000, ""}, {2, 48000, ""}, {12, 60000, ""}}}},
		},
		{
			Title: "one point", XLabel: "models", XLog: true, YLeft: "events/s",
			Series: []Series{{Name: "events/s", Points: []Point{{2005, 0, "all (2005)"}}}},
		},
	} {
		doc := write(t, c)
		els := parse(t, doc)
		x0, y0, x1, y1 := c.PlotArea()
		var circles, polylines int
		var texts []string
		for _, e := range els {
			switch e.name {
			case "circle":
				circles++
				cx, cy := num(t, e.attrs["cx"]), num(t, e.attrs["cy"])
				if cx < x0 || cx > x1 || cy < y0 || cy > y1 {
					t.Errorf("%s: point (%v, %v) outside the plot area (%v,%v)-(%v,%v)", c.Title, cx, cy, x0, y0, x1, y1)
				}
			case "polyline":
				polylines++
				for _, p := range strings.Fields(e.attrs["points"]) {
					xy := strings.Split(p, ",")
					x, y := num(t, xy[0]), num(t, xy[1])
					if x < x0 || x > x1 || y < y0 || y > y1 {
						t.Errorf("%s: polyline vertex (%v, %v) outside the plot area", c.Title, x, y)
					}
				}
			case "text":
				texts = append(texts, e.text)
			}
		}
		want := 0
		for _, s := range c.Series {
			want += len(s.Points)
		}
		if circles != want || polylines != len(c.Series) {
			t.Errorf("%s: %d markers and %d lines, want %d and %d", c.Title, circles, polylines, want, len(c.Series))
		}
		all := strings.Join(texts, "\n")
		for _, l := range []string{c.Title, c.XLabel, c.YLeft} {
			if !strings.Contains(all, l) {
				t.Errorf("%s: label %q missing from the texts:\n%s", c.Title, l, all)
			}
		}
		for _, s := range c.Series {
			if !strings.Contains(all, s.Name) {
				t.Errorf("%s: legend %q missing", c.Title, s.Name)
			}
			for _, p := range s.Points {
				lbl := p.Label
				if lbl == "" {
					lbl = Number(p.X)
				}
				if !strings.Contains(all, lbl) {
					t.Errorf("%s: x tick %q missing", c.Title, lbl)
				}
			}
		}
		if c.YRight != "" && !strings.Contains(all, c.YRight) {
			t.Errorf("%s: right axis label %q missing", c.Title, c.YRight)
		}
	}
}

// TestChartScales checks points land where their values say: on a log x
// axis 10k sits halfway between 1k and 100k; higher y is higher up (smaller
// pixel y); and each y axis scales its own series.
func TestChartScales(t *testing.T) {
	c := &Chart{Title: "t", XLabel: "x", XLog: true, YLeft: "a", YRight: "b", Series: []Series{
		{Name: "a", Points: []Point{{1000, 10, ""}, {10000, 20, ""}, {100000, 30, ""}}},
		{Name: "b", Axis: AxisRight, Points: []Point{{1000, 3000, ""}, {10000, 2000, ""}, {100000, 1000, ""}}},
	}}
	var cx, cy []float64
	for _, e := range parse(t, write(t, c)) {
		if e.name == "circle" {
			cx = append(cx, num(t, e.attrs["cx"]))
			cy = append(cy, num(t, e.attrs["cy"]))
		}
	}
	if len(cx) != 6 {
		t.Fatalf("%d markers, want 6", len(cx))
	}
	if mid := (cx[0] + cx[2]) / 2; cx[1] < mid-0.2 || cx[1] > mid+0.2 {
		t.Errorf("log x: 10k at %v, want halfway between %v and %v", cx[1], cx[0], cx[2])
	}
	if !(cy[0] > cy[1] && cy[1] > cy[2]) {
		t.Errorf("left series rises but its pixel y is %v", cy[:3])
	}
	if !(cy[3] < cy[4] && cy[4] < cy[5]) {
		t.Errorf("right series falls but its pixel y is %v", cy[3:])
	}
	// 30 of a 0..30 axis and 3000 of a 0..3000 axis are both at the top.
	if cy[2] != cy[3] {
		t.Errorf("the maxima of two axes are at %v and %v; each axis should scale its own series", cy[2], cy[3])
	}
}

func TestChartRefusesBadInput(t *testing.T) {
	for name, c := range map[string]*Chart{
		"no series":      {Title: "t"},
		"empty series":   {Title: "t", Series: []Series{{Name: "a"}}},
		"log of zero":    {Title: "t", XLog: true, Series: []Series{{Name: "a", Points: []Point{{0, 1, ""}}}}},
		"not finite":     {Title: "t", Series: []Series{{Name: "a", Points: []Point{{1, math.Inf(1), ""}}}}},
		"too small":      {Title: "t", Width: 100, Height: 100, Series: []Series{{Name: "a", Points: []Point{{1, 1, ""}}}}},
		"axis not known": {Title: "t", Series: []Series{{Name: "a", Axis: 7, Points: []Point{{1, 1, ""}}}}},
	} {
		if err := c.Write(io.Discard); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestNumber(t *testing.T) {
	for v, want := range map[float64]string{1000: "1k", 1e6: "1M", 2.5e6: "2.5M", 100000: "100k", 1500: "1500", 12: "12", 0.25: "0.25", 512: "512"} {
		if got := Number(v); got != want {
			t.Errorf("Number(%v) = %q, want %q", v, got, want)
		}
	}
}
