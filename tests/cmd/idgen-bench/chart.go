package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Chart geometry (px).
const (
	svgWidth   = 1000
	labelRight = 350 // right edge of the row labels
	barLeft    = 360
	barRight   = 800 // value labels follow the bars up to svgWidth
	rowHeight  = 26
	pctRow     = 3*9 + 12 // three percentile bars and a gap
	panelGap   = 40
)

// svgWriter writes SVG elements; coordinates in px.
type svgWriter struct{ w io.Writer }

func (s svgWriter) rect(x, y, w, h float64, fill string) {
	fmt.Fprintf(s.w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, max(w, 0.5), h, fill)
}

func (s svgWriter) text(x, y float64, anchor, class, t string) {
	fmt.Fprintf(s.w, `<text x="%.1f" y="%.1f" text-anchor="%s" class="%s">%s</text>`+"\n", x, y, anchor, class, html.EscapeString(t))
}

func (s svgWriter) line(x1, y1, x2, y2 float64, class string) {
	fmt.Fprintf(s.w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="%s"/>`+"\n", x1, y1, x2, y2, class)
}

// goalLine draws a dashed target line over rows from top to bottom.
func (s svgWriter) goalLine(x, top, bottom float64, label string, moon bool) {
	cls, tcls, anchor, dx := "goal", "goaltext", "middle", 0.0
	if moon {
		cls, tcls, anchor, dx = "moon", "moontext", "start", 4
	}
	s.line(x, top-8, x, bottom, cls)
	s.text(x+dx, top-10, anchor, tcls, label)
}

// barColor tells the baselines from idgen at a glance.
func barColor(inst string) string {
	switch inst {
	case "ceiling":
		return "#8c8c8c"
	case "naive":
		return "#d62728"
	default:
		return "#1f77b4"
	}
}

var pctColors = [3]string{"#9ecae1", "#3182bd", "#08306b"}

// logAxis maps [lo, hi] seconds (or any positive unit) to the bar area on a
// log scale, lo and hi widened to whole decades.
type logAxis struct{ lo, hi float64 }

func newLogAxis(vals []float64, must float64) logAxis {
	lo, hi := math.Inf(1), must
	for _, v := range vals {
		if v > 0 {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		lo = must / 100
	}
	lo = min(lo, must)
	return logAxis{math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi*1.01)))}
}

func (a logAxis) x(v float64) float64 {
	v = max(v, a.lo)
	return barLeft + (barRight-barLeft)*(math.Log10(v)-math.Log10(a.lo))/(math.Log10(a.hi)-math.Log10(a.lo))
}

func (a logAxis) grid(s svgWriter, top, bottom float64, label func(float64) string) {
	for d := a.lo; d <= a.hi*1.0001; d *= 10 {
		s.line(a.x(d), top-4, a.x(d), bottom, "grid")
		s.text(a.x(d), bottom+12, "middle", "small", label(d))
	}
}

// writeSVG draws the panels that have data: requests/s as a ratio to the
// ceiling, latency percentiles (log scale), batch IDs/s, and in-process
// ns/ID (log scale), each with its target.
func writeSVG(w io.Writer, r *results) {
	var body strings.Builder
	s := svgWriter{&body}
	sub := fmt.Sprintf("%s, %d cores, %s, %s; median of %d rounds, wrk -c%d", r.Machine.CPU, r.Machine.Cores, r.Machine.GoVersion, r.Started.Format("2006-01-02"), r.Rounds, r.Connections)
	s.text(10, 20, "start", "title", "idgen bench")
	s.text(10, 38, "start", "small", sub)
	y := 50.0
	single, batch := r.httpSplit()
	if len(single) > 0 {
		y = ratioPanel(s, r, single, y) + panelGap
		lat := single
		if !r.LatencyReused {
			for _, h := range r.Latency {
				h.Name = fmt.Sprintf("%s · %d conns", h.Name, h.Conns)
				lat = append(lat, h)
			}
		}
		y = latencyPanel(s, r, lat, y) + panelGap
	}
	if len(batch) > 0 {
		y = batchPanel(s, batch, y) + panelGap
	}
	if len(r.InProcess) > 0 {
		y = inProcessPanel(s, r, y) + panelGap
	}
	height := y
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" font-family="Helvetica, Arial, sans-serif">`+"\n", svgWidth, height, svgWidth, height)
	fmt.Fprint(w, `<style>
text { font-size: 12px; fill: #222; }
.title { font-size: 15px; font-weight: bold; }
.small { font-size: 10px; fill: #555; }
.grid { stroke: #ddd; stroke-width: 1; }
.goal { stroke: #d62728; stroke-width: 1.5; stroke-dasharray: 5,3; }
.moon { stroke: #ff7f0e; stroke-width: 1.5; stroke-dasharray: 2,3; }
.goaltext { font-size: 10px; fill: #d62728; }
.moontext { font-size: 10px; fill: #ff7f0e; }
</style>
<rect width="100%" height="100%" fill="white"/>
`)
	fmt.Fprint(w, body.String())
	fmt.Fprintln(w, "</svg>")
}

