package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/zkharness"
)

// batchCount is the count of the batch runs.
const batchCount = 1000

// target is one wrk workload: an instance, a request body and a number of
// connections.
type target struct {
	in      *instance
	key     string // instance key, "-batch" appended for count=1000
	name    string
	body    string
	ids     float64 // IDs per request
	conns   int     // wrk connections
	samples []sample
}

// sample is one measured run: wrk's figures and the deltas of the
// instance's counters around it.
type sample struct {
	w                               wrkResult
	ids, flushes, claims, conflicts float64
	zkWrites, redisCmds, redisMem   float64
	flushSecs                       float64             // time spent in registry flushes
	flushBuckets                    map[float64]float64 // flush duration histogram: le (s) → count
	cpu                             cpuUse
}

// lab holds the servers of an HTTP bench run.
type lab struct {
	cfg    config
	zkAddr string
	zkPids []int
}

// httpBench starts ZooKeeper and Redis from the test harnesses and every
// instance, measures cold starts, then runs wrk against every target in
// alternation and fills res.
func httpBench(ctx context.Context, cfg config, res *results, out io.Writer) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found; run scripts/install-deps.sh (make deps)")
	}
	if _, err := os.Stat(cfg.idgen); err != nil {
		return fmt.Errorf("-idgen: %w (run make build)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "idgen-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(out, "starting ZooKeeper and Redis (harness/zkharness, harness/redisharness)...")
	zkEns, err := zkharness.Start(ctx, zkharness.Options{Servers: 1})
	if err != nil {
		return err
	}
	defer zkEns.Close()
	rds, err := redisharness.StartStandalone(ctx, redisharness.Options{})
	if err != nil {
		return err
	}
	defer rds.Close()
	grp, err := redisharness.StartReplicated(ctx, redisharness.Options{AppendFsyncAlways: true, MinReplicasToWrite: 1}, 1, 0)
	if err != nil {
		return err
	}
	defer grp.Close()
	naiveRds, err := redisharness.StartStandalone(ctx, redisharness.Options{})
	if err != nil {
		return err
	}
	defer naiveRds.Close()
	keyFile := filepath.Join(dir, "shared.key")
	if err := os.WriteFile(keyFile, []byte("k1 "+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		return err
	}
	l := &lab{cfg: cfg, zkAddr: zkEns.ConnectString(), zkPids: childPids("java")}

	sec, err := writeSecureFiles(dir)
	if err != nil {
		return fmt.Errorf("TLS and JWT material: %w", err)
	}
	insts := instances(cfg.idgen, self, l.zkAddr, keyFile, rds, grp, naiveRds)
	// The secured instance runs right after the plain one in every round.
	for i, in := range insts {
		if in.key == plainKey {
			insts = append(insts[:i+1], append([]*instance{secureInstance(cfg.idgen, sec)}, insts[i+1:]...)...)
			break
		}
	}
	for _, in := range insts {
		if len(in.redis) > 0 {
			in.rdb = redis.NewClient(&redis.Options{Addr: in.redis[0].Addr()})
			defer in.rdb.Close()
		}
		if in.pprof {
			if in.pprofAddr, err = proc.FreeAddr(); err != nil {
				return err
			}
		}
	}

	fmt.Fprintf(out, "cold starts (%d rounds)...\n", cfg.coldStarts)
	if res.ColdStart, err = coldStarts(ctx, insts, cfg.coldStarts, dir); err != nil {
		return err
	}
	for _, in := range insts {
		p, addr, _, err := launch(ctx, in, filepath.Join(dir, in.key))
		if err != nil {
			return fmt.Errorf("start %s: %w", in.name, err)
		}
		in.proc, in.addr = p, addr
		defer stop(p)
	}

	targets, latTargets := plan(insts, cfg)
	all := append(append([]*target(nil), targets...), latTargets...)
	fmt.Fprintf(out, "warm-up: %v per target...\n", cfg.warmup)
	for _, t := range all {
		if _, err := runWrk(ctx, t.in.url("/generate"), t.body, t.in.headers(), t.conns, cfg.warmup); err != nil {
			return fmt.Errorf("warm-up %s: %w", t.name, err)
		}
	}
	for r := range cfg.rounds {
		for _, t := range all {
			s, err := l.measure(ctx, t)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, t.name, err)
			}
			t.samples = append(t.samples, s)
			fmt.Fprintf(out, "round %d/%d  %-42s %10.0f req/s %12.0f IDs/s  p99 %-9s cpu: server %.2f redis %.2f zk %.2f wrk %.2f rest %.2f\n",
				r+1, cfg.rounds, t.name, s.w.rps, s.w.rps*t.ids, fmtDur(s.w.p99), s.cpu.Server, s.cpu.Redis, s.cpu.ZK, s.cpu.Wrk, s.cpu.Rest)
		}
	}
	collect(res, targets, latTargets)
	for _, t := range targets {
		if !t.in.pprof {
			continue
		}
		fmt.Fprintf(out, "profiling %s for %ds...\n", t.name, cfg.profileSecs)
		p, err := l.profileRun(ctx, t, dir)
		if err != nil {
			return fmt.Errorf("profile %s: %w", t.name, err)
		}
		res.Profiles = append(res.Profiles, p)
	}
	res.Notes = append(res.Notes, modeNotes(cfg)...)
	return nil
}

