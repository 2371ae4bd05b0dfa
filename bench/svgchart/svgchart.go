// Package svgchart writes small line charts as standalone SVG markup: an x
// axis (linear or logarithmic), one or two y axes (left and right, each with
// its own scale and unit), ticks, labels, a legend, and one polyline with a
// marker per point for each series. The benchmark reports embed the files
// by relative path, so they render on any Markdown viewer without scripts,
// fonts from a CDN or an external plotting tool.
package svgchart

import (
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// Axis says which y axis a series is drawn against.
type Axis uint8

const (
	AxisLeft Axis = iota
	AxisRight
)

// Point is one measurement. Label, when not empty, is printed at the x tick
// instead of the number (e.g. "all (2005)").
type Point struct {
	X, Y  float64
	Label string
}

// Series is one line.
type Series struct {
	Name   string
	Axis   Axis
	Points []Point
}

// Chart is one line chart.
type Chart struct {
	Title  string
	XLabel string
	// XLog draws x on a logarithmic scale (every X must be positive).
	XLog bool
	// YLeft and YRight label the two y axes; YRight is only drawn when a
	// series uses it.
	YLeft, YRight string
	Series        []Series
	// Width and Height in pixels. Zero: 720 x 400.
	Width, Height int
}

// Plot area margins, in pixels: room for tick labels and axis titles.
const (
	marginLeft   = 80
	marginRight  = 80
	marginTop    = 60
	marginBottom = 64
)

var colors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}

// PlotArea returns the rectangle points are drawn in: x0, y0 (top left),
// x1, y1 (bottom right).
func (c *Chart) PlotArea() (x0, y0, x1, y1 float64) {
	w, h := c.size()
	return marginLeft, marginTop, float64(w - marginRight), float64(h - marginBottom)
}

func (c *Chart) size() (int, int) {
	w, h := c.Width, c.Height
	if w == 0 {
		w = 720
	}
	if h == 0 {
		h = 400
	}
	return w, h
}

// Validate reports what would make the chart meaningless.
func (c *Chart) Validate() error {
	var errs []error
	w, h := c.size()
	if w < marginLeft+marginRight+40 || h < marginTop+marginBottom+40 {
		errs = append(errs, fmt.Errorf("size %dx%d: expected at least %dx%d", w, h, marginLeft+marginRight+40, marginTop+marginBottom+40))
	}
	if len(c.Series) == 0 {
		errs = append(errs, errors.New("series: expected at least one"))
	}
	for i, s := range c.Series {
		if len(s.Points) == 0 {
			errs = append(errs, fmt.Errorf("series %d (%q): expected at least one point", i, s.Name))
		}
		if s.Axis > AxisRight {
			errs = append(errs, fmt.Errorf("series %d (%q): axis %d: expected AxisLeft or AxisRight", i, s.Name, s.Axis))
		}
		for j, p := range s.Points {
			if math.IsNaN(p.X) || math.IsInf(p.X, 0) || math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
				errs = append(errs, fmt.Errorf("series %q point %d: (%v, %v): expected finite numbers", s.Name, j, p.X, p.Y))
			}
			if c.XLog && p.X <= 0 {
				errs = append(errs, fmt.Errorf("series %q point %d: x %v: expected a positive x on a logarithmic axis", s.Name, j, p.X))
			}
		}
	}
	return errors.Join(errs...)
}

// scale maps data values to pixels.
type scale struct {
	lo, hi   float64 // data range (logs of it when log)
	p0, p1   float64 // pixel range
	log      bool
	ticks    []float64
	tickText []string
}

func (s *scale) at(v float64) float64 {
	if s.log {
		v = math.Log10(v)
	}
	if s.hi == s.lo {
		return (s.p0 + s.p1) / 2
	}
	return s.p0 + (v-s.lo)/(s.hi-s.lo)*(s.p1-s.p0)
}

// niceStep returns a step of 1, 2 or 5 times a power of ten that cuts span
// into about n parts.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	if raw <= 0 {
		return 1
	}
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= raw {
			return m * pow
		}
	}
	return 10 * pow
}

// linearY is a y scale from 0 (or the lowest value when negative) to a
// nice maximum above the highest value.
func linearY(vals []float64, p0, p1 float64) scale {
	lo, hi := 0.0, 0.0
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi == lo {
		hi = lo + 1
	}
	step := niceStep(hi-lo, 5)
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	s := scale{lo: lo, hi: hi, p0: p0, p1: p1}
	for v := lo; v <= hi+step/2; v += step {
		s.ticks = append(s.ticks, v)
		s.tickText = append(s.tickText, Number(v))
	}
	return s
}