// ratioPanel: requests/s of one-ID requests as a ratio to the ceiling.
func ratioPanel(s svgWriter, r *results, rows []httpResult, y float64) float64 {
	ceil, hasCeil := r.http("ceiling")
	ratio := func(h httpResult) float64 {
		if !hasCeil {
			return 0
		}
		return h.ratioTo(ceil)
	}
	s.text(10, y+20, "start", "title", "Requests/s, ratio to the ceiling (one ID per request)")
	top := y + 40
	bottom := top + float64(len(rows))*rowHeight
	scale := 1.0
	for _, h := range rows {
		scale = max(scale, ratio(h))
	}
	x := func(v float64) float64 { return barLeft + (barRight-barLeft)*v/scale }
	for _, v := range []float64{0, 0.25, 0.5, 0.75, 1} {
		s.line(x(v), top-4, x(v), bottom, "grid")
		s.text(x(v), bottom+12, "middle", "small", fmt.Sprintf("%.2g×", v))
	}
	for i, h := range rows {
		ry := top + float64(i)*rowHeight
		s.text(labelRight, ry+15, "end", "", h.Name)
		s.rect(barLeft, ry+3, x(ratio(h))-barLeft, rowHeight-8, barColor(h.Inst))
		s.text(x(ratio(h))+5, ry+15, "start", "", fmt.Sprintf("%.2f×  %s req/s", ratio(h), fmtNum(h.RPS)))
	}
	s.goalLine(x(0.5), top, bottom, "target 0.5×", false)
	s.goalLine(x(0.7), top, bottom, "moonshot 0.7×", true)
	return bottom + 20
}

// latencyPanel: p50, p99 and p99.9 per target on a log scale; rows at
// another connection count than r.Connections (the runs the p99 targets are
// judged on) carry theirs in the name.
func latencyPanel(s svgWriter, r *results, rows []httpResult, y float64) float64 {
	title := fmt.Sprintf("Latency p50 / p99 / p99.9 at %d connections (log scale)", r.Connections)
	if len(r.Latency) > 0 && !r.LatencyReused {
		title = fmt.Sprintf("Latency p50 / p99 / p99.9 at %d connections; p99 targets at %d (log scale)", r.Connections, r.LatencyConnections)
	}
	s.text(10, y+20, "start", "title", title)
	for j, n := range []string{"p50", "p99", "p99.9"} {
		s.rect(barRight+10+float64(j)*55, y+10, 10, 10, pctColors[j])
		s.text(barRight+24+float64(j)*55, y+19, "start", "small", n)
	}
	top := y + 40
	bottom := top + float64(len(rows))*pctRow
	var vals []float64
	for _, h := range rows {
		vals = append(vals, h.P50.Seconds(), h.P99.Seconds(), h.P999.Seconds())
	}
	a := newLogAxis(vals, 0.005)
	a.grid(s, top, bottom, fmtTick)
	for i, h := range rows {
		ry := top + float64(i)*pctRow
		s.text(labelRight, ry+17, "end", "", h.Name)
		for j, d := range []time.Duration{h.P50, h.P99, h.P999} {
			by := ry + float64(j)*9
			s.rect(barLeft, by, a.x(d.Seconds())-barLeft, 8, pctColors[j])
			s.text(a.x(d.Seconds())+4, by+8, "start", "small", []string{"p50 ", "p99 ", "p99.9 "}[j]+fmtDur(d))
		}
	}
	s.goalLine(a.x(0.005), top, bottom, fmt.Sprintf("p99 target 5 ms at %d conns", statedLatConns), false)
	return bottom + 20
}

