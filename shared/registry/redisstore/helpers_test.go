package redisstore

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/registrytest"
)

// shared is one standalone server for the tests that need nothing special;
// each test gets its own key prefix.
var shared *redisharness.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err := redisharness.StartStandalone(ctx, redisharness.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = srv
	os.Exit(proc.RunMain(m, srv.Close))
}

var prefixSeq atomic.Int64

// prefix is a key prefix of its own for one test.
func prefix() string { return fmt.Sprintf("t%d:", prefixSeq.Add(1)) }

// open opens a Store on the shared server unless cfg says otherwise, with a
// fresh prefix unless cfg has one, closed at the end of the test.
func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{shared.Addr()}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = prefix()
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// opener opens Stores of cfg for the conformance suite: one fresh key
// prefix per directory of the suite, deadline index of the suite's shard.
func opener(cfg Config) registrytest.Opener[*Store] {
	var (
		mu       sync.Mutex
		prefixes = map[string]string{}
	)
	return func(t *testing.T, dir string) (*Store, error) {
		mu.Lock()
		p, ok := prefixes[dir]
		if !ok {
			p = prefix()
			prefixes[dir] = p
		}
		mu.Unlock()
		c := cfg
		c.Prefix, c.Shard = p, registrytest.Shard
		return open(t, c), nil
	}
}

// raw is a plain client of addr for inspecting what a Store wrote.
func raw(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

const testMS = 1_764_000_000_000

func id(counter uint64) idcodec.ID {
	return idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS, Worker: 7, Shard: 3, Counter: counter})
}

// pending is an issue of pending records as the HTTP layer builds them.
func pending(ids ...idcodec.ID) registry.Issue {
	var iss registry.Issue
	for _, x := range ids {
		ms := int64(x.Decompose().TimestampMS)
		iss.Records = append(iss.Records, registry.Record{
			ID: x, State: registry.Pending, IssuedAtMS: ms, Subject: "svc-payments",
			History: []registry.Step{{State: registry.Pending, AtMS: ms, Actor: "svc-payments"}},
		})
	}
	return iss
}

// redisharnessStandalone starts a server of its own with policy and
// returns its address.
func redisharnessStandalone(t testing.TB, policy string) string {
	t.Helper()
	return redisharness.StartStandaloneT(t, redisharness.Options{MaxmemoryPolicy: policy}).Addr()
}

// restart restarts a server within 30s, failing t otherwise.
func restart(t *testing.T, srv interface{ Restart(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
}

// infoInt is the integer field of INFO section of c.
func infoInt(t *testing.T, c *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in INFO %s", field, section)
	return 0
}
