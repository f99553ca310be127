package redisharness

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/optionstest"
	"github.com/idgen/idgen/harness/proc"
)

func TestOptionsValidate(t *testing.T) {
	optionstest.Run(t, []optionstest.Case[Options]{
		{Name: "zero", Opts: Options{}, OK: true},
		{Name: "full", Opts: Options{Password: "p w", ACLUser: "idgen", ACLPassword: "x", AppendFsyncAlways: true, MinReplicasToWrite: 1, MaxmemoryPolicy: "volatile-ttl", TLS: true}, OK: true},
		{Name: "password with newline", Opts: Options{Password: "a\nb"}, OK: false},
		{Name: "acl user without password", Opts: Options{ACLUser: "idgen"}, OK: false},
		{Name: "acl password without user", Opts: Options{ACLPassword: "x"}, OK: false},
		{Name: "acl user with space", Opts: Options{ACLUser: "a b", ACLPassword: "x"}, OK: false},
		{Name: "acl user default", Opts: Options{ACLUser: "default", ACLPassword: "x"}, OK: false},
		{Name: "negative min replicas", Opts: Options{MinReplicasToWrite: -1}, OK: false},
		{Name: "unknown policy", Opts: Options{MaxmemoryPolicy: "lru"}, OK: false},
	})
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:     `"plain"`,
		`a "b" \c`:  `"a \"b\" \\c"`,
		"tab\there": `"tab\x09here"`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestStartNotInstalled(t *testing.T) {
	missing := "/nonexistent/redis"
	for _, tc := range []struct {
		name  string
		start func(context.Context) error
	}{
		{"no redis-server", func(ctx context.Context) error {
			_, err := StartStandalone(ctx, Options{RedisServer: missing})
			return err
		}},
		{"no redis-sentinel", func(ctx context.Context) error {
			_, err := StartReplicated(ctx, Options{RedisSentinel: missing}, 0, 1)
			return err
		}},
		{"no redis-cli", func(ctx context.Context) error {
			_, err := StartCluster(ctx, Options{RedisCLI: missing}, 3)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.start(t.Context())
			if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "scripts/install-deps.sh") {
				t.Fatalf("start = %v, want ErrNotInstalled naming scripts/install-deps.sh", err)
			}
		})
	}
}

func TestStartBadCounts(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		start func() error
	}{
		{"standalone with min replicas", func() error { _, err := StartStandalone(ctx, Options{MinReplicasToWrite: 1}); return err }},
		{"negative replicas", func() error { _, err := StartReplicated(ctx, Options{}, -1, 0); return err }},
		{"too many sentinels", func() error { _, err := StartReplicated(ctx, Options{}, 1, maxSentinels+1); return err }},
		{"min replicas above replicas", func() error { _, err := StartReplicated(ctx, Options{MinReplicasToWrite: 2}, 1, 0); return err }},
		{"two masters", func() error { _, err := StartCluster(ctx, Options{}, 2); return err }},
		{"cluster with min replicas", func() error { _, err := StartCluster(ctx, Options{MinReplicasToWrite: 1}, 3); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.start(); err == nil {
				t.Fatalf("start succeeded, want an error")
			}
		})
	}
}

// TestGroupWithoutSentinels checks the degenerate group: a lone primary
// that is its own Primary and cannot fail over.
func TestGroupWithoutSentinels(t *testing.T) {
	g := StartReplicatedT(t, Options{}, 0, 0)
	if p := g.Primary(); p == nil || p.Name() != "redis0" || len(g.Replicas()) != 0 {
		t.Fatalf("Primary %v, Replicas %v; want redis0 and none", p, g.Replicas())
	}
	if _, err := g.WaitFailover(t.Context(), g.Primary().Addr()); !errors.Is(err, ErrNoSentinels) {
		t.Fatalf("WaitFailover without sentinels: %v, want ErrNoSentinels", err)
	}
}

func TestPickPortsBus(t *testing.T) {
	ports, err := pickPorts(6, true)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || seen[p+10000] || p+10000 > 65535 {
			t.Fatalf("ports %v: %d repeats or has no bus port", ports, p)
		}
		seen[p], seen[p+10000] = true, true
	}
}

// TestStartRetriesPortInUse hands the first attempt a port someone else
// holds; Start must notice the bind failure and succeed on fresh ports.
func TestStartRetriesPortInUse(t *testing.T) {
	proc.SkipShort(t, "Redis")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var mu sync.Mutex
	var logs []string
	calls := 0
	opts := Options{
		Logf: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			logs = append(logs, format)
		},
		pickPorts: func(n int, bus bool) ([]int, error) {
			calls++
			if calls == 1 {
				return []int{taken.Addr().(*net.TCPAddr).Port}, nil
			}
			return pickPorts(n, bus)
		},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := StartStandalone(ctx, opts)
	if err != nil {
		t.Fatalf("StartStandalone: %v", err)
	}
	defer s.Close()
	if calls != 2 || s.Addr() == taken.Addr().String() {
		t.Fatalf("%d port picks, addr %s (taken %s); want a retry on a fresh port", calls, s.Addr(), taken.Addr())
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(logs, "\n"), "retrying with fresh ports") {
		t.Errorf("no retry logged: %q", logs)
	}
}

// TestStartCanceled checks that a Start cut short kills every process it
// started.
func TestStartCanceled(t *testing.T) {
	proc.SkipShort(t, "Redis")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	var started []int
	opts := Options{Logf: func(format string, args ...any) {
		if strings.Contains(format, "started (pid") {
			mu.Lock()
			started = append(started, args[1].(int))
			mu.Unlock()
			cancel() // stop waiting for the cluster to come up
		}
	}}
	_, err := StartCluster(ctx, opts, 3)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("StartCluster = %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(started) != 3 {
		t.Fatalf("%d processes started, want 3", len(started))
	}
	assertGone(t, started)
}
