package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/zkharness"
)

type wrkResult struct {
	rps                float64
	p50, p99, p999     time.Duration
	non2xx, sockErrors int
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	rePct     = regexp.MustCompile(`(?m)^pct (50|99|99\.9) (\d+)$`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

const wrkScript = `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY") or ""
done = function(summary, latency, requests)
  for _, p in pairs({50, 99, 99.9}) do
    io.write(string.format("pct %g %d\n", p, latency:percentile(p)))
  end
end
`

func runWrk(ctx context.Context, url, body string, conns int, d time.Duration) (wrkResult, error) {
	script, err := os.CreateTemp("", "idgen-bench-*.lua")
	if err != nil {
		return wrkResult{}, err
	}
	defer os.Remove(script.Name())
	if _, err := script.WriteString(wrkScript); err != nil {
		return wrkResult{}, err
	}
	script.Close()
	cmd := exec.CommandContext(ctx, "wrk", "-t2", "-c"+strconv.Itoa(conns), "-d"+d.String(), "-s", script.Name(), url)
	cmd.Env = append(os.Environ(), "WRK_BODY="+body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	s := string(out)
	m := reRPS.FindStringSubmatch(s)
	if m == nil {
		return wrkResult{}, fmt.Errorf("wrk output without Requests/sec: %s", s)
	}
	var r wrkResult
	r.rps, _ = strconv.ParseFloat(m[1], 64)
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
	if m := reSockErr.FindStringSubmatch(s); m != nil {
		for _, x := range m[1:] {
			n, _ := strconv.Atoi(x)
			r.sockErrors += n
		}
	}
	return r, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// server is a child process serving HTTP.
type server struct {
	name, addr, path, body string
	cmd                    *exec.Cmd
}

func startServer(name string, args []string, addr string) (*server, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, addr: addr, cmd: cmd}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Post("http://"+addr+"/generate", "application/json", nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("%s did not answer on %s", name, addr)
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func httpBench(ctx context.Context, idgen string, rounds int, d time.Duration, conns int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dataDir, err := os.MkdirTemp("", "idgen-bench-data-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	ceilAddr, _ := freeAddr()
	ceil, err := startServer("ceiling", []string{self, "ceiling", ceilAddr}, ceilAddr)
	if err != nil {
		return err
	}
	defer ceil.stop()
	idAddr, _ := freeAddr()
	emb, err := startServer("idgen embedded", []string{idgen, "serve", "--dev", "--listen", idAddr, "--data-dir", dataDir + "/pebble", "--log-level", "warn"}, idAddr)
	if err != nil {
		return err
	}
	defer emb.stop()
	boltAddr, _ := freeAddr()
	bolt, err := startServer("idgen embedded bbolt", []string{idgen, "serve", "--dev", "--listen", boltAddr, "--data-dir", dataDir + "/bbolt", "--store-engine", "bbolt", "--log-level", "warn"}, boltAddr)
	if err != nil {
		return err
	}
	defer bolt.stop()

	// Distributed: one ZooKeeper and one Redis from the test harnesses.
	zk, err := zkharness.Start(ctx, zkharness.Options{Servers: 1})
	if err != nil {
		return err
	}
	defer zk.Close()
	rds, err := redisharness.StartStandalone(ctx, redisharness.Options{})
	if err != nil {
		return err
	}
	defer rds.Close()
	keyFile := filepath.Join(dataDir, "shared.key")
	if err := os.WriteFile(keyFile, []byte("k1 "+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		return err
	}
	redisAddr, _ := freeAddr()
	red, err := startServer("idgen zookeeper+redis", []string{idgen, "serve", "--dev", "--listen", redisAddr, "--data-dir", dataDir + "/redis",
		"--zookeeper", zk.ConnectString(), "--redis-addr", rds.Addr(), "--metadata-key-file", keyFile, "--log-level", "warn", "--audit-log", filepath.Join(dataDir, "audit.log")}, redisAddr)
	if err != nil {
		return err
	}
	defer red.stop()

	type target struct {
		name, url, body string
		ids             float64 // IDs per request
	}
	targets := []target{
		{"ceiling: fasthttp constant body", "http://" + ceilAddr + "/generate", "", 1},
		{"idgen embedded (pebble) /generate", "http://" + idAddr + "/generate", "", 1},
		{"idgen embedded (bbolt) /generate", "http://" + boltAddr + "/generate", "", 1},
		{"idgen embedded (pebble) count=1000", "http://" + idAddr + "/generate", `{"count":1000}`, 1000},
		{"idgen embedded (bbolt) count=1000", "http://" + boltAddr + "/generate", `{"count":1000}`, 1000},
		{"idgen zookeeper+redis /generate", "http://" + redisAddr + "/generate", "", 1},
		{"idgen zookeeper+redis count=1000", "http://" + redisAddr + "/generate", `{"count":1000}`, 1000},
	}
	res := make([][]wrkResult, len(targets))
	for _, t := range targets { // warm-up
		if _, err := runWrk(ctx, t.url, t.body, conns, time.Second); err != nil {
			return err
		}
	}
	// Registry figures per target: deltas of the server's own metrics
	// around each measured run (the ceiling has none).
	type regDelta struct{ ids, flushes, ops, flushSec float64 }
	deltas := make([]regDelta, len(targets))
	for r := 0; r < rounds; r++ {
		for i, t := range targets {
			metricsURL := strings.TrimSuffix(t.url, "/generate") + "/metrics"
			before, _ := scrape(metricsURL)
			w, err := runWrk(ctx, t.url, t.body, conns, d)
			if err != nil {
				return err
			}
			if after, err := scrape(metricsURL); err == nil && i > 0 {
				deltas[i].ids += after["idgen_ids_issued_total"] - before["idgen_ids_issued_total"]
				deltas[i].flushes += after["idgen_registry_batch_size_count"] - before["idgen_registry_batch_size_count"]
				deltas[i].ops += after["idgen_registry_batch_size_sum"] - before["idgen_registry_batch_size_sum"]
				deltas[i].flushSec += after["idgen_registry_flush_seconds_sum"] - before["idgen_registry_flush_seconds_sum"]
			}
			if w.non2xx > 0 || w.sockErrors > 0 {
				return fmt.Errorf("%s: %d non-2xx answers, %d socket errors", t.name, w.non2xx, w.sockErrors)
			}
			res[i] = append(res[i], w)
		}
	}
	fmt.Printf("HTTP, wrk -t2 -c%d -d%s, POST (median of %d; ratio = requests/s / ceiling requests/s)\n", conns, d, rounds)
	fmt.Printf("%-34s %12s %9s %10s %10s %10s %14s\n", "", "requests/s", "ratio", "p50", "p99", "p99.9", "IDs/s")
	ceilRPS := medianOf(res[0], func(w wrkResult) float64 { return w.rps })
	for i, t := range targets {
		rps := medianOf(res[i], func(w wrkResult) float64 { return w.rps })
		lat := func(f func(wrkResult) time.Duration) time.Duration {
			return time.Duration(medianOf(res[i], func(w wrkResult) float64 { return float64(f(w)) }))
		}
		fmt.Printf("%-34s %12.0f %8.2fx %10s %10s %10s %14.0f\n", t.name, rps, rps/ceilRPS,
			lat(func(w wrkResult) time.Duration { return w.p50 }), lat(func(w wrkResult) time.Duration { return w.p99 }),
			lat(func(w wrkResult) time.Duration { return w.p999 }), rps*t.ids)
	}
	fmt.Println("\nRegistry at saturation (deltas of each server's metrics over the measured runs)")
	fmt.Printf("%-34s %14s %14s %10s %12s\n", "", "round trips/ID", "requests/flush", "IDs/flush", "mean flush")
	for i, t := range targets[1:] {
		dl := deltas[i+1]
		if dl.flushes == 0 || dl.ids == 0 {
			continue
		}
		fmt.Printf("%-34s %14.4f %14.1f %10.0f %10.3fms\n", t.name, dl.flushes/dl.ids, dl.ops/dl.flushes, dl.ids/dl.flushes, 1000*dl.flushSec/dl.flushes)
	}
	fmt.Println(strings.Repeat("-", 60))
	return nil
}

// scrape reads the unlabelled series of a Prometheus text endpoint.
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				out[f[0]] = v
			}
		}
	}
	return out, sc.Err()
}

func medianOf(ws []wrkResult, f func(wrkResult) float64) float64 {
	xs := make([]float64, len(ws))
	for i, w := range ws {
		xs[i] = f(w)
	}
	return median(xs)
}
