// Command idgen-composetest proves the docker-compose stack on this machine
// (`make compose-test`): it brings the stack up, sends IDs through the load
// balancer, scales the instances up and down under load, kills one, sends a
// failure event through the Redis Stream, and tears everything down. It
// prints a summary and exits non-zero on any violation. With -traces
// (`make compose-monitoring-test`) the stack runs the monitoring profile's
// Jaeger, the instances export to it, and the run ends by finding its
// spans there.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/idgen/idgen/client"

	"github.com/idgen/idgen/shared/idcodec"
)

type config struct {
	compose []string // the compose command and its -f files
	project string
	ids     int
	conns   int
	keep    bool
	traces  bool
	timeout time.Duration
}

func main() {
	var c config
	composeCmd := flag.String("compose", "docker-compose -f docker-compose.yml -f docker-compose.offline.yml", "compose command with its files")
	flag.StringVar(&c.project, "project", fmt.Sprintf("idgenct%d", os.Getpid()), "compose project name")
	flag.IntVar(&c.ids, "ids", 10000, "IDs to send through the load balancer in the first phase")
	flag.IntVar(&c.conns, "conns", 16, "concurrent client connections")
	flag.BoolVar(&c.keep, "keep", false, "leave the stack running at the end (default: down -v)")
	flag.BoolVar(&c.traces, "traces", false, "run Jaeger of the monitoring profile, export to it ("+otlpEndpoint+") and check that the run's spans reach it")
	flag.DurationVar(&c.timeout, "timeout", 15*time.Minute, "bound on the whole run")
	flag.Parse()
	c.compose = strings.Fields(*composeCmd)

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	r := &run{cfg: c, seen: map[idcodec.ID]struct{}{}, workers: map[uint16]int{}}
	err := r.main(ctx)
	if !c.keep {
		r.down()
	}
	r.summary(os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-test: FAIL: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("compose-test: PASS")
}

type run struct {
	cfg        config
	port       int
	jaegerPort int // with -traces: Jaeger's UI and query API on 127.0.0.1
	token      string
	http       *http.Client
	// api is the project's Go client on the load balancer, one attempt a
	// call: a request that fails counts as failed, never hidden by a retry.
	api   *client.Client
	start time.Time

	linesMu sync.Mutex
	lines   []string
	health  healthWatch

	mu         sync.Mutex
	seen       map[idcodec.ID]struct{}
	workers    map[uint16]int
	duplicates int
}

func (r *run) logf(format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	r.linesMu.Lock()
	r.lines = append(r.lines, line)
	r.linesMu.Unlock()
	fmt.Fprintf(os.Stderr, "compose-test %6.1fs: %s\n", time.Since(r.start).Seconds(), line)
}

func (r *run) main(ctx context.Context) error {
	r.start = time.Now()
	port, err := freePort()
	if err != nil {
		return err
	}
	r.port = port
	if r.cfg.traces {
		if r.jaegerPort, err = freePort(); err != nil {
			return err
		}
	}
	r.http = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: r.cfg.conns * 2, MaxConnsPerHost: r.cfg.conns * 2,
	}}

	t0 := time.Now()
	up := []string{"up", "-d", "--no-build"}
	if r.cfg.traces {
		up = append(up, tracedServices...)
	}
	if _, err := r.compose(ctx, up...); err != nil {
		return err
	}
	if err := r.waitHealthy(ctx, "idgen", 3, 4*time.Minute); err != nil {
		return err
	}
	if err := r.waitHealthy(ctx, "compensate", 1, 2*time.Minute); err != nil {
		return err
	}
	if r.token, err = r.mintToken(ctx, "compose-test", "", time.Hour); err != nil {
		return err
	}
	if r.api, err = client.New(client.Config{Endpoints: []string{r.url("")}, Token: client.StaticToken(r.token),
		HTTPClient: r.http, Retry: client.RetryPolicy{MaxAttempts: 1}}); err != nil {
		return err
	}
	if err := r.waitLB(ctx, time.Minute); err != nil {
		return err
	}
	r.logf("stack up and healthy in %.1f s (3 idgen, lb on 127.0.0.1:%d)", time.Since(t0).Seconds(), r.port)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go r.watchHealth(watchCtx, "idgen", &r.health)

	// 1. IDs through the load balancer.
	res := r.load(ctx, r.cfg.conns, r.cfg.ids, nil)
	r.logf("phase ids: %d requests, %d ok, %d failed, %d distinct workers, %d duplicates",
		res.sent, res.ok, res.failed, r.workerCount(), r.dupes())
	if res.failed > 0 || res.ok != int64(r.cfg.ids) {
		return fmt.Errorf("phase ids: %d of %d requests failed (%s)", res.failed, res.sent, res.firstErr)
	}
	if r.workerCount() < 2 {
		return fmt.Errorf("phase ids: IDs came from %d worker(s), want ≥ 2", r.workerCount())
	}
	// The operator console through the load balancer, all 3 instances up.
	if err := r.console(ctx, 3); err != nil {
		return fmt.Errorf("phase console: %w", err)
	}

	// 2. Scale to 5 and back to 2 under load: no request may fail.
	stopLoad := make(chan struct{})
	var scaleRes loadResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); scaleRes = r.load(ctx, 8, 0, stopLoad) }()
	scaleErr := func() error {
		if err := r.scale(ctx, 5); err != nil {
			return err
		}
		if err := r.waitHealthy(ctx, "idgen", 5, 3*time.Minute); err != nil {
			return err
		}
		time.Sleep(3 * time.Second) // HAProxy resolves and checks the new ones
		if err := r.scale(ctx, 2); err != nil {
			return err
		}
		return r.waitHealthy(ctx, "idgen", 2, 2*time.Minute)
	}()
	time.Sleep(2 * time.Second)
	close(stopLoad)
	wg.Wait()
	r.logf("phase scale 3→5→2 under load: %d requests, %d ok, %d failed, workers seen %d",
		scaleRes.sent, scaleRes.ok, scaleRes.failed, r.workerCount())
	if scaleErr != nil {
		return fmt.Errorf("phase scale: %w", scaleErr)
	}
	if scaleRes.failed > 0 {
		return fmt.Errorf("phase scale: %d requests failed during scaling (%s)", scaleRes.failed, scaleRes.firstErr)
	}

	// 3. Kill one instance: the load balancer keeps serving.
	ids, err := r.containers(ctx, "idgen")
	if err != nil {
		return err
	}
	stopLoad = make(chan struct{})
	var killRes loadResult
	wg.Add(1)
	go func() { defer wg.Done(); killRes = r.load(ctx, 8, 0, stopLoad) }()
	time.Sleep(time.Second)
	if _, err := docker(ctx, "kill", ids[0]); err != nil {
		return err
	}
	killedAt := time.Now()
	time.Sleep(5 * time.Second)
	after := r.load(ctx, 4, 500, nil) // must all succeed once the LB noticed
	close(stopLoad)
	wg.Wait()
	r.logf("phase kill: %d requests under load while one of 2 instances was killed, %d ok, %d failed; then %d of %d ok",
		killRes.sent, killRes.ok, killRes.failed, after.ok, after.sent)
	if after.failed > 0 {
		return fmt.Errorf("phase kill: %d requests failed %.0f s after the kill (%s)", after.failed, time.Since(killedAt).Seconds(), after.firstErr)
	}
	if killRes.failed > 0 {
		return fmt.Errorf("phase kill: %d requests failed while an instance died (%s)", killRes.failed, killRes.firstErr)
	}

	// 4. A failure event on the stream compensates an ID.
	if err := r.compensateViaStream(ctx); err != nil {
		return fmt.Errorf("phase compensate: %w", err)
	}
	if d := r.dupes(); d > 0 {
		return fmt.Errorf("%d duplicate IDs", d)
	}

	// 5. Every counter of every claimed range is accounted for.
	if err := r.reconcile(ctx); err != nil {
		return fmt.Errorf("phase reconcile: %w", err)
	}

	// 6. With -traces: the requests' and the worker's spans are in Jaeger.
	if r.cfg.traces {
		if err := r.traces(ctx); err != nil {
			return fmt.Errorf("phase traces: %w", err)
		}
	}
	return nil
}

