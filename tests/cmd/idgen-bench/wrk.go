package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// serveCeiling is the ceiling server: a bare fasthttp handler answering a
// constant ID, the least an HTTP ID service can do.
func serveCeiling(addr string) error {
	body := []byte(`{"id":"019ab697-e800-8007-8200-0000000003e9"}`)
	return fasthttp.ListenAndServe(addr, func(c *fasthttp.RequestCtx) {
		c.SetContentType("application/json")
		c.SetBody(body)
	})
}

// wrkResult is one wrk run.
type wrkResult struct {
	requests       float64
	elapsed        time.Duration // wrk's own measure of the run
	rps            float64
	p50, p99, p999 time.Duration
	non2xx         int
	sockErrors     int
	cpu            time.Duration // user+system time of the wrk process
}

var (
	rePct    = regexp.MustCompile(`(?m)^pct (50|99|99\.9) (\d+)$`)
	reSum    = regexp.MustCompile(`(?m)^sum (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$`)
	reNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// wrkScript posts WRK_BODY and prints, at the end, the percentiles (µs) and
// the summary (requests, duration µs, errors connect/read/write/status/
// timeout) in lines the parser reads.
const wrkScript = `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY") or ""
done = function(summary, latency, requests)
  for _, p in pairs({50, 99, 99.9}) do
    io.write(string.format("pct %g %d\n", p, latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format("sum %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

// runWrk runs `wrk -t2 -c conns -d d --latency` against url with a POST of
// body and the headers ("Name: value", one -H each; wrk speaks https to an
// https url, without verifying the certificate). The timeout (wrk's default
// 2 s) is raised to 10 s so a slow design shows in its percentiles rather
// than as errors.
func runWrk(ctx context.Context, url, body string, headers []string, conns int, d time.Duration) (wrkResult, error) {
	script, err := os.CreateTemp("", "idgen-bench-*.lua")
	if err != nil {
		return wrkResult{}, err
	}
	defer os.Remove(script.Name())
	if _, err := script.WriteString(wrkScript); err != nil {
		script.Close()
		return wrkResult{}, err
	}
	if err := script.Close(); err != nil {
		return wrkResult{}, err
	}
	secs := strconv.Itoa(int(d/time.Second)) + "s"
	args := []string{"-t2", "-c" + strconv.Itoa(conns), "-d" + secs, "--timeout", "10s", "--latency", "-s", script.Name()}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	cmd := exec.CommandContext(ctx, "wrk", append(args, url)...)
	cmd.Env = append(os.Environ(), "WRK_BODY="+body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return r, err
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

// parseWrk reads the lines wrkScript prints, and wrk's Non-2xx count.
func parseWrk(s string) (wrkResult, error) {
	var r wrkResult
	m := reSum.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("wrk output without the summary line: %s", s)
	}
	n := make([]float64, len(m)-1)
	for i, x := range m[1:] {
		n[i], _ = strconv.ParseFloat(x, 64)
	}
	r.requests, r.elapsed = n[0], time.Duration(n[1])*time.Microsecond
	if r.elapsed > 0 {
		r.rps = r.requests / r.elapsed.Seconds()
	}
	// Status errors are the Non-2xx answers, counted below.
	r.sockErrors = int(n[2] + n[3] + n[4] + n[6])
	for _, pm := range rePct.FindAllStringSubmatch(s, -1) {
		us, _ := strconv.Atoi(pm[2])
		dd := time.Duration(us) * time.Microsecond
		switch pm[1] {
		case "50":
			r.p50 = dd
		case "99":
			r.p99 = dd
		case "99.9":
			r.p999 = dd
		}
	}
	if m := reNon2xx.FindStringSubmatch(s); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	return r, nil
}
