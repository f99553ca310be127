package redisharness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// masterName is the name the Sentinels monitor the primary under.
const masterName = "idgen"

// Limits of StartReplicated: larger groups do not fit a test box.
const (
	maxReplicas  = 15
	maxSentinels = 9
)

// Group is a primary with replicas, watched by Sentinels under the master
// name "idgen" with quorum Sentinels/2+1, down-after-milliseconds 1000 and
// failover-timeout 5000. Its methods are safe for concurrent use.
type Group struct {
	env         *env
	data        []*Server // data[0] is the first primary, then the replicas
	sentinels   []*Server
	sentinelIDs map[*Server]string // fixed run ids, see sentinelConf

	mu      sync.Mutex
	primary *Server // the primary as last seen through the Sentinels
	closed  bool
}

// StartReplicated starts a primary ("redis0"), replicas ("redis1"...) and
// sentinels ("sentinel0"...; none is allowed). It returns when every replica
// has finished its initial sync (master_link_status:up and the primary
// counts them) and every Sentinel names the primary, knows every replica
// with a live link and every other Sentinel. Port retries, cleanup on error
// and errors are as for StartStandalone; also an error for counts out of
// range (replicas 0..15, sentinels 0..9) or MinReplicasToWrite > replicas.
func StartReplicated(ctx context.Context, opts Options, replicas, sentinels int) (*Group, error) {
	switch {
	case replicas < 0 || replicas > maxReplicas:
		return nil, fmt.Errorf("redisharness: %d replicas, want 0..%d", replicas, maxReplicas)
	case sentinels < 0 || sentinels > maxSentinels:
		return nil, fmt.Errorf("redisharness: %d sentinels, want 0..%d", sentinels, maxSentinels)
	case opts.MinReplicasToWrite > replicas:
		return nil, fmt.Errorf("redisharness: MinReplicasToWrite = %d with %d replicas: the primary would refuse every write", opts.MinReplicasToWrite, replicas)
	}
	var need binary
	if sentinels > 0 {
		need |= binSentinel
	}
	e, err := newEnv(opts, need)
	if err != nil {
		return nil, err
	}
	g := &Group{env: e, sentinelIDs: make(map[*Server]string)}
	for i := range 1 + replicas {
		g.data = append(g.data, e.newServer("redis"+strconv.Itoa(i), kindRedis))
	}
	for i := range sentinels {
		s := e.newServer("sentinel"+strconv.Itoa(i), kindSentinel)
		g.sentinels = append(g.sentinels, s)
		g.sentinelIDs[s] = runID()
	}
	g.primary = g.data[0]
	what := fmt.Sprintf("group of 1 primary, %d replicas, %d sentinels", replicas, sentinels)
	if err := e.start(ctx, what, g.startOnce, g.killAll); err != nil {
		return nil, err
	}
	return g, nil
}

// StartReplicatedT is StartReplicated for tests, as StartStandaloneT is for
// StartStandalone.
func StartReplicatedT(t testing.TB, opts Options, replicas, sentinels int) *Group {
	t.Helper()
	return startT(t, &opts, "replicated Redis", func(ctx context.Context) (*Group, error) {
		return StartReplicated(ctx, opts, replicas, sentinels)
	})
}

// runID is a Sentinel run id: 40 random hex digits.
func runID() string {
	b := make([]byte, 20)
	rand.Read(b) // never fails (crypto/rand doc)
	return hex.EncodeToString(b)
}

// startOnce is one start attempt on fresh ports.
func (g *Group) startOnce(ctx context.Context) error {
	e := g.env
	all := append(slices.Clone(g.data), g.sentinels...)
	if err := e.assignPorts(all, false); err != nil {
		return err
	}
	primary := g.data[0]
	err := launchReady(ctx, g.data, func(s *Server) string {
		if s == primary {
			return e.redisConf(s, 0, false)
		}
		return e.redisConf(s, primary.port, false)
	})
	if err != nil {
		return err
	}
	if err := g.waitSync(ctx); err != nil {
		return err
	}
	if len(g.sentinels) == 0 {
		return nil
	}
	if err := launchReady(ctx, g.sentinels, g.sentinelConf); err != nil {
		return err
	}
	// A Sentinel that dialed a peer before it listened retries only after
	// a second (its reconnect period); this wait may include that second.
	return poll(ctx, "sentinels to agree", all, g.sentinelsAgree)
}