// plan lists the wrk targets: every instance with single IDs, then the
// batch ones, at -connections; and, as latTargets, the instances of the p99
// targets (stated at -latency-connections) once more at that count, none
// when it equals -connections (collect reuses the throughput runs).
func plan(insts []*instance, cfg config) (targets, latTargets []*target) {
	for _, in := range insts {
		targets = append(targets, &target{in: in, key: in.key, name: in.name, ids: 1, conns: cfg.conns})
	}
	for _, in := range insts {
		if in.batch {
			targets = append(targets, &target{in: in, key: in.key + "-batch", name: in.name + ", count=1000", body: fmt.Sprintf(`{"count":%d}`, batchCount), ids: batchCount, conns: cfg.conns})
		}
	}
	if cfg.latConns != cfg.conns {
		for _, in := range insts {
			if latencyInstance(in.key) {
				latTargets = append(latTargets, &target{in: in, key: in.key, name: fmt.Sprintf("%s, %d connections", in.name, cfg.latConns), ids: 1, conns: cfg.latConns})
			}
		}
	}
	return targets, latTargets
}

// collect puts the medians of the measured targets into res: the
// throughput runs into HTTP and Coord, the latency runs into Latency (the
// throughput runs of the same instances when there are none).
func collect(res *results, targets, latTargets []*target) {
	for _, t := range targets {
		h := t.result()
		res.HTTP = append(res.HTTP, h)
		if t.in.metrics {
			res.Coord = append(res.Coord, t.coord())
		}
		if len(latTargets) == 0 && !h.Batch && latencyInstance(t.key) {
			res.Latency = append(res.Latency, h)
			res.LatencyReused = true
		}
	}
	for _, t := range latTargets {
		h := t.result()
		h.Name = t.in.name
		res.Latency = append(res.Latency, h)
	}
}

// latencyInstance tells the single-ID instances whose p99 targets are
// stated at -latency-connections.
func latencyInstance(key string) bool { return key == "redis" || key == "durable" }

