package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/tests/internal/idgenapi"
)

// Names of the processes.
const (
	instA, instB, instC = "idgen-a", "idgen-b", "idgen-c"
	zkRoot              = "/chaos"
	readyTimeout        = 90 * time.Second
)

// cluster is everything the run starts: a 3-node ZooKeeper ensemble,
// Redis primary + replica + 3 Sentinels (append-only fsync always,
// min-replicas-to-write 1), three idgen instances in durable mode
// (--redis-wait-replicas 1), each reaching ZooKeeper through a proxy of
// its own (idgen-c also Redis, see redisLink), HAProxy in front of them,
// and two compensate workers.
type cluster struct {
	cfg  *Config
	dir  string
	logf func(string, ...any)

	zk      *zkharness.Ensemble
	redis   *redisharness.Group
	link    *redisLink
	insts   []*instance
	workers []*process
	haproxy *process
	lbURL   string
	client  *http.Client // health probes

	clockFile string // idgen-a's fault clock offset file
}

// startCluster starts everything, in dependency order, or nothing.
func startCluster(ctx context.Context, cfg *Config, dir string, logf func(string, ...any)) (_ *cluster, err error) {
	c := &cluster{cfg: cfg, dir: dir, logf: logf, client: proc.NewClient(16, 5*time.Second), clockFile: filepath.Join(dir, "clock-offset-"+instA)}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for _, sub := range []string{"audit", "logs", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		return nil, fmt.Errorf("haproxy not installed (scripts/install-deps.sh): %w", err)
	}
	t0 := time.Now()
	var (
		wg         sync.WaitGroup
		zerr, rerr error
	)
	wg.Go(func() {
		c.zk, zerr = zkharness.Start(ctx, zkharness.Options{Servers: 3, Dir: filepath.Join(dir, "zookeeper"), Logf: logf})
	})
	wg.Go(func() {
		c.redis, rerr = redisharness.StartReplicated(ctx, redisharness.Options{
			Dir: filepath.Join(dir, "redis"), Logf: logf, AppendFsyncAlways: true, MinReplicasToWrite: 1,
		}, 1, 3)
	})
	wg.Wait()
	if err := errors.Join(zerr, rerr); err != nil {
		return nil, err
	}
	logf("ZooKeeper (3 servers) and Redis (primary, replica, 3 Sentinels) up in %v", time.Since(t0).Round(time.Millisecond))
	if c.link, err = startRedisLink(c.redis, logf); err != nil {
		return nil, err
	}
	keyFile, err := writeKeyFile(dir)
	if err != nil {
		return nil, err
	}
	sentinelArgs := []string{"--redis-master", c.redis.MasterName(), "--redis-addr", strings.Join(c.redis.SentinelAddrs(), ",")}
	addrs := map[string]string{}
	for _, name := range []string{instA, instB, instC} {
		in, err := c.newInstance(name, keyFile, sentinelArgs)
		if err != nil {
			return nil, err
		}
		c.insts = append(c.insts, in)
		addrs[name] = in.addr
	}
	if err := startAll(ctx, c.client, c.insts); err != nil {
		return nil, err
	}
	logf("idgen instances ready (%s)", strings.Join(c.names(), ", "))
	if err := c.startHAProxy(ctx, addrs); err != nil {
		return nil, err
	}
	for i := range 2 {
		w, err := c.newWorker(fmt.Sprintf("compensate-%d", i+1), sentinelArgs)
		if err != nil {
			return nil, err
		}
		if err := w.Start(ctx, c.client, readyTimeout); err != nil {
			return nil, err
		}
		c.workers = append(c.workers, w)
	}
	logf("HAProxy at %s and 2 compensate workers ready; cluster up in %v", c.lbURL, time.Since(t0).Round(time.Millisecond))
	return c, nil
}

func writeKeyFile(dir string) (string, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	path := filepath.Join(dir, "metadata.keys")
	return path, os.WriteFile(path, []byte("k1 "+hex.EncodeToString(key)+"\n"), 0o600)
}

func (c *cluster) names() []string {
	var out []string
	for _, in := range c.insts {
		out = append(out, in.name)
	}
	return out
}