// waitSync waits until every replica has synced with the first primary.
func (g *Group) waitSync(ctx context.Context) error {
	primary, replicas := g.data[0], g.data[1:]
	return poll(ctx, "replicas to sync", g.data, func(ctx context.Context) error {
		for _, r := range replicas {
			info, err := r.do(ctx, []string{"INFO", "replication"})
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			if st := infoField(info[0], "master_link_status"); st != "up" {
				return fmt.Errorf("%s: master_link_status %q", r.name, st)
			}
		}
		info, err := primary.do(ctx, []string{"INFO", "replication"})
		if err != nil {
			return fmt.Errorf("%s: %w", primary.name, err)
		}
		if n := infoField(info[0], "connected_slaves"); n != strconv.Itoa(len(replicas)) {
			return fmt.Errorf("%s: connected_slaves %s, want %d", primary.name, n, len(replicas))
		}
		return nil
	})
}

// sentinelsAgree checks that every Sentinel names the first primary as
// master, sees it up, and has live links to every replica and every other
// Sentinel.
func (g *Group) sentinelsAgree(ctx context.Context) error {
	want := g.data[0].Addr()
	for _, s := range g.sentinels {
		r, err := s.do(ctx,
			[]string{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName},
			[]string{"SENTINEL", "MASTER", masterName},
			[]string{"SENTINEL", "REPLICAS", masterName},
			[]string{"SENTINEL", "SENTINELS", masterName},
		)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if got := hostPort(r[0]); got != want {
			return fmt.Errorf("%s: master %q, want %s", s.name, got, want)
		}
		if flags := pairs(r[1])["flags"]; flags != "master" {
			return fmt.Errorf("%s: master flags %q", s.name, flags)
		}
		for _, list := range []struct {
			reply any
			flags string
			n     int
		}{{r[2], "slave", len(g.data) - 1}, {r[3], "sentinel", len(g.sentinels) - 1}} {
			peers, _ := list.reply.([]any)
			if len(peers) != list.n {
				return fmt.Errorf("%s: knows %d %ss, want %d", s.name, len(peers), list.flags, list.n)
			}
			for _, p := range peers {
				if m := pairs(p); m["flags"] != list.flags {
					return fmt.Errorf("%s: %s %s:%s has flags %q", s.name, list.flags, m["ip"], m["port"], m["flags"])
				}
			}
		}
	}
	return nil
}

// MasterName is the name the Sentinels monitor the primary under: "idgen".
func (g *Group) MasterName() string { return masterName }

// Sentinels returns the Sentinels, in start order.
func (g *Group) Sentinels() []*Server { return slices.Clone(g.sentinels) }

