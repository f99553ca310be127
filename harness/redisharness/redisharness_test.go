package redisharness

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/idgen/idgen/harness/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client opens a go-redis client closed in t.Cleanup; short timeouts so a
// frozen or dead server fails fast.
func client(t *testing.T, o *redis.Options) *redis.Client {
	t.Helper()
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = time.Second, time.Second, time.Second
	o.MaxRetries = -1
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func mustSet(t *testing.T, c redis.Cmdable, key, val string) {
	t.Helper()
	if err := c.Set(t.Context(), key, val, 0).Err(); err != nil {
		t.Fatalf("SET %s: %v", key, err)
	}
}

func mustGet(t *testing.T, c redis.Cmdable, key, want string) {
	t.Helper()
	got, err := c.Get(t.Context(), key).Result()
	if err != nil || got != want {
		t.Fatalf("GET %s = %q, %v; want %q", key, got, err, want)
	}
}

// pids returns the pid of every server, failing t for one not alive.
func pids(t *testing.T, servers []*Server) []int {
	t.Helper()
	var ps []int
	for _, s := range servers {
		pid := s.Pid()
		if pid == 0 {
			t.Fatalf("%s has no live process", s.Name())
		}
		ps = append(ps, pid)
	}
	return ps
}

// assertGone fails t if any pid still names a process (zombies included:
// Close must have reaped them).
func assertGone(t *testing.T, ps []int) {
	t.Helper()
	for _, pid := range ps {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Close (kill 0: %v)", pid, err)
		}
	}
}

func TestStandalone(t *testing.T) {
	began := time.Now()
	s := StartStandaloneT(t, Options{})
	t.Logf("standalone start took %v", time.Since(began).Round(time.Millisecond))
	ctx := t.Context()
	c := client(t, &redis.Options{Addr: s.Addr()})
	mustSet(t, c, "k", "v")
	mustGet(t, c, "k", "v")

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatalf("PING to a frozen server succeeded")
	}
	if err := s.Cont(); err != nil {
		t.Fatalf("Cont: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no PONG 5s after Cont")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := s.Kill(); err != nil || s.Pid() != 0 {
		t.Fatalf("Kill = %v, Pid after = %d", err, s.Pid())
	}
	if err := s.Stop(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Stop of a killed server: %v, want ErrNotRunning", err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	// Not durable by default: the restarted server starts empty.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after restart: %v, want redis.Nil", err)
	}

	ps := pids(t, []*Server{s})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertGone(t, ps)
	if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir %s still there after Close: %v", s.Dir(), err)
	}
	if err := s.Restart(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Restart after Close: %v, want ErrClosed", err)
	}
}

