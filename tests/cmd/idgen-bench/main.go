// Command idgen-bench is `make bench`: it measures idgen beside baselines in
// the same run on the same machine and reports ratios, never bare figures.
//
//	idgen-bench [-rounds 7] [-warmup 10s] [-duration 5s] [-connections 64] [-latency-connections 32] [-idgen bin/idgen] [-out bench] [-quick]
//
// In-process: the generator hot path (ns/ID, allocs/ID) against
// github.com/google/uuid (NewV7, NewRandom), github.com/bwmarrin/snowflake,
// github.com/sony/sonyflake and github.com/rs/xid; and the cost of verifying
// a bearer token per request (shared/platform/auth's benchmarks: first use, cached,
// beside decoding the claims unverified).
//
// Over HTTP with wrk (Debian package): a bare fasthttp handler answering a
// constant ID (the ceiling), `idgen serve` embedded (pebble, bbolt; pebble
// also with the TLS listener and JWT verification), idgen
// with ZooKeeper + Redis, the same in durable mode (a replica, appendfsync
// always, --redis-wait-replicas 1), and a naive design built here as the
// strawman (per request: a ZooKeeper compare-and-set on a counter znode and a
// Redis SETNX of the ID). Single IDs and count=1000 batches; requests/s,
// p50/p99/p99.9 and ratios to the ceiling; ZooKeeper writes, Redis round
// trips and registry bytes per ID; cold start to the first ID; a CPU profile
// of idgen during its Redis runs.
//
// Throughput runs use 64 wrk connections (-connections): the ratio targets
// are stated under wrk with 64 connections. The p99 targets are stated at 32
// connections, so every round also runs the single-ID idgen + Redis and
// durable instances at -latency-connections (32), and the p99 targets are
// judged on those runs (the throughput runs are reused when both counts are
// equal).
//
// Every measurement alternates with the others, after a warm-up, and each
// figure is the median of the rounds. The results go to a directory of the
// CPU model under <out> (<out>/<model>/results.md with each target, its
// measured ratio and PASS/MISS, chart.svg and profile-*.txt), and
// <out>/README.md lists the last results of every CPU model there: one
// machine's figures are never read as another's, and a target holds only
// where it holds on each.
//
// Invariants: the tool only signals processes it started; every server it
// starts dies with it (process groups, Pdeathsig); a run with errors writes
// no results file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// config is the command line of a bench run. Zero values are not defaults:
// parseFlags fills them.
type config struct {
	rounds      int
	duration    time.Duration // one wrk run
	warmup      time.Duration // one wrk warm-up run per target
	conns       int           // wrk connections of the throughput runs
	latConns    int           // wrk connections of the runs the p99 targets are judged on
	benchtime   time.Duration // one in-process measurement
	idgen       string
	out         string
	quick       bool
	skipHTTP    bool
	skipIn      bool
	coldStarts  int
	profileSecs int
	indexOnly   bool
}

// errRounds guards the spec: a median needs at least three rounds.
var errRounds = errors.New("-rounds must be at least 3 (median of ≥ 3 rounds)")

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("idgen-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.rounds, "rounds", 7, "rounds per measurement, alternating (median reported; at least 3)")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "wrk duration of one measured run (whole seconds)")
	fs.DurationVar(&c.warmup, "warmup", 10*time.Second, "wrk warm-up per target before the rounds (whole seconds; long enough for a new embedded store to reach its steady state)")
	fs.IntVar(&c.conns, "connections", 64, "wrk connections of the throughput runs (the ratio targets are stated under wrk with 64 connections)")
	fs.IntVar(&c.latConns, "latency-connections", 32, "wrk connections of the extra idgen + Redis and durable runs the p99 targets are judged on (stated at 32); equal to -connections: the throughput runs are reused")
	fs.DurationVar(&c.benchtime, "benchtime", time.Second, "duration of one in-process measurement")
	fs.StringVar(&c.idgen, "idgen", "bin/idgen", "idgen binary (make build)")
	fs.BoolVar(&c.indexOnly, "index", false, "measure nothing: only write <out>/README.md from the results of every CPU model under <out> (after copying another machine's results there)")
	fs.StringVar(&c.out, "out", "bench", "directory of the results: <out>/<CPU model>/results.md, chart.svg and profile-*.txt, and the index <out>/README.md")
	fs.BoolVar(&c.quick, "quick", false, "short run: -duration 1s -warmup 1s -benchtime 50ms, 3 rounds (for development and tests; figures are rough)")
	fs.BoolVar(&c.skipHTTP, "skip-http", false, "only the in-process benchmarks")
	fs.BoolVar(&c.skipIn, "skip-inprocess", false, "only the HTTP benchmarks")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["duration"] {
			c.duration = time.Second
		}
		if !set["warmup"] {
			c.warmup = time.Second
		}
		if !set["benchtime"] {
			c.benchtime = 50 * time.Millisecond
		}
		if !set["rounds"] {
			c.rounds = 3
		}
	}
	c.coldStarts = c.rounds
	c.profileSecs = max(1, int(c.duration/time.Second)-1)
	return c, c.validate()
}