// mintToken mints a bearer token of subject sub with the scopes (empty:
// idgen token's default ones) through the stack's own idgen and JWT
// secret.
func (r *run) mintToken(ctx context.Context, sub, scopes string, ttl time.Duration) (string, error) {
	args := []string{"run", "--rm", "--no-deps", "-T", "idgen", "token",
		"--hs256-secret-file", "/secrets/jwt-hs256.secret", "--sub", sub, "--ttl", ttl.String()}
	if scopes != "" {
		args = append(args, "--scope", scopes)
	}
	out, err := r.compose(ctx, args...)
	if err != nil {
		return "", err
	}
	return lastLine(out), nil
}

// scale sets the number of idgen instances. Only that service is touched
// (--no-deps, service named): a plain `up --scale` also re-checks every
// other service's depends_on, and docker-compose 1.29 then fails the whole
// command when any idgen container is unhealthy at that moment (the lb
// depends on idgen: service_healthy), although the scaling itself is done.
func (r *run) scale(ctx context.Context, n int) error {
	_, err := r.compose(ctx, "up", "-d", "--no-build", "--no-recreate", "--no-deps",
		"--scale", fmt.Sprintf("idgen=%d", n), "idgen")
	return err
}

func (r *run) summary(w io.Writer) {
	fmt.Fprintln(w, "\ncompose-test summary")
	r.linesMu.Lock()
	for _, l := range r.lines {
		fmt.Fprintln(w, "  "+l)
	}
	r.linesMu.Unlock()
	events := r.health.report()
	fmt.Fprintf(w, "  idgen health: %d change(s) to or from unhealthy\n", len(events))
	for _, e := range events {
		fmt.Fprintln(w, "    "+e)
	}
	fmt.Fprintf(w, "  total: %d distinct IDs, %d duplicates, %d workers, %.0f s\n",
		len(r.seen), r.duplicates, len(r.workers), time.Since(r.start).Seconds())
}