// newInstance prepares an instance: its ZooKeeper proxy, a fixed listen
// address (HAProxy names it), its data directory. idgen-c reaches Redis
// through the toxiproxy link, the others through the Sentinels; idgen-a
// reads the fault clock file.
func (c *cluster) newInstance(name, keyFile string, sentinelArgs []string) (*instance, error) {
	zp, err := startZKProxy(c.zk.Addrs())
	if err != nil {
		return nil, err
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		zp.Close()
		return nil, err
	}
	dataDir := filepath.Join(c.dir, "data", name)
	redisArgs := sentinelArgs
	if name == instC {
		redisArgs = []string{"--redis-addr", c.link.Addr()}
	}
	in := &instance{addr: addr, url: "http://" + addr, zk: zp}
	in.process = &process{name: name, bin: c.cfg.Idgen, dir: c.dir, readyURL: in.url + "/health/ready"}
	if name == instA {
		in.env = []string{"IDGEN_FAULT_CLOCK_OFFSET_FILE=" + c.clockFile}
	}
	session := c.cfg.Session.String()
	in.args = func(life int) []string {
		a := []string{"serve", "--dev", "--listen", addr, "--data-dir", dataDir,
			"--zookeeper", zp.ConnectString(), "--zookeeper-root", zkRoot, "--zookeeper-session-timeout", session,
			"--metadata-key-file", keyFile, "--audit-log", in.auditPath(life),
			"--redis-wait-replicas", "1", "--request-timeout", "5s", "--shutdown-grace", "10s"}
		return append(a, redisArgs...)
	}
	return in, nil
}

// newWorker prepares a compensate worker (durable: its transitions WAIT for
// the replica too); a killed worker's entries are taken over after 2 s.
func (c *cluster) newWorker(name string, sentinelArgs []string) (*process, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	w := &process{name: name, bin: c.cfg.Idgen, dir: c.dir, readyURL: "http://" + addr + "/health"}
	w.args = func(life int) []string {
		a := []string{"compensate", "--consumer", name, "--claim-idle", "2s", "--redis-wait-replicas", "1",
			"--audit-log", w.auditPath(life), "--metrics-listen", addr}
		return append(a, sentinelArgs...)
	}
	return w, nil
}

func (c *cluster) startHAProxy(ctx context.Context, addrs map[string]string) error {
	listen, err := proc.FreeAddr()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(c.dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(haproxyConfig(listen, c.names(), addrs, defaultHAProxyTimeouts)), 0o644); err != nil {
		return err
	}
	c.lbURL = "http://" + listen
	c.haproxy = &process{name: "haproxy", bin: "haproxy", dir: c.dir, readyURL: c.lbURL + "/health/ready",
		args: func(int) []string { return []string{"-f", cfgPath, "-db"} }}
	return c.haproxy.Start(ctx, c.client, 30*time.Second)
}

// inst returns the instance called name.
func (c *cluster) inst(name string) *instance {
	for _, in := range c.insts {
		if in.name == name {
			return in
		}
	}
	panic("no instance " + name)
}

// health asks one instance for /health.
func (c *cluster) health(ctx context.Context, in *instance) (int, health, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/health", nil)
	if err != nil {
		return 0, health{}, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, health{}, err
	}
	defer resp.Body.Close()
	var h health
	err = json.NewDecoder(resp.Body).Decode(&h)
	return resp.StatusCode, h, err
}

// metric reads one unlabelled sample from an instance's /metrics.
func (c *cluster) metric(ctx context.Context, in *instance, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, _, b, err := idgenapi.Call(ctx, c.client, http.MethodGet, in.url+"/metrics", "")
	if err != nil {
		return 0, err
	}
	return idgenapi.Sample(b, name)
}

// Close stops every process (SIGTERM, then SIGKILL), saves their output
// under logs/, and stops the servers. The directory is left to the caller.
func (c *cluster) Close() error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	stop := func(p *process) {
		if p == nil {
			return
		}
		wg.Go(func() {
			err := p.Terminate(20 * time.Second)
			p.SaveLog()
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	for _, w := range c.workers {
		stop(w)
	}
	for _, in := range c.insts {
		stop(in.process)
	}
	wg.Wait()
	if c.haproxy != nil {
		_ = c.haproxy.Kill()
		c.haproxy.SaveLog()
	}
	for _, in := range c.insts {
		in.zk.Close()
	}
	if c.link != nil {
		c.link.Close()
	}
	if c.redis != nil {
		errs = append(errs, c.redis.Close())
	}
	if c.zk != nil {
		errs = append(errs, c.zk.Close())
	}
	return errors.Join(errs...)
}
