package redisharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// Limits of StartCluster: redis-cli --cluster create wants at least 3
// masters; more do not fit a test box.
const (
	minMasters = 3
	maxMasters = 9
)

// Cluster is a Redis Cluster of masters without replicas, each node on a
// port whose +10000 cluster bus port was free too. Its methods are safe for
// concurrent use.
type Cluster struct {
	env   *env
	nodes []*Server

	mu     sync.Mutex
	closed bool
}

// StartCluster starts masters nodes ("node0"...; 0 means 3) with
// cluster-enabled yes and cluster-node-timeout 2000, joins them with
// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, and
// returns when every node reports cluster_state:ok and knows every other.
// Port retries, cleanup on error and errors are as for StartStandalone;
// also an error for masters out of 3..9, MinReplicasToWrite > 0, or
// redis-cli failing (with its output).
func StartCluster(ctx context.Context, opts Options, masters int) (*Cluster, error) {
	if masters == 0 {
		masters = minMasters
	}
	switch {
	case masters < minMasters || masters > maxMasters:
		return nil, fmt.Errorf("redisharness: %d cluster masters, want %d..%d", masters, minMasters, maxMasters)
	case opts.MinReplicasToWrite > 0:
		return nil, errors.New("redisharness: MinReplicasToWrite in a cluster without replicas would refuse every write")
	}
	e, err := newEnv(opts, binCLI)
	if err != nil {
		return nil, err
	}
	c := &Cluster{env: e}
	for i := range masters {
		c.nodes = append(c.nodes, e.newServer("node"+strconv.Itoa(i), kindRedis))
	}
	what := fmt.Sprintf("cluster of %d masters", masters)
	killAll := func() error { return each(c.nodes, (*Server).Kill) }
	if err := e.start(ctx, what, c.startOnce, killAll); err != nil {
		return nil, err
	}
	return c, nil
}

// StartClusterT is StartCluster for tests, as StartStandaloneT is for
// StartStandalone.
func StartClusterT(t testing.TB, opts Options, masters int) *Cluster {
	t.Helper()
	return startT(t, &opts, "Redis cluster", func(ctx context.Context) (*Cluster, error) {
		return StartCluster(ctx, opts, masters)
	})
}

// startOnce is one start attempt on fresh ports.
func (c *Cluster) startOnce(ctx context.Context) error {
	e := c.env
	if err := e.assignPorts(c.nodes, true); err != nil {
		return err
	}
	err := launchReady(ctx, c.nodes, func(s *Server) string { return e.redisConf(s, 0, true) })
	if err != nil {
		return err
	}
	if err := c.create(ctx); err != nil {
		return err
	}
	return poll(ctx, "cluster_state:ok", c.nodes, func(ctx context.Context) error {
		for _, s := range c.nodes {
			r, err := s.do(ctx, []string{"CLUSTER", "INFO"})
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if st := infoField(r[0], "cluster_state"); st != "ok" {
				return fmt.Errorf("%s: cluster_state %q", s.name, st)
			}
			if n := infoField(r[0], "cluster_known_nodes"); n != strconv.Itoa(len(c.nodes)) {
				return fmt.Errorf("%s: cluster_known_nodes %s, want %d", s.name, n, len(c.nodes))
			}
		}
		return nil
	})
}

// create runs redis-cli --cluster create; its output goes to
// cluster-create.log in the working directory. The password travels in the
// environment (REDISCLI_AUTH), not on the command line.
func (c *Cluster) create(ctx context.Context) error {
	e := c.env
	args := []string{"--cluster", "create"}
	for _, s := range c.nodes {
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if e.tls != nil {
		args = append(args, "--tls", "--cacert", e.tls.CAFile, "--cert", e.tls.ClientCert, "--key", e.tls.ClientKey)
	}
	cmd := exec.CommandContext(ctx, e.cli, args...)
	cmd.Dir = e.dir
	cmd.Env = os.Environ()
	if e.opts.Password != "" {
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+e.opts.Password)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	logPath := filepath.Join(e.dir, "cluster-create.log")
	if werr := os.WriteFile(logPath, out.Bytes(), 0o644); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		return fmt.Errorf("redisharness: redis-cli --cluster create: %w\n%s", err, proc.Tail(logPath, out.Bytes(), 20))
	}
	e.opts.Logf("redisharness: cluster created by redis-cli")
	return nil
}

// Addrs returns every node's address, in start order.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Nodes returns every node, in start order.
func (c *Cluster) Nodes() []*Server { return slices.Clone(c.nodes) }

// TLSFiles is Server.TLSFiles; every node shares the same files.
func (c *Cluster) TLSFiles() (caPEM, clientCertPEM, clientKeyPEM string) { return c.env.tlsPaths() }

// Dir is the working directory; node n lives in Dir()/n.Name().
func (c *Cluster) Dir() string { return c.env.dir }

// Close kills every node, waits for them, and removes the working directory
// if StartCluster created it. It is idempotent.
func (c *Cluster) Close() error {
	if !proc.MarkClosed(&c.mu, &c.closed) {
		return nil
	}
	return errors.Join(each(c.nodes, (*Server).Close), c.env.removeDir())
}