// instances are the servers under test, the ceiling first.
func instances(idgen, self, zkAddr, keyFile string, rds *redisharness.Server, grp *redisharness.Group, naiveRds *redisharness.Server) []*instance {
	idgenArgs := func(listen, dataDir string, extra ...string) []string {
		return append([]string{idgen, "serve", "--dev", "--listen", listen, "--data-dir", dataDir,
			"--log-level", "warn", "--audit-log", dataDir + ".audit.log"}, extra...)
	}
	zkRedis := func(root string, r *redisharness.Server, extra ...string) []string {
		return append([]string{"--zookeeper", zkAddr, "--zookeeper-root", root, "--redis-addr", r.Addr(), "--metadata-key-file", keyFile}, extra...)
	}
	primary := grp.Primary()
	var insts []*instance
	insts = append(insts,
		&instance{key: "ceiling", name: "ceiling: fasthttp constant ID",
			argv: func(l, _ string) []string { return []string{self, "ceiling", l} }},

		&instance{key: "bbolt", name: "idgen embedded (bbolt)", metrics: true, batch: true, cold: true,
			argv: func(l, d string) []string { return idgenArgs(l, d, "--store-engine", "bbolt") }},
	)
	pebbleInst := &instance{key: "pebble", name: "idgen embedded (pebble)", metrics: true, batch: true, cold: true, pprof: true}
	pebbleInst.argv = func(l, d string) []string { return idgenArgs(l, d, "--pprof-listen", pebbleInst.pprofAddr) }
	insts = append(insts[:1], append([]*instance{pebbleInst}, insts[1:]...)...)
	redisInst := &instance{key: "redis", name: "idgen + Redis (ZooKeeper, no WAIT)", metrics: true, zk: true, batch: true, pprof: true, cold: true,
		redis: []*redisharness.Server{rds}}
	redisInst.argv = func(l, d string) []string {
		return idgenArgs(l, d, append(zkRedis("/bench-redis", rds), "--pprof-listen", redisInst.pprofAddr)...)
	}
	durable := &instance{key: "durable", name: "idgen + ZooKeeper + Redis durable (WAIT 1)", metrics: true, zk: true, batch: true, pprof: true, cold: true,
		redis: append([]*redisharness.Server{primary}, grp.Replicas()...)}
	durable.argv = func(l, d string) []string {
		return idgenArgs(l, d, append(zkRedis("/bench-durable", primary, "--redis-wait-replicas", "1"), "--pprof-listen", durable.pprofAddr)...)
	}
	naiveInst := &instance{key: "naive", name: "naive: per-request ZooKeeper CAS + Redis SETNX", metrics: true, zk: true, cold: true, refuses: true,
		redis: []*redisharness.Server{naiveRds},
		argv:  func(l, _ string) []string { return []string{self, "naive", l, zkAddr, naiveRds.Addr()} }}
	return append(insts, redisInst, durable, naiveInst)
}

// measure runs wrk once against t and takes the deltas around it.
func (l *lab) measure(ctx context.Context, t *target) (sample, error) {
	in := t.in
	before, err := l.counters(ctx, in)
	if err != nil {
		return sample{}, err
	}
	c0 := takeCPU(in.proc.Pid(), in.redisPids(), l.zkPids)
	w, err := runWrk(ctx, in.url("/generate"), t.body, in.headers(), t.conns, l.cfg.duration)
	if err != nil {
		return sample{}, err
	}
	c1 := takeCPU(in.proc.Pid(), in.redisPids(), l.zkPids)
	after, err := l.counters(ctx, in)
	if err != nil {
		return sample{}, err
	}
	if err := in.checkAnswers(&w); err != nil {
		return sample{}, err
	}
	d := func(k string) float64 { return after[k] - before[k] }
	s := sample{w: w, cpu: c0.use(c1, w.cpu),
		ids: d("idgen_ids_issued_total"), flushes: d("idgen_registry_batch_size_count"),
		claims: d("idgen_range_claims_total"), conflicts: d("idgen_zookeeper_cas_conflicts_total"),
		zkWrites: d("zxid"), redisCmds: d("total_commands_processed"), redisMem: d("used_memory"),
		flushSecs: d("idgen_registry_flush_seconds_sum"), flushBuckets: bucketDeltas(before, after, "idgen_registry_flush_seconds_bucket")}
	if !in.metrics {
		s.ids = w.requests * t.ids
	}
	return s, nil
}