// xScale spans the points' x values; ticks are at the points themselves
// (a benchmark's series has few points, each worth labelling).
func (c *Chart) xScale(x0, x1 float64) scale {
	var xs []float64
	labels := map[float64]string{}
	for _, s := range c.Series {
		for _, p := range s.Points {
			if _, ok := labels[p.X]; !ok {
				xs = append(xs, p.X)
				labels[p.X] = p.Label
			} else if p.Label != "" {
				labels[p.X] = p.Label
			}
		}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	s := scale{p0: x0, p1: x1, log: c.XLog}
	if c.XLog {
		lo, hi = math.Log10(lo), math.Log10(hi)
	}
	// A little room on both sides, so end markers do not sit on the axes.
	pad := (hi - lo) * 0.04
	if pad == 0 {
		pad = 1
		if c.XLog {
			pad = 0.5
		}
	}
	s.lo, s.hi = lo-pad, hi+pad
	sortFloats(xs)
	for _, x := range xs {
		s.ticks = append(s.ticks, x)
		t := labels[x]
		if t == "" {
			t = Number(x)
		}
		s.tickText = append(s.tickText, t)
	}
	return s
}

func sortFloats(a []float64) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// Number prints v briefly: 1k, 2.5M, 0.25, 12.
func Number(v float64) string {
	a := math.Abs(v)
	f := func(x float64, suffix string) string {
		return strconv.FormatFloat(math.Round(x*100)/100, 'f', -1, 64) + suffix
	}
	switch {
	case a >= 1e9:
		return f(v/1e9, "G")
	case a >= 1e6:
		return f(v/1e6, "M")
	case a >= 1e4:
		return f(v/1e3, "k")
	case a >= 1000:
		if math.Mod(v, 1000) == 0 {
			return f(v/1e3, "k")
		}
		return f(v, "")
	}
	return f(v, "")
}

// Write writes the chart as a standalone SVG document.
func (c *Chart) Write(w io.Writer) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("chart %q: %w", c.Title, err)
	}
	width, height := c.size()
	x0, y0, x1, y1 := c.PlotArea()
	xs := c.xScale(x0, x1)
	var left, right []float64
	hasRight := false
	for _, s := range c.Series {
		for _, p := range s.Points {
			if s.Axis == AxisRight {
				right = append(right, p.Y)
				hasRight = true
			} else {
				left = append(left, p.Y)
			}
		}
	}
	ys := [2]scale{linearY(left, y1, y0), linearY(right, y1, y0)}

	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text class="title" x="%g" y="24" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", float64(width)/2, esc(c.Title))

	// Grid and y ticks of the left axis (the grid follows the left axis).
	if len(left) > 0 {
		for i, v := range ys[AxisLeft].ticks {
			y := ys[AxisLeft].at(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", x0, y, x1, y)
			fmt.Fprintf(&b, `<text class="ytick" x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", x0-6, y, esc(ys[AxisLeft].tickText[i]))
		}
		fmt.Fprintf(&b, `<text class="ylabel" x="18" y="%.1f" text-anchor="middle" transform="rotate(-90 18 %.1f)" fill="%s">%s</text>`+"\n", (y0+y1)/2, (y0+y1)/2, colors[0], esc(c.YLeft))
	}
	if hasRight {
		for i, v := range ys[AxisRight].ticks {
			y := ys[AxisRight].at(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", x1, y, x1+4, y)
			fmt.Fprintf(&b, `<text class="ytick" x="%.1f" y="%.1f" text-anchor="start" dominant-baseline="middle">%s</text>`+"\n", x1+6, y, esc(ys[AxisRight].tickText[i]))
		}
		xr := float64(width) - 18
		fmt.Fprintf(&b, `<text class="ylabel" x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(90 %.1f %.1f)" fill="%s">%s</text>`+"\n", xr, (y0+y1)/2, xr, (y0+y1)/2, colors[1], esc(c.YRight))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", x1, y0, x1, y1)
	}
	// Axes.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", x0, y0, x0, y1)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", x0, y1, x1, y1)
	for i, v := range xs.ticks {
		x := xs.at(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", x, y1, x, y1+4)
		fmt.Fprintf(&b, `<text class="xtick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, y1+18, esc(xs.tickText[i]))
	}
	fmt.Fprintf(&b, `<text class="xlabel" x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, height-14, esc(c.XLabel))

	// Series: a polyline and a marker per point, then the legend.
	for i, s := range c.Series {
		col := colors[i%len(colors)]
		if len(c.Series) == 2 && hasRight {
			col = colors[s.Axis] // the axis label has the series' colour
		}
		ys := &ys[s.Axis]
		pts := make([]string, len(s.Points))
		for j, p := range s.Points {
			pts[j] = fmt.Sprintf("%.1f,%.1f", xs.at(p.X), ys.at(p.Y))
		}
		dash := ""
		if s.Axis == AxisRight {
			dash = ` stroke-dasharray="6 3"`
		}
		fmt.Fprintf(&b, `<polyline class="series" fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", col, dash, strings.Join(pts, " "))
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle class="point" cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s at %s</title></circle>`+"\n",
				xs.at(p.X), ys.at(p.Y), col, esc(s.Name), Number(p.Y), esc(xs.tickText[indexOf(xs.ticks, p.X)]))
		}
		lx, ly := x0+10+float64(i)*220, y0-16
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, ly, lx+24, ly, col, dash)
		fmt.Fprintf(&b, `<text class="legend" x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", lx+30, ly, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func indexOf(a []float64, v float64) int {
	for i, x := range a {
		if x == v {
			return i
		}
	}
	return 0
}
