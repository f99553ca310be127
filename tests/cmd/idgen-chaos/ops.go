package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// The operator and resource faults run on two embedded instances (no
// ZooKeeper, no Redis: each is its own registry and range source), one per
// store engine, each on a shard of its own so that their IDs never share
// (shard, counter). Each has its --data-dir on one tmpfs and its audit log
// on another, small enough to fill. The phase runs after the cluster's
// (which uses no embedded store) with the same driver and ledger: a load
// per instance (singles, batches, keys, deadlines, commits, compensations
// through POST /compensate), then the faults, then the checks: no
// duplicate, every acknowledged ID in the store in the state the answers
// imply, only 200 and 503 answers, and every stored state change (each
// commit and compensation step in a record's history) audited exactly once.
type opsInst struct {
	*process
	engine  string
	shard   uint8
	url     string
	dataMnt string // tmpfs of the data directory (and its filler)
	dataDir string
	audMnt  string // tmpfs of the audit logs (and its filler)
	flags   []string

	l    *Ledger
	d    *driver
	sink *httpSink
}

// opsPhase is the embedded phase of a run.
type opsPhase struct {
	cfg    *Config
	dir    string
	logf   func(string, ...any)
	client *http.Client // health probes and reads
	insts  []*opsInst
	mounts []string
	wins   []*window

	refusals atomic.Int64 // refused starts, naming their files

	mu      sync.Mutex
	quiets  []quiet
	pending []pendingCheck // refusals checked in the background
}

// Guard settings of the embedded instances: writes are refused below
// opsMinFree; the ballast gives flushes and Close room when the volume
// fills from outside. The audit log retries its backlog every 200 ms and
// gives an entry back to its caller after 500 ms.
const (
	opsMinFree = 24 << 20
	opsBallast = 8 << 20
)

// startOps mounts the volumes and starts the instances, or nothing.
func startOps(ctx context.Context, cfg *Config, dir string, logf func(string, ...any)) (_ *opsPhase, err error) {
	if os.Geteuid() != 0 {
		return nil, errNotRoot
	}
	p := &opsPhase{cfg: cfg, dir: dir, logf: logf, client: proc.NewClient(32, 5*time.Second)}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	for i, engine := range []string{"pebble", "bbolt"} {
		in, err := p.newInst(engine, uint8(i+1))
		if err != nil {
			return nil, err
		}
		p.insts = append(p.insts, in)
	}
	if err := startAll(ctx, p.client, p.insts); err != nil {
		return nil, err
	}
	logf("embedded instances ready: %s", strings.Join(p.names(), ", "))
	return p, nil
}