// SentinelAddrs returns the Sentinels' addresses, in start order.
func (g *Group) SentinelAddrs() []string {
	addrs := make([]string, len(g.sentinels))
	for i, s := range g.sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// TLSFiles is Server.TLSFiles; every process shares the same files.
func (g *Group) TLSFiles() (caPEM, clientCertPEM, clientKeyPEM string) { return g.env.tlsPaths() }

// Dir is the working directory; member m lives in Dir()/m.Name().
func (g *Group) Dir() string { return g.env.dir }

// Primary returns the data node the Sentinels currently name as master (the
// answer of most of the running Sentinels, asked with a 2 s bound). Without
// Sentinels, or when none answers, it returns the last primary seen, at
// first "redis0". Right after KillPrimary it is still the killed node, until
// the Sentinels fail over.
func (g *Group) Primary() *Server {
	ctx, cancel := context.WithTimeout(context.Background(), 2*probeTimeout)
	defer cancel()
	addrs := g.masterAddrs(ctx)
	votes := map[string]int{}
	best := ""
	for _, s := range g.sentinels { // in order, so ties go to the first
		addr := addrs[s]
		if addr == "" {
			continue
		}
		votes[addr]++
		if votes[addr] > votes[best] {
			best = addr
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.byAddr(best); s != nil {
		g.primary = s
	}
	return g.primary
}

// Replicas returns the data nodes other than Primary(), in start order,
// running or not.
func (g *Group) Replicas() []*Server {
	p := g.Primary()
	var rs []*Server
	for _, s := range g.data {
		if s != p {
			rs = append(rs, s)
		}
	}
	return rs
}

// KillPrimary SIGKILLs Primary() and returns it; pass its Addr to
// WaitFailover. Errors: ErrClosed, Server.Kill's.
func (g *Group) KillPrimary() (*Server, error) {
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	p := g.Primary()
	return p, p.Kill()
}

// masterAddrs asks every running Sentinel in parallel for the master's
// address; "" for a Sentinel that did not answer. Frozen and dead Sentinels
// are skipped.
func (g *Group) masterAddrs(ctx context.Context) map[*Server]string {
	addrs := make(map[*Server]string)
	var mu sync.Mutex
	_ = each(g.sentinels, func(s *Server) error {
		if !s.running() {
			return nil
		}
		r, err := s.do(ctx, []string{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName})
		addr := ""
		if err == nil {
			addr = hostPort(r[0])
		}
		mu.Lock()
		addrs[s] = addr
		mu.Unlock()
		return nil
	})
	return addrs
}

// byAddr returns the data node at addr, nil if none.
func (g *Group) byAddr(addr string) *Server {
	for _, s := range g.data {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// WaitFailover polls until every running Sentinel names the same master
// other than oldAddr and that node answers ROLE with "master"; it returns
// the new master's address. Errors: ErrNoSentinels, ErrClosed, ctx's error
// wrapped with the last state seen.
func (g *Group) WaitFailover(ctx context.Context, oldAddr string) (string, error) {
	if len(g.sentinels) == 0 {
		return "", ErrNoSentinels
	}
	var newAddr string
	err := poll(ctx, "failover from "+oldAddr, nil, func(ctx context.Context) error {
		g.mu.Lock()
		closed := g.closed
		g.mu.Unlock()
		if closed {
			return ErrClosed
		}
		addrs := g.masterAddrs(ctx)
		if len(addrs) == 0 {
			return fmt.Errorf("no sentinel running: %w", ErrNotRunning)
		}
		addr := ""
		for s, a := range addrs {
			switch {
			case a == "":
				return fmt.Errorf("%s did not answer", s.name)
			case a == oldAddr:
				return fmt.Errorf("%s still names %s", s.name, oldAddr)
			case addr != "" && a != addr:
				return fmt.Errorf("sentinels disagree: %s and %s", addr, a)
			}
			addr = a
		}
		p := g.byAddr(addr)
		if p == nil {
			return fmt.Errorf("sentinels name %s, not a member", addr)
		}
		r, err := p.do(ctx, []string{"ROLE"})
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if role, _ := r[0].([]any); len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s: ROLE %v, want master", p.name, r[0])
		}
		g.mu.Lock()
		g.primary = p
		g.mu.Unlock()
		newAddr = addr
		return nil
	})
	return newAddr, err
}

// Close kills every process of the group, waits for them, and removes the
// working directory if StartReplicated created it. It is idempotent.
func (g *Group) Close() error {
	if !proc.MarkClosed(&g.mu, &g.closed) {
		return nil
	}
	err := each(append(slices.Clone(g.data), g.sentinels...), (*Server).Close)
	return errors.Join(err, g.env.removeDir())
}

// killAll kills every process, for a start attempt that failed.
func (g *Group) killAll() error {
	return each(append(slices.Clone(g.data), g.sentinels...), (*Server).Kill)
}
