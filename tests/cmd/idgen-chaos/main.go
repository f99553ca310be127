// Command idgen-chaos runs the idgen service as deployed (3-node ZooKeeper
// ensemble, Redis primary + replica + 3 Sentinels, three idgen instances in
// durable mode behind HAProxy, two compensate workers; all real processes
// on loopback) under a bounded load, injects eleven faults one after the
// other with recovery between, and then checks the invariants below. Then
// come the operator and resource faults (12-14, root only: ops.go): two
// embedded instances, pebble and bbolt, each with its data directory and
// audit log on small tmpfs volumes of its own, under load: another engine,
// shard or mode started on a data directory is refused; the data volume,
// then the audit volume, fills to ENOSPC and frees. The same invariants
// hold there, and every stored state change is audited exactly once.
//
//   - no two acknowledged IDs share (shard, counter);
//   - every acknowledged ID is in the registry (read back from Redis with
//     shared/registry/redisstore), in the state the answers imply;
//   - every compensation took effect once and has one audit entry across
//     the audit logs of the instances and the workers;
//   - an Idempotency-Key never answered two ID sets;
//   - every answer of idgen was 200 or 503 (with Retry-After) and every
//     200 well formed; no 200 where the fault makes one impossible (quiet
//     intervals); timestamps never go back within an instance's life;
//   - every fault recovered (all instances healthy and serving through
//     HAProxy), with a per-fault availability floor where one instance
//     only is hit.
//
// It prints a table per fault (requests, 200s, 503s, p99) and a final line
// "chaos: <N> ids, 0 duplicates, 0 lost, ...", and exits 1 on any
// violation, 2 on a usage error, 130 when interrupted. Every process it
// starts dies with it (process groups, Pdeathsig); its directory is removed
// unless -keep is given or a check failed.
//
// Usage: bin/idgen-chaos -idgen bin/idgen [-smoke] [-faults 12,13,14] [flags]
// (make tools builds it; make chaos runs it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// quietRedis drops go-redis' own log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func main() {
	os.Exit(mainCode(os.Args[1:], os.Stdout, os.Stderr))
}

func mainCode(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "idgen-chaos:", err)
		return 2
	}
	redis.SetLogger(quietRedis{}) // go-redis logs every Sentinel lookup
	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return chaos(sig, cfg, stdout, stderr)
}