func (p *opsPhase) names() []string {
	var out []string
	for _, in := range p.insts {
		out = append(out, fmt.Sprintf("%s (shard %d, %s data and %s audit tmpfs)", in.name, in.shard, mib(p.cfg.DataDiskBytes), mib(p.cfg.AuditDiskBytes)))
	}
	return out
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// newInst mounts the two volumes of an instance and prepares its process
// and load.
func (p *opsPhase) newInst(engine string, shard uint8) (*opsInst, error) {
	name := "idgen-" + engine
	base := filepath.Join(p.dir, "ops", name)
	in := &opsInst{engine: engine, shard: shard, dataMnt: filepath.Join(base, "data"), audMnt: filepath.Join(base, "audit")}
	for _, m := range []struct {
		dir  string
		size int64
	}{{in.dataMnt, p.cfg.DataDiskBytes}, {in.audMnt, p.cfg.AuditDiskBytes}} {
		if err := mountTmpfs(m.dir, m.size); err != nil {
			return nil, err
		}
		p.mounts = append(p.mounts, m.dir)
	}
	in.dataDir = filepath.Join(in.dataMnt, "store")
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	in.url = "http://" + addr
	in.flags = []string{"--dev", "--listen", addr, "--data-dir", in.dataDir, "--store-engine", engine, "--shard", fmt.Sprint(shard),
		"--disk-min-free-bytes", fmt.Sprint(opsMinFree), "--disk-min-free-percent", "-1", "--disk-ballast-bytes", fmt.Sprint(opsBallast),
		"--audit-retry-interval", "200ms", "--audit-wait", "500ms", "--request-timeout", "5s", "--shutdown-grace", "10s"}
	in.process = &process{name: name, bin: p.cfg.Idgen, dir: p.dir, readyURL: in.url + "/health/ready"}
	in.args = func(life int) []string {
		return append([]string{"serve", "--audit-log", filepath.Join(in.audMnt, fmt.Sprintf("audit-%s-%d.log", name, life))}, in.flags...)
	}
	cfg := *p.cfg
	cfg.Rate, cfg.Workers, cfg.Seed = p.cfg.OpsRate, p.cfg.OpsWorkers, p.cfg.Seed+uint64(shard)
	client := proc.NewClient(2*cfg.Workers, 15*time.Second)
	in.l = newLedger()
	in.sink = newHTTPSink(name, in.url, client, in.l)
	in.d = newDriver(&cfg, in.url, client, client, in.l, in.sink, p.logf)
	in.d.via, in.d.shard, in.d.commitAttempts = name, shard, 16
	return in, nil
}

func (p *opsPhase) addQuiet(q quiet) {
	p.mu.Lock()
	p.quiets = append(p.quiets, q)
	p.mu.Unlock()
}

// eachInst runs f on every instance at once and joins the errors.
func (p *opsPhase) eachInst(f func(in *opsInst) error) error {
	errs := make([]error, len(p.insts))
	var wg sync.WaitGroup
	for i, in := range p.insts {
		wg.Go(func() {
			if err := f(in); err != nil {
				errs[i] = fmt.Errorf("%s: %w", in.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// execute runs the loads and the selected faults 12-14 with recovery
// between, then stops the loads.
func (p *opsPhase) execute(ctx context.Context) {
	for _, in := range p.insts {
		in.d.Start(ctx)
		in.sink.Start(4, 2*time.Second)
	}
	p.wins = runFaults(ctx, p, opFaults, phaseRun{cfg: p.cfg, label: "embedded ", warmup: p.cfg.OpsWarmup, violate: p.violate, logf: p.logf, recovered: p.waitRecovered})
	for _, in := range p.insts {
		in.d.Stop(40 * time.Second)
	}
	p.joinPending()
}

// violate records a violation of the phase (in the first instance's
// ledger: all of them are reported together).
func (p *opsPhase) violate(kind, format string, args ...any) {
	p.insts[0].l.violate(kind, format, args...)
}

// waitRecovered waits until every instance is ready and has answered 200
// to its load for a /generate sent after since.
func (p *opsPhase) waitRecovered(ctx context.Context, since time.Time, timeout time.Duration) (time.Time, error) {
	return waitRecovered(ctx, timeout, 100*time.Millisecond, func() string { return p.recoveredNow(ctx, since) })
}

func (p *opsPhase) recoveredNow(ctx context.Context, since time.Time) string {
	for _, in := range p.insts {
		if in.Exited() {
			return in.name + " is not running"
		}
		if code, err := p.get(ctx, in.url+"/health/ready"); err != nil || code != http.StatusOK {
			return fmt.Sprintf("%s /health/ready: %d %v", in.name, code, err)
		}
		served := false
		for _, res := range in.l.resultsSince(since) {
			served = served || res.status == http.StatusOK
		}
		if !served {
			return in.name + " has not answered 200 to its load yet"
		}
	}
	return ""
}

// get returns the status of a GET.
func (p *opsPhase) get(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// results returns the requests of every instance's load.
func (p *opsPhase) results() []result {
	var out []result
	for _, in := range p.insts {
		out = append(out, in.l.Results()...)
	}
	return out
}

// Close stops the instances and the senders and unmounts the volumes
// (after copying the audit logs to ops/<name>-audit/, small and what a
// failed check needs).
func (p *opsPhase) Close() error {
	var errs []error
	for _, in := range p.insts {
		in.sink.Close()
		if err := in.Terminate(20 * time.Second); err != nil {
			errs = append(errs, err)
		}
		in.SaveLog()
		errs = append(errs, copyLogs(in.audMnt, filepath.Join(p.dir, "ops", in.name+"-audit")))
	}
	for i := len(p.mounts) - 1; i >= 0; i-- {
		errs = append(errs, unmount(p.mounts[i]))
	}
	p.mounts = nil
	return errors.Join(errs...)
}

// copyLogs copies the *.log files of src into dst.
func copyLogs(src, dst string) error {
	paths, err := filepath.Glob(filepath.Join(src, "*.log"))
	if err != nil || len(paths) == 0 {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(path)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