// compose runs the compose command of this project.
func (r *run) compose(ctx context.Context, args ...string) (string, error) {
	global := []string{"-p", r.cfg.project}
	env := append(os.Environ(), "IDGEN_HTTP_PORT="+strconv.Itoa(r.port))
	if r.cfg.traces {
		global = append(global, "--profile", "monitoring")
		env = append(env, "IDGEN_OTLP_ENDPOINT="+otlpEndpoint, "JAEGER_UI_PORT="+strconv.Itoa(r.jaegerPort))
	}
	full := append(append(append([]string{}, r.cfg.compose[1:]...), global...), args...)
	cmd := exec.CommandContext(ctx, r.cfg.compose[0], full...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s", r.cfg.compose[0], strings.Join(args, " "), err, tailOf(stderr.String(), 2000))
	}
	return stdout.String(), nil
}

func (r *run) down() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := r.compose(ctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		fmt.Fprintf(os.Stderr, "compose-test: down: %v\n", err)
	}
}

func docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, tailOf(string(out), 1000))
	}
	return string(out), nil
}

// containers lists the running containers of a service.
func (r *run) containers(ctx context.Context, service string) ([]string, error) {
	out, err := docker(ctx, "ps", "-q",
		"--filter", "label=com.docker.compose.project="+r.cfg.project,
		"--filter", "label=com.docker.compose.service="+service)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// waitHealthy waits until exactly n containers of the service run, all
// healthy.
func (r *run) waitHealthy(ctx context.Context, service string, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last := ""
	for {
		ids, err := r.containers(ctx, service)
		if err == nil && len(ids) == n {
			cs, err := r.inspect(ctx, ids)
			if err == nil {
				healthy, states := 0, make([]string, 0, len(cs))
				for _, c := range cs {
					if c.Health == "healthy" {
						healthy++
						states = append(states, c.Name+" healthy")
					} else {
						states = append(states, fmt.Sprintf("%s %s (last probe %s)", c.Name, c.Health, c.Probe))
					}
				}
				if healthy == n {
					return nil
				}
				last = strings.Join(states, ", ")
			}
		} else {
			last = fmt.Sprintf("%d containers", len(ids))
		}
		if time.Now().After(deadline) {
			logs, _ := r.compose(ctx, "logs", "--tail", "30", service)
			return fmt.Errorf("%s: not %d healthy after %v (last: %s)\n%s", service, n, limit, last, tailOf(logs, 4000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (r *run) waitLB(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := r.generate(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("load balancer: no ID after %v: %w", limit, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (r *run) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", r.port, path) }

// generate asks for one ID and records it.
func (r *run) generate(ctx context.Context) (idcodec.ID, error) {
	res, err := r.api.Generate(ctx, client.GenerateRequest{})
	if err != nil {
		return idcodec.ID{}, err
	}
	id, err := idcodec.Parse(res.ID)
	if err != nil {
		return id, fmt.Errorf("answer %q: %w", res.ID, err)
	}
	r.mu.Lock()
	if _, dup := r.seen[id]; dup {
		r.duplicates++
	}
	r.seen[id] = struct{}{}
	r.workers[id.Decompose().Worker]++
	r.mu.Unlock()
	return id, nil
}

func (r *run) workerCount() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.workers) }
func (r *run) dupes() int       { r.mu.Lock(); defer r.mu.Unlock(); return r.duplicates }

type loadResult struct {
	sent, ok, failed int64
	firstErr         string
	p99              time.Duration
}

// load sends /generate from conns workers: total requests in all, or until
// stop is closed when total is 0.
func (r *run) load(ctx context.Context, conns, total int, stop <-chan struct{}) loadResult {
	var sent, ok, failed atomic.Int64
	var firstErr atomic.Value
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if total > 0 && sent.Add(1) > int64(total) {
					sent.Add(-1)
					return
				}
				if total == 0 {
					select {
					case <-stop:
						return
					default:
					}
					sent.Add(1)
				}
				t := time.Now()
				_, err := r.generate(ctx)
				d := time.Since(t)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res := loadResult{sent: sent.Load(), ok: ok.Load(), failed: failed.Load()}
	if s, _ := firstErr.Load().(string); s != "" {
		res.firstErr = s
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		res.p99 = lat[len(lat)*99/100]
	}
	return res
}

// compensateViaStream generates an ID, appends a failure event for it to
// the stream on the current Redis primary and waits for the worker to void it.
func (r *run) compensateViaStream(ctx context.Context) error {
	id, err := r.generate(ctx)
	if err != nil {
		return err
	}
	master, err := r.redisCLI(ctx, "sentinel1", "26379", "SENTINEL", "get-master-addr-by-name", "idgen")
	if err != nil {
		return err
	}
	host := strings.Fields(master)
	if len(host) == 0 {
		return fmt.Errorf("sentinel names no master: %q", master)
	}
	service := strings.TrimSuffix(host[0], ".")
	eventID := fmt.Sprintf("compose-test-%d", time.Now().UnixNano())
	if _, err := r.redisCLI(ctx, service, "6379", "XADD", "idgen:failures", "*",
		"event_id", eventID, "id", id.String(), "reason", "compose-test: payment declined",
		"occurred_at", time.Now().UTC().Format(time.RFC3339Nano), "source", "compose-test"); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := r.api.Get(ctx, id.String())
		if err == nil && rec.State == "compensated" {
			r.logf("phase compensate: failure event %s on the stream (primary %s) voided %s in %.1f s",
				eventID, service, id, time.Since(deadline.Add(-30*time.Second)).Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			state := ""
			if rec != nil {
				state = string(rec.State)
			}
			return fmt.Errorf("%s not compensated 30 s after its failure event (state %q, err %v)", id, state, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// redisCLI runs redis-cli inside a container of the service, with the
// generated password.
func (r *run) redisCLI(ctx context.Context, service, port string, args ...string) (string, error) {
	ids, err := r.containers(ctx, service)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("no running container for %s", service)
	}
	script := `REDISCLI_AUTH=$(cat /secrets/redis.password) exec redis-cli -p "$0" "$@"`
	out, err := docker(ctx, append([]string{"exec", ids[0], "sh", "-c", script, port}, args...)...)
	if err != nil {
		return out, err
	}
	if strings.HasPrefix(out, "ERR") || strings.HasPrefix(out, "(error)") {
		return out, errors.New(strings.TrimSpace(out))
	}
	return out, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLine(s string) string {
	lines := strings.Fields(strings.TrimSpace(s))
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