// TestStandaloneDurable kills a server in durable mode and expects every
// acknowledged write back after Restart, from the same port and given Dir.
func TestStandaloneDurable(t *testing.T) {
	dir := t.TempDir()
	s := StartStandaloneT(t, Options{Dir: dir, AppendFsyncAlways: true, MaxmemoryPolicy: "allkeys-lru"})
	ctx := t.Context()
	c := client(t, &redis.Options{Addr: s.Addr()})
	for i := range 20 {
		mustSet(t, c, "k"+strconv.Itoa(i), "v")
	}
	got, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil || got["maxmemory-policy"] != "allkeys-lru" {
		t.Fatalf("maxmemory-policy = %v, %v", got, err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 20 {
		t.Fatalf("DBSIZE after kill and restart = %d, %v; want 20", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("given Dir removed by Close: %v", err)
	}
}

func TestStandaloneAuth(t *testing.T) {
	s := StartStandaloneT(t, Options{Password: `pa ss"wd`, ACLUser: "idgen", ACLPassword: "acl-secret"})
	ctx := t.Context()
	for _, tc := range []struct {
		name     string
		user, pw string
		ok       bool
	}{
		{"password", "", `pa ss"wd`, true},
		{"acl user", "idgen", "acl-secret", true},
		{"wrong password", "", "nope", false},
		{"acl user wrong password", "idgen", `pa ss"wd`, false},
		{"no password", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(t, &redis.Options{Addr: s.Addr(), Username: tc.user, Password: tc.pw})
			err := c.Set(ctx, "k-"+tc.name, "v", 0).Err()
			if (err == nil) != tc.ok {
				t.Fatalf("SET = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok && !strings.Contains(err.Error(), "WRONGPASS") && !strings.Contains(err.Error(), "NOAUTH") {
				t.Fatalf("SET = %v, want an auth error", err)
			}
		})
	}
}

func TestStandaloneTLS(t *testing.T) {
	s := StartStandaloneT(t, Options{TLS: true})
	withCert, err := testpki.LoadClientConfig(s.TLSFiles())
	if err != nil {
		t.Fatal(err)
	}
	ca, _, _ := s.TLSFiles()
	withoutCert, err := testpki.LoadClientConfig(ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{{"client certificate", withCert}, {"no client certificate", withoutCert}} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(t, &redis.Options{Addr: s.Addr(), TLSConfig: tc.cfg})
			mustSet(t, c, "k", "tls")
			mustGet(t, c, "k", "tls")
		})
	}
	t.Run("plain refused", func(t *testing.T) {
		c := client(t, &redis.Options{Addr: s.Addr()})
		if err := c.Ping(t.Context()).Err(); err == nil {
			t.Fatalf("plain PING to a TLS-only port succeeded")
		}
	})
}

func TestReplicatedFailover(t *testing.T) {
	const pw = "group-secret"
	began := time.Now()
	g := StartReplicatedT(t, Options{Password: pw}, 1, 3)
	t.Logf("replicated 1+1+3 start took %v", time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	primary, replicas := g.Primary(), g.Replicas()
	if primary.Name() != "redis0" || len(replicas) != 1 || len(g.Sentinels()) != 3 || len(g.SentinelAddrs()) != 3 {
		t.Fatalf("Primary %s, %d replicas, %d sentinels; want redis0, 1, 3", primary.Name(), len(replicas), len(g.Sentinels()))
	}
	all := append([]*Server{primary}, append(replicas, g.Sentinels()...)...)
	ps := pids(t, all)

	pc := client(t, &redis.Options{Addr: primary.Addr(), Password: pw})
	mustSet(t, pc, "k", "replicated")
	if n, err := pc.Wait(ctx, 1, 2000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want 1", n, err)
	}
	mustGet(t, client(t, &redis.Options{Addr: replicas[0].Addr(), Password: pw}), "k", "replicated")

	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:       g.MasterName(),
		SentinelAddrs:    g.SentinelAddrs(),
		Password:         pw,
		SentinelPassword: pw,
		DialTimeout:      time.Second,
		ReadTimeout:      time.Second,
		WriteTimeout:     time.Second,
	})
	defer fc.Close()
	mustSet(t, fc, "before", "1")

	killed, err := g.KillPrimary()
	if err != nil || killed != primary {
		t.Fatalf("KillPrimary = %v, %v; want %s", killed, err, primary.Name())
	}
	began = time.Now()
	newAddr, err := g.WaitFailover(ctx, killed.Addr())
	if err != nil {
		t.Fatalf("WaitFailover: %v", err)
	}
	t.Logf("failover took %v", time.Since(began).Round(time.Millisecond))
	if newAddr != replicas[0].Addr() || g.Primary() != replicas[0] {
		t.Fatalf("new master %s (Primary %s), want %s", newAddr, g.Primary().Addr(), replicas[0].Addr())
	}
	nc := client(t, &redis.Options{Addr: newAddr, Password: pw})
	mustSet(t, nc, "after", "2")
	mustGet(t, nc, "k", "replicated")

	// The failover client finds the new master on its own; its first
	// commands may still hit the dead one.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fc.Set(ctx, "via-sentinel", "3", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failover client still failing 10s after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustGet(t, fc, "before", "1")
	mustGet(t, nc, "via-sentinel", "3")

	if err := killed.Restart(ctx); err != nil {
		t.Fatalf("Restart of the old primary: %v", err)
	}
	if got := g.Replicas(); len(got) != 1 || got[0] != killed {
		t.Fatalf("Replicas after failover = %v, want the old primary", got)
	}
	ps = append(ps, pids(t, []*Server{killed})...)

	if err := g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertGone(t, ps)
	if _, err := g.KillPrimary(); !errors.Is(err, ErrClosed) {
		t.Errorf("KillPrimary after Close: %v, want ErrClosed", err)
	}
}