func (c config) validate() error {
	switch {
	case c.rounds < 3:
		return errRounds
	case c.duration < time.Second || c.duration%time.Second != 0:
		return fmt.Errorf("-duration %v: wrk takes whole seconds, at least 1s", c.duration)
	case c.warmup < time.Second || c.warmup%time.Second != 0:
		return fmt.Errorf("-warmup %v: wrk takes whole seconds, at least 1s", c.warmup)
	case c.conns < 2:
		return fmt.Errorf("-connections %d: wrk -t2 needs at least 2", c.conns)
	case c.latConns < 2:
		return fmt.Errorf("-latency-connections %d: wrk -t2 needs at least 2", c.latConns)
	case c.benchtime <= 0:
		return fmt.Errorf("-benchtime %v must be positive", c.benchtime)
	case c.skipHTTP && c.skipIn:
		return errors.New("-skip-http and -skip-inprocess leave nothing to measure")
	}
	return nil
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "ceiling": // child process: the least an HTTP ID service can do
			if len(os.Args) != 3 {
				fatal(errors.New("usage: idgen-bench ceiling <addr>"))
			}
			fatal(serveCeiling(os.Args[2]))
		case "naive": // child process: the strawman
			if len(os.Args) != 5 {
				fatal(errors.New("usage: idgen-bench naive <addr> <zookeeper> <redis>"))
			}
			fatal(serveNaive(os.Args[2], os.Args[3], os.Args[4]))
		}
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "idgen-bench:", err)
	os.Exit(1)
}

// run measures everything cfg asks for and writes the results files.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	if cfg.indexOnly {
		return writeIndex(cfg.out)
	}
	m := readMachine(cfg.idgen)
	root := cfg.out
	cfg.out = filepath.Join(root, cpuDir(m.CPU))
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	res := &results{
		Machine: m, Command: commandLine(), Started: time.Now().UTC(),
		Rounds: cfg.rounds, Duration: cfg.duration, Warmup: cfg.warmup, Connections: cfg.conns, LatencyConnections: cfg.latConns,
		Benchtime: cfg.benchtime, Quick: cfg.quick,
	}
	fmt.Fprintf(stdout, "idgen bench: %d rounds, median reported; %d cores (%s), GOMAXPROCS=%d\n", cfg.rounds, res.Machine.Cores, res.Machine.CPU, res.Machine.GOMAXPROCS)
	if !cfg.skipIn {
		fmt.Fprintln(stdout, "in-process peers...")
		res.InProcess = inProcess(cfg.rounds, cfg.benchtime)
		fmt.Fprintln(stdout, "token verification (shared/platform/auth)...")
		var err error
		if res.Auth, err = authBench(cfg.rounds, cfg.benchtime); err != nil {
			return fmt.Errorf("auth benchmarks: %w", err)
		}
		p, err := profileHotPath(ctx, cfg.out, max(3*cfg.benchtime, 500*time.Millisecond))
		if err != nil {
			return fmt.Errorf("hot path profile: %w", err)
		}
		res.Profiles = append(res.Profiles, p)
	}
	if !cfg.skipHTTP {
		if err := httpBench(ctx, cfg, res, stdout); err != nil {
			return err
		}
	}
	res.Elapsed = time.Since(res.Started).Round(time.Second)
	md := filepath.Join(cfg.out, "results.md")
	var b strings.Builder
	writeMarkdown(&b, res)
	if err := os.WriteFile(md, []byte(b.String()), 0o644); err != nil {
		return err
	}
	var svg strings.Builder
	writeSVG(&svg, res)
	if err := os.WriteFile(filepath.Join(cfg.out, "chart.svg"), []byte(svg.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, b.String())
	if err := writeIndex(root); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s, %s, %s\n", md, filepath.Join(cfg.out, "chart.svg"), filepath.Join(root, "README.md"))
	return nil
}

// commandLine is how this run was started, as a user would type it: `go
// run` builds into a temporary go-build directory.
func commandLine() string {
	args := strings.Join(os.Args[1:], " ")
	if strings.Contains(os.Args[0], "go-build") {
		return strings.TrimSpace("go run ./cmd/idgen-bench " + args)
	}
	return strings.TrimSpace(filepath.Base(os.Args[0]) + " " + args)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