// checkAnswers fails a run with non-2xx answers, except for an instance
// that refuses under load (the strawman), whose requests/s it reduces to
// the answers that issued an ID.
func (in *instance) checkAnswers(w *wrkResult) error {
	switch {
	case w.non2xx == 0:
		return nil
	case in.refuses:
		if w.elapsed > 0 {
			w.rps = (w.requests - float64(w.non2xx)) / w.elapsed.Seconds()
		}
		return nil
	}
	var stderr string
	if in.proc != nil {
		stderr = tailString(in.proc.Stderr(), 1500)
	}
	return fmt.Errorf("%d non-2xx answers of %.0f: %s", w.non2xx, w.requests, stderr)
}

// counters reads every counter measure takes deltas of, in one map.
func (l *lab) counters(ctx context.Context, in *instance) (map[string]float64, error) {
	m := map[string]float64{}
	if in.metrics {
		var err error
		if m, err = scrape(ctx, in.url("/metrics")); err != nil {
			return nil, err
		}
	}
	if in.zk {
		z, err := zxid(ctx, l.zkAddr)
		if err != nil {
			return nil, err
		}
		m["zxid"] = float64(z)
	}
	if in.rdb != nil {
		info, err := redisInfo(ctx, in.rdb, "total_commands_processed", "used_memory")
		if err != nil {
			return nil, err
		}
		for k, v := range info {
			m[k] = v
		}
	}
	return m, nil
}

// result is the medians of t's rounds.
func (t *target) result() httpResult {
	med := func(f func(sample) float64) float64 {
		xs := make([]float64, len(t.samples))
		for i, s := range t.samples {
			xs[i] = f(s)
		}
		return median(xs)
	}
	r := httpResult{Key: t.key, Inst: t.in.key, Name: t.name, Batch: t.ids > 1, IDsPerReq: t.ids, Conns: t.conns,
		RPS:  med(func(s sample) float64 { return s.w.rps }),
		P50:  time.Duration(med(func(s sample) float64 { return float64(s.w.p50) })),
		P99:  time.Duration(med(func(s sample) float64 { return float64(s.w.p99) })),
		P999: time.Duration(med(func(s sample) float64 { return float64(s.w.p999) })),
		CPU: cpuUse{Server: med(func(s sample) float64 { return s.cpu.Server }), Redis: med(func(s sample) float64 { return s.cpu.Redis }),
			ZK: med(func(s sample) float64 { return s.cpu.ZK }), Wrk: med(func(s sample) float64 { return s.cpu.Wrk }), Rest: med(func(s sample) float64 { return s.cpu.Rest })},
	}
	for _, s := range t.samples {
		r.RoundsRPS = append(r.RoundsRPS, s.w.rps)
		r.RoundsP99 = append(r.RoundsP99, s.w.p99)
		r.SockErrors += s.w.sockErrors
		r.Refused += s.w.non2xx
	}
	return r
}

// coord sums t's rounds into per-ID coordination figures; NaN where the
// instance has no such cost.
func (t *target) coord() coordResult {
	var sum sample
	for _, s := range t.samples {
		sum.ids += s.ids
		sum.flushes += s.flushes
		sum.claims += s.claims
		sum.conflicts += s.conflicts
		sum.zkWrites += s.zkWrites
		sum.redisCmds += s.redisCmds
		sum.redisMem += s.redisMem
		sum.flushSecs += s.flushSecs
		if sum.flushBuckets == nil {
			sum.flushBuckets = map[float64]float64{}
		}
		for le, n := range s.flushBuckets {
			sum.flushBuckets[le] += n
		}
	}
	nan := math.NaN()
	c := coordResult{Key: t.key, Name: t.name, IDs: sum.ids, ZKWritesPer1M: nan, CASConflictsPerID: nan, RedisRTPerID: nan, RedisCmdsPerID: nan, BytesPerID: nan,
		RangeClaimsPer1M: 1e6 * sum.claims / sum.ids, RegistryWritesPerID: sum.flushes / sum.ids,
		FlushMeanMS: nan, FlushP99MS: nan}
	if sum.flushes > 0 && len(sum.flushBuckets) > 0 { // the naive server has no flush histogram
		c.FlushMeanMS = 1e3 * sum.flushSecs / sum.flushes
		c.FlushP99MS = 1e3 * bucketQuantile(sum.flushBuckets, 0.99)
	}
	if t.in.zk {
		c.ZKWritesPer1M = 1e6 * sum.zkWrites / sum.ids
		c.CASConflictsPerID = sum.conflicts / sum.ids
	}
	if t.in.rdb != nil {
		c.RedisRTPerID = sum.flushes / sum.ids
		c.RedisCmdsPerID = sum.redisCmds / sum.ids
		c.BytesPerID = sum.redisMem / sum.ids
	}
	return c
}