// batchPanel: IDs/s with count=1000, linear, with the 2M target.
func batchPanel(s svgWriter, rows []httpResult, y float64) float64 {
	s.text(10, y+20, "start", "title", "Batches (count=1000): IDs/s per instance")
	top := y + 40
	bottom := top + float64(len(rows))*rowHeight
	bmax := 2e6
	for _, h := range rows {
		bmax = max(bmax, h.IDsPerSec())
	}
	bmax = niceCeil(bmax)
	x := func(v float64) float64 { return barLeft + (barRight-barLeft)*v/bmax }
	for i := 0; i <= 4; i++ {
		v := bmax * float64(i) / 4
		s.line(x(v), top-4, x(v), bottom, "grid")
		s.text(x(v), bottom+12, "middle", "small", fmt.Sprintf("%.3gM", v/1e6))
	}
	for i, h := range rows {
		ry := top + float64(i)*rowHeight
		s.text(labelRight, ry+15, "end", "", strings.TrimSuffix(h.Name, ", count=1000"))
		s.rect(barLeft, ry+3, x(h.IDsPerSec())-barLeft, rowHeight-8, barColor(h.Inst))
		s.text(x(h.IDsPerSec())+5, ry+15, "start", "", fmtNum(h.IDsPerSec())+" IDs/s")
	}
	s.goalLine(x(2e6), top, bottom, "target 2M IDs/s", false)
	return bottom + 20
}

// inProcessPanel: serial ns/ID per generator on a log scale, with the
// target at 1/5 of NewV7.
func inProcessPanel(s svgWriter, r *results, y float64) float64 {
	s.text(10, y+20, "start", "title", "In-process ns/ID, one goroutine (log scale; lower is better)")
	top := y + 40
	rows := r.InProcess
	bottom := top + float64(len(rows))*rowHeight
	var vals []float64
	for _, p := range rows {
		vals = append(vals, p.SerialNs)
	}
	v7, hasV7 := r.peer("google/uuid NewV7")
	goal := v7.SerialNs / 5
	a := newLogAxis(vals, max(goal, 1))
	a.grid(s, top, bottom, func(ns float64) string { return fmt.Sprintf("%g ns", ns) })
	for i, p := range rows {
		ry := top + float64(i)*rowHeight
		color := "#8c8c8c"
		if i == 0 {
			color = "#1f77b4"
		}
		s.text(labelRight, ry+15, "end", "", p.Name)
		s.rect(barLeft, ry+3, a.x(p.SerialNs)-barLeft, rowHeight-8, color)
		s.text(a.x(p.SerialNs)+5, ry+15, "start", "", fmt.Sprintf("%.1f ns, %.0f allocs", p.SerialNs, p.SerialAllocs))
	}
	if hasV7 && goal > 0 {
		s.goalLine(a.x(goal), top, bottom, "target: 1/5 of NewV7", false)
	}
	return bottom + 20
}

// fmtTick labels a decade of the log axis: 100 µs, 1 ms, 10 ms, 1 s.
func fmtTick(sec float64) string {
	switch {
	case sec >= 1:
		return fmt.Sprintf("%g s", sec)
	case sec >= 1e-3:
		return fmt.Sprintf("%g ms", math.Round(sec*1e6)/1e3)
	default:
		return fmt.Sprintf("%g µs", math.Round(sec*1e9)/1e3)
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