// chaos runs everything and returns the exit code. sig ends with SIGINT
// or SIGTERM: the run stops, cleans up and exits 130 without checking.
func chaos(sig context.Context, cfg *Config, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(sig, cfg.MaxDuration)
	defer cancel()
	if cfg.runsOps() && os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "idgen-chaos:", errNotRoot)
		return 1
	}
	t0 := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%7.1fs  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "idgen-chaos-")
		if err != nil {
			fmt.Fprintln(stderr, "idgen-chaos:", err)
			return 1
		}
		dir = d
	} else if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		fmt.Fprintf(stderr, "idgen-chaos: -dir %s is not empty\n", dir)
		return 2
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(stderr, "idgen-chaos:", err)
		return 1
	}
	keep := cfg.Keep || cfg.Dir != "" // a directory given is the caller's
	defer func() {
		if keep {
			fmt.Fprintf(stderr, "idgen-chaos: logs, audit logs and data kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	if cfg.Smoke {
		logf("smoke run: shorter faults, every check")
	}
	var (
		s     summary
		print []func(io.Writer)
	)
	if cfg.runsCluster() {
		cs, report, code := runCluster(ctx, sig, cfg, dir, stdout, logf)
		if code != 0 {
			keep = keep || code == 1
			return code
		}
		s, print = cs, append(print, report)
	}
	if cfg.runsOps() && ctx.Err() == nil {
		p, err := startOps(ctx, cfg, dir, logf)
		if err != nil {
			fmt.Fprintln(stderr, "idgen-chaos: start the embedded phase:", err)
			keep = true
			return 1
		}
		closeOps := sync.OnceFunc(func() {
			if err := p.Close(); err != nil {
				logf("close the embedded phase: %v", err)
			}
		})
		defer closeOps() // before the directory is removed: it unmounts
		logf("embedded load: %.0f IDs/s to each of %d instances", cfg.OpsRate, len(p.insts))
		p.execute(ctx)
		switch {
		case sig.Err() != nil:
			fmt.Fprintln(stdout, "idgen-chaos: interrupted; nothing checked")
			return 130
		case ctx.Err() != nil:
			p.violate(vCheck, "the run exceeded -max-duration %v", cfg.MaxDuration)
		}
		ops := p.verify(sig)
		closeOps()
		if sig.Err() != nil {
			fmt.Fprintln(stdout, "idgen-chaos: interrupted; checks incomplete")
			return 130
		}
		s.ids, s.compensated, s.registryReads = s.ids+ops.ids, s.compensated+ops.compensated, s.registryReads+ops.reads
		s.auditLines, s.tornAudit = s.auditLines+ops.auditLines, s.tornAudit+ops.torn
		s.faultsRun, s.faultsRecovered = s.faultsRun+ops.faultsRun, s.faultsRecovered+ops.faultsRecovered
		s.violations = append(s.violations, ops.violations...)
		print = append(print, func(w io.Writer) {
			fmt.Fprintln(w, "\noperator and resource faults: embedded instances, each with its data directory and audit log on tmpfs volumes of its own")
			printTable(w, p.wins, p.results())
			printOpsChecks(w, ops, len(p.quiets))
		})
	}

	for _, f := range print {
		f(stdout)
	}
	printViolations(stdout, s.violations, 5)
	fmt.Fprintln(stdout, finalLine(s))
	logf("done in %v", time.Since(t0).Round(time.Second))
	if len(s.violations) > 0 {
		keep = true
		return 1
	}
	return 0
}

// runCluster runs the cluster and its faults (1-11) and checks them; it
// returns the summary, the report to print, and an exit code other than 0
// when the run must end (1: the cluster did not start; 130: interrupted).
func runCluster(ctx, sig context.Context, cfg *Config, dir string, stdout io.Writer, logf func(string, ...any)) (summary, func(io.Writer), int) {
	c, err := startCluster(ctx, cfg, dir, logf)
	if err != nil {
		logf("idgen-chaos: start: %v", err)
		return summary{}, nil, 1
	}
	closeCluster := sync.OnceFunc(func() {
		if err := c.Close(); err != nil {
			logf("close: %v", err)
		}
	})
	defer closeCluster()

	l := newLedger()
	ev := newEventSender(c.redis.SentinelAddrs(), c.redis.MasterName(), l, 2*time.Second)
	defer ev.Close()
	lb, direct := newHTTPClients(cfg.Workers)
	r := &run{cfg: cfg, c: c, l: l, ev: ev, logf: logf}
	r.d = newDriver(cfg, c.lbURL, lb, direct, l, ev, logf)
	logf("load: %.0f IDs/s through HAProxy, %d workers; faults %v", cfg.Rate, cfg.Workers, cfg.faultList())
	r.execute(ctx)
	switch {
	case sig.Err() != nil:
		fmt.Fprintln(stdout, "idgen-chaos: interrupted; nothing checked")
		return summary{}, nil, 130
	case ctx.Err() != nil:
		l.violate(vCheck, "the run exceeded -max-duration %v", cfg.MaxDuration)
	}
	logf("load stopped: %d IDs acknowledged; verifying", l.Count())
	s := r.verify(sig)
	closeCluster()
	if sig.Err() != nil {
		fmt.Fprintln(stdout, "idgen-chaos: interrupted; checks incomplete")
		return summary{}, nil, 130
	}
	return s, func(w io.Writer) {
		fmt.Fprintln(w)
		printTable(w, r.wins, l.Results())
		printChecks(w, s, l, ev)
	}, 0
}