func TestCluster(t *testing.T) {
	began := time.Now()
	c := StartClusterT(t, Options{}, 3)
	t.Logf("cluster of 3 start took %v", time.Since(began).Round(time.Millisecond))
	ctx := t.Context()
	if len(c.Addrs()) != 3 || len(c.Nodes()) != 3 {
		t.Fatalf("%d addrs, %d nodes; want 3", len(c.Addrs()), len(c.Nodes()))
	}
	ps := pids(t, c.Nodes())

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	const keys = 30 // spread over the slots of all three masters
	for i := range keys {
		mustSet(t, cc, "key-"+strconv.Itoa(i), strconv.Itoa(i))
	}
	for i := range keys {
		mustGet(t, cc, "key-"+strconv.Itoa(i), strconv.Itoa(i))
	}
	var total int64
	for _, n := range c.Nodes() {
		size, err := client(t, &redis.Options{Addr: n.Addr()}).DBSize(ctx).Result()
		if err != nil || size == 0 {
			t.Fatalf("%s holds %d keys (%v); want some of each master's slots", n.Name(), size, err)
		}
		total += size
	}
	if total != keys {
		t.Fatalf("nodes hold %d keys in all, want %d", total, keys)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertGone(t, ps)
}

// TestTLSTopologies checks that replication, Sentinel and the cluster bus
// work over TLS too.
func TestTLSTopologies(t *testing.T) {
	tlsConfig := func(t *testing.T, files func() (string, string, string)) *tls.Config {
		cfg, err := testpki.LoadClientConfig(files())
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Run("replicated", func(t *testing.T) {
		g := StartReplicatedT(t, Options{TLS: true, Password: "pw", ACLUser: "idgen", ACLPassword: "acl", MinReplicasToWrite: 1}, 1, 1)
		cfg := tlsConfig(t, g.TLSFiles)
		fc := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: g.MasterName(), SentinelAddrs: g.SentinelAddrs(),
			Password: "pw", SentinelPassword: "pw", TLSConfig: cfg,
		})
		defer fc.Close()
		mustSet(t, fc, "k", "v")
		if n, err := fc.Wait(t.Context(), 1, 2000).Result(); err != nil || n != 1 {
			t.Fatalf("WAIT 1 = %d, %v; want 1", n, err)
		}
		mustGet(t, client(t, &redis.Options{Addr: g.Replicas()[0].Addr(), Password: "pw", TLSConfig: cfg}), "k", "v")
		sc := client(t, &redis.Options{Addr: g.SentinelAddrs()[0], Username: "idgen", Password: "acl", TLSConfig: cfg})
		if err := sc.Ping(t.Context()).Err(); err != nil {
			t.Fatalf("PING a sentinel as the ACL user: %v", err)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		c := StartClusterT(t, Options{TLS: true, Password: "pw"}, 3)
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Password: "pw", TLSConfig: tlsConfig(t, c.TLSFiles)})
		defer cc.Close()
		for _, k := range []string{"a", "b", "c", "d"} {
			mustSet(t, cc, k, k)
			mustGet(t, cc, k, k)
		}
	})
}