// latencyNote says which runs the p99 targets are judged on.
func latencyNote(cfg config) string {
	if cfg.latConns == cfg.conns {
		return fmt.Sprintf("The p99 targets (stated at %d connections) are judged on the throughput runs: -latency-connections equals -connections (%d).", statedLatConns, cfg.conns)
	}
	return fmt.Sprintf("The ratio targets are stated under wrk with %d connections, the p99 targets at %d: every round also runs the single-ID idgen + Redis and durable instances "+
		"with wrk -c%d (same duration, warm-up and alternation; not in the throughput, coordination or CPU tables, not profiled), and the p99 targets use their medians.", statedConns, statedLatConns, cfg.latConns)
}

// modeNotes say how the modes were set up.
func modeNotes(cfg config) []string {
	return []string{
		"\"idgen + Redis\" runs with ZooKeeper: `idgen serve --redis-addr` without `--zookeeper` is refused " +
			"(\"--redis-addr needs --zookeeper: instances sharing a registry must also share the counter ranges\", cmd/idgen/serve.go), " +
			"so \"idgen + Redis\" is ZooKeeper + Redis without WAIT (a standalone Redis without persistence) and \"durable\" is " +
			"ZooKeeper + Redis with `--redis-wait-replicas 1` against a primary with one replica (appendonly, appendfsync always, min-replicas-to-write 1).",
		"ZooKeeper is one standalone server from harness/zkharness (forceSync=no, as in the tests); each mode has its own root, the naive design its own Redis.",
		fmt.Sprintf("wrk -t2 -c%d --latency --timeout 10s, POST /generate; one wrk run is %v, after a %v warm-up per target; targets alternate within each round.", cfg.conns, cfg.duration, cfg.warmup),
		latencyNote(cfg),
		"Everything (wrk, the servers, ZooKeeper, Redis) shares this machine's cores; the CPU table shows who used them during the runs.",
		"\"TLS + JWT\" is the embedded pebble instance without `--dev`: `--tls-cert`/`--tls-key` (a CA and certificate made for the run) and `--jwt-public-key` (ES256) with issuer and audience; " +
			"wrk connects with HTTPS and sends one token with `-H`. Its requests are not in the coordination table (its /metrics needs a token; it coordinates nothing).",
	}
}

// bucketDeltas returns the growth of each cumulative bucket of the Prometheus
// histogram name between two scrapes, by upper bound in seconds (+Inf
// included).
func bucketDeltas(before, after map[string]float64, name string) map[float64]float64 {
	out := map[float64]float64{}
	prefix := name + `{le="`
	for k, v := range after {
		if !strings.HasPrefix(k, prefix) || !strings.HasSuffix(k, `"}`) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(k, prefix), `"}`), 64)
		if err != nil {
			continue
		}
		out[le] = v - before[k]
	}
	return out
}

// bucketQuantile returns the upper bound of the cumulative histogram bucket
// that holds quantile q (NaN without observations; +Inf when it lies past
// the last finite bucket). A bound, not an interpolation: the figure says
// "q of the observations took at most this".
func bucketQuantile(buckets map[float64]float64, q float64) float64 {
	les := make([]float64, 0, len(buckets))
	total := 0.0
	for le, n := range buckets {
		les = append(les, le)
		total = max(total, n)
	}
	if total <= 0 {
		return math.NaN()
	}
	sort.Float64s(les)
	for _, le := range les {
		if buckets[le] >= q*total {
			return le
		}
	}
	return math.Inf(1)
}
