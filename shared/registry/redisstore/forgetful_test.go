package redisstore

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// checkEvery is the checker's interval in these tests; refusedWithin
// bounds how long a change on the server may go unnoticed.
const (
	checkEvery    = 50 * time.Millisecond
	refusedWithin = 5 * time.Second
)

// issuer registers fresh IDs of its own counter range, one per call.
type issuer struct {
	s    *Store
	next uint64
}

func (is *issuer) register(ctx context.Context) (idcodec.ID, error) {
	is.next++
	x := id(is.next)
	_, err := is.s.Register(ctx, pending(x), 0, testMS)
	return x, err
}

// registerN registers n IDs, failing t at the first error, and returns
// them.
func (is *issuer) registerN(t *testing.T, n int) []idcodec.ID {
	t.Helper()
	acked := make([]idcodec.ID, 0, n)
	for range n {
		x, err := is.register(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, x)
	}
	return acked
}

// waitRefused polls new registrations until one fails with
// registry.ErrUnavailable, failing t after refusedWithin. Any other error
// fails t at once.
func waitRefused(t *testing.T, is *issuer) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Now()
	deadline := t0.Add(refusedWithin)
	for {
		_, err := is.register(ctx)
		if errors.Is(err, registry.ErrUnavailable) {
			t.Logf("refused after %v", time.Since(t0).Round(time.Millisecond))
			return
		}
		if err != nil {
			t.Fatalf("register: %v, want nil or ErrUnavailable", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("registrations still succeed %v after the change", refusedWithin)
		}
		time.Sleep(checkEvery / 2)
	}
}

// staysRefused asserts that registrations and Ping keep failing for n
// check intervals.
func staysRefused(t *testing.T, is *issuer, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if _, err := is.register(ctx); !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("registration %d after the refusal: %v, want ErrUnavailable", i, err)
		}
		if err := is.s.Ping(ctx); err == nil {
			t.Fatalf("Ping %d after the refusal: ok", i)
		}
		time.Sleep(checkEvery)
	}
}

// waitServes polls new registrations (and Ping, with ping) until they
// succeed, failing t after refusedWithin; after says since when they
// should.
func waitServes(t *testing.T, is *issuer, ping bool, after string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(refusedWithin)
	for {
		_, err := is.register(ctx)
		if err == nil && ping {
			err = is.s.Ping(ctx)
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused %v after %s: %v", refusedWithin, after, err)
		}
		time.Sleep(checkEvery / 2)
	}
}

// wantRefusing fails t unless s refuses for reason alone.
func wantRefusing(t *testing.T, s *Store, reason string) {
	t.Helper()
	if got := s.Refusing(); len(got) != 1 || got[0] != reason {
		t.Fatalf("Refusing() = %v, want [%s]", got, reason)
	}
}

// resetServes is the operator's way back after a loss: ResetEpoch on the
// registry of s, through cfg (its Addrs), lets a Store opened then (with
// cfg) serve, while s, which saw the loss, still refuses. next is the
// first counter of the new Store's registrations.
func resetServes(t *testing.T, s *Store, cfg Config, next uint64) {
	t.Helper()
	ctx := context.Background()
	cfg.Prefix = s.cfg.Prefix
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{shared.Addr()}
	}
	epoch, err := ResetEpoch(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	reset := open(t, cfg)
	if reset.Epoch() != epoch || reset.Refusing() != nil {
		t.Fatalf("after ResetEpoch: epoch %q (reset to %q), Refusing() = %v", reset.Epoch(), epoch, reset.Refusing())
	}
	if _, err := (&issuer{s: reset, next: next}).register(ctx); err != nil {
		t.Fatalf("after ResetEpoch: %v", err)
	}
	if got := s.Refusing(); !slices.Contains(got, ReasonEpochMissing) {
		t.Fatalf("the Store that saw the loss, after ResetEpoch: Refusing() = %v", got)
	}
}

// configSet runs CONFIG SET name value on c.
func configSet(t *testing.T, c *redis.Client, name, value string) {
	t.Helper()
	if err := c.ConfigSet(context.Background(), name, value).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestEvictingPolicyAtRuntimeRefuses: CONFIG SET maxmemory-policy
// allkeys-lru on a running server makes new registrations and transitions
// fail with ErrUnavailable, and Ping fail, within refusedWithin; back to
// noeviction with nothing evicted, the Store serves again. Once keys were
// evicted (a small maxmemory), it stays refused after noeviction is back.
func TestEvictingPolicyAtRuntimeRefuses(t *testing.T) {
	addr := redisharnessStandalone(t, "noeviction")
	admin := raw(t, addr)
	s := open(t, Config{Addrs: []string{addr}, CheckInterval: checkEvery})
	ctx := context.Background()
	is := &issuer{s: s}
	acked := is.registerN(t, 200)

	configSet(t, admin, "maxmemory-policy", "allkeys-lru")
	waitRefused(t, is)
	if err := s.Ping(ctx); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Ping under allkeys-lru: %v, want ErrUnavailable", err)
	}
	if _, _, err := s.Transition(ctx, acked[0], registry.Change{To: registry.Committed, NowMS: testMS}); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("commit under allkeys-lru: %v, want ErrUnavailable", err)
	}
	t.Logf("under allkeys-lru: %v", s.Ping(ctx))

	configSet(t, admin, "maxmemory-policy", "noeviction")
	waitServes(t, is, true, "noeviction is back with nothing evicted")

	// Evict for real: a maxmemory just above what is used, and filler keys.
	used := infoInt(t, admin, "memory", "used_memory")
	configSet(t, admin, "maxmemory", itoa(used+2<<20))
	configSet(t, admin, "maxmemory-policy", "allkeys-lru")
	filler := strings.Repeat("x", 16<<10)
	for i := 0; infoInt(t, admin, "stats", "evicted_keys") == 0; i++ {
		if i == 10_000 {
			t.Fatal("nothing evicted after 160 MB of filler")
		}
		if err := admin.Set(ctx, "filler:"+itoa(int64(i)), filler, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	configSet(t, admin, "maxmemory", "0")
	configSet(t, admin, "maxmemory-policy", "noeviction")
	waitRefused(t, is)
	staysRefused(t, is, 20)
	lost := 0
	for _, x := range acked {
		if _, err := s.Get(ctx, x); errors.Is(err, registry.ErrNotFound) {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged IDs answer not found instead of unavailable", lost, len(acked))
	}
	t.Logf("after evictions: %v", s.Ping(ctx))
}

// TestRestartedEmptyRefuses: a Redis without persistence killed and
// restarted empty. Every acknowledged ID answers ErrUnavailable (never
// ErrNotFound), registrations fail, Ping fails, and the Store stays refused
// even when the marker is written back by hand. A new Store on the emptied
// server refuses too (the first Store marked the loss).
func TestRestartedEmptyRefuses(t *testing.T) {
	srv := redisharness.StartStandaloneT(t, redisharness.Options{})
	admin := raw(t, srv.Addr())
	s := open(t, Config{Addrs: []string{srv.Addr()}, CheckInterval: checkEvery})
	ctx := context.Background()
	is := &issuer{s: s}
	acked := is.registerN(t, 100)
	restart(t, srv)
	// The server comes back empty; the Store may already have written its
	// lost-epoch marker there (markLost, on reconnect), and nothing else.
	if keys := admin.Keys(ctx, "*").Val(); len(keys) > 1 || (len(keys) == 1 && keys[0] != s.rootKey()) {
		t.Fatalf("restarted server holds keys %v, want none but the epoch marker %s", keys, s.rootKey())
	} else if len(keys) == 1 {
		if v := admin.Get(ctx, keys[0]).Val(); !strings.Contains(v, " "+markerLost+" ") {
			t.Fatalf("epoch marker on the restarted server is %q, want the lost-epoch marker", v)
		}
	}
	for _, x := range acked {
		if _, err := s.Get(ctx, x); !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("acknowledged %s after the restart: %v, want ErrUnavailable", x, err)
		}
	}
	waitRefused(t, is)
	staysRefused(t, is, 20)
	t.Logf("after the restart: %v", s.Ping(ctx))

	fresh := open(t, Config{Addrs: []string{srv.Addr()}, Prefix: s.cfg.Prefix})
	if _, err := (&issuer{s: fresh, next: 1 << 30}).register(ctx); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("a new Store on the emptied server registers: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestMarkerDeletedStaysRefused: the epoch marker deleted under a running
// Store (what an eviction or a careless DEL does) is refused within
// refusedWithin, and writing the very same marker back does not bring the
// Store back. A Store opened later on the registry keys without a valid
// marker refuses; ResetEpoch (the operator) lets a new Store serve while
// the old one stays refused.
func TestMarkerDeletedStaysRefused(t *testing.T) {
	s := open(t, Config{CheckInterval: checkEvery})
	admin := raw(t, shared.Addr())
	ctx := context.Background()
	is := &issuer{s: s}
	if _, err := is.register(ctx); err != nil {
		t.Fatal(err)
	}
	root := s.rootKey()
	was, err := admin.Get(ctx, root).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Del(ctx, root).Err(); err != nil {
		t.Fatal(err)
	}
	waitRefused(t, is)
	wantRefusing(t, s, ReasonEpochMissing)
	// The Store marks the epoch lost for the instances to come.
	deadline := time.Now().Add(refusedWithin)
	for v := admin.Get(ctx, root).Val(); !strings.Contains(v, " lost "+s.Epoch()); v = admin.Get(ctx, root).Val() {
		if time.Now().After(deadline) {
			t.Fatalf("root marker %q, want the lost mark of epoch %s", v, s.Epoch())
		}
		time.Sleep(checkEvery / 2)
	}
	later := open(t, Config{Prefix: s.cfg.Prefix})
	if _, err := (&issuer{s: later, next: 1 << 20}).register(ctx); !errors.Is(err, registry.ErrUnavailable) || !errors.Is(err, ErrForgetful) {
		t.Fatalf("a Store opened on the lost epoch registers: %v", err)
	}
	if err := admin.Set(ctx, root, was, 0).Err(); err != nil {
		t.Fatal(err)
	}
	staysRefused(t, is, 10)

	// Registry keys without any marker: a new Store refuses.
	if err := admin.Del(ctx, root).Err(); err != nil {
		t.Fatal(err)
	}
	unmarked := open(t, Config{Prefix: s.cfg.Prefix})
	if got := unmarked.Refusing(); len(got) != 1 || got[0] != ReasonEpochMissing || unmarked.Epoch() != "" {
		t.Fatalf("Store on unmarked registry keys: Refusing() = %v, epoch %q", got, unmarked.Epoch())
	}
	if err := unmarked.Ping(ctx); !errors.Is(err, ErrForgetful) {
		t.Fatalf("Ping on unmarked registry keys: %v", err)
	}

	resetServes(t, s, Config{CheckInterval: checkEvery}, 1<<21)
	staysRefused(t, is, 5)
}

// TestConcurrentFirstOpen: Stores opening at once on a fresh registry agree
// on one epoch and none refuses.
func TestConcurrentFirstOpen(t *testing.T) {
	p := prefix()
	const n = 8
	stores := make([]*Store, n)
	errs := make(chan error, n)
	for i := range stores {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := Open(ctx, Config{Addrs: []string{shared.Addr()}, Prefix: p})
			stores[i] = s
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stores {
		t.Cleanup(func() { _ = s.Close() })
	}
	for i, s := range stores {
		if s.Epoch() == "" || s.Epoch() != stores[0].Epoch() || s.Refusing() != nil {
			t.Fatalf("store %d: epoch %q (store 0: %q), Refusing() = %v", i, s.Epoch(), stores[0].Epoch(), s.Refusing())
		}
	}
}

// TestPersistence: CheckPersistence refuses a server with neither
// appendonly nor save points and accepts one with AOF; with
// RequirePersistence, turning AOF off at runtime is refused within
// refusedWithin and turning it back on serves again.
func TestPersistence(t *testing.T) {
	ctx := context.Background()
	if err := open(t, Config{}).CheckPersistence(ctx); !errors.Is(err, ErrNoPersistence) {
		t.Fatalf("CheckPersistence without persistence: %v", err)
	}
	wantRefusing(t, open(t, Config{RequirePersistence: true}), ReasonNoPersistence)
	srv := redisharness.StartStandaloneT(t, redisharness.Options{AppendFsyncAlways: true})
	s := open(t, Config{Addrs: []string{srv.Addr()}, RequirePersistence: true, CheckInterval: checkEvery})
	if err := s.CheckPersistence(ctx); err != nil {
		t.Fatal(err)
	}
	is := &issuer{s: s}
	if _, err := is.register(ctx); err != nil {
		t.Fatal(err)
	}
	admin := raw(t, srv.Addr())
	configSet(t, admin, "save", "") // the harness leaves Redis's default save points with AOF
	if err := s.CheckPersistence(ctx); err != nil {
		t.Fatalf("AOF without save points: %v", err)
	}
	configSet(t, admin, "appendonly", "no")
	if err := s.CheckPersistence(ctx); !errors.Is(err, ErrNoPersistence) {
		t.Fatalf("CheckPersistence after appendonly no: %v", err)
	}
	waitRefused(t, is)
	wantRefusing(t, s, ReasonNoPersistence)
	configSet(t, admin, "appendonly", "yes")
	waitServes(t, is, false, "appendonly yes")
}

// TestParseMarker: every value a marker can hold, and garbage.
func TestParseMarker(t *testing.T) {
	e := newEpoch()
	for _, tc := range []struct {
		v    string
		want marker
		ok   bool
	}{
		{marker{epoch: e}.String(), marker{epoch: e}, true},
		{marker{epoch: e, init: true}.String(), marker{epoch: e, init: true}, true},
		{"idgen-epoch lost " + e + " 1764000000000 epoch_missing", marker{epoch: e, lost: true}, true},
		{"idgen-epoch v1 " + e, marker{epoch: e, v1: true}, true},
		{"idgen-epoch v1 " + e + " init", marker{epoch: e, init: true, v1: true}, true},
		{"idgen-epoch v2 " + e, marker{epoch: e}, true},
		{"idgen-epoch v1 " + e[:30], marker{}, false},
		{"idgen-epoch v3 " + e, marker{}, false},
		{"", marker{}, false},
		{"OK", marker{}, false},
	} {
		got, err := parseMarker(tc.v)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMarker(%q) = %+v, %v", tc.v, got, err)
		}
	}
}

// TestV1MarkersUpgraded: a Store opening on a registry whose markers are of
// the v1 record layout adopts their epoch and rewrites them as v2 (the root
// and, in Cluster mode, every slot's), so that idgen instances of the v1
// layout, which read a v2 marker as unreadable, refuse; a Store already
// open keeps serving across the rewrite.
func TestV1MarkersUpgraded(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		addr := redisharnessStandalone(t, "noeviction")
		ctx := context.Background()
		first := open(t, Config{Addrs: []string{addr}})
		if _, err := first.Register(ctx, pending(id(1)), 0, testMS); err != nil {
			t.Fatal(err)
		}
		e := first.Epoch()
		admin := raw(t, addr)
		if err := admin.Set(ctx, first.rootKey(), "idgen-epoch v1 "+e, 0).Err(); err != nil {
			t.Fatal(err)
		}
		second := open(t, Config{Addrs: []string{addr}, Prefix: first.cfg.Prefix})
		if second.Epoch() != e || second.Refusing() != nil {
			t.Fatalf("epoch %q (want %q), refusing %v", second.Epoch(), e, second.Refusing())
		}
		if v := admin.Get(ctx, first.rootKey()).Val(); v != "idgen-epoch v2 "+e {
			t.Fatalf("root marker %q after the upgrade", v)
		}
		first.check()
		for _, s := range []*Store{first, second} {
			if r := s.Refusing(); r != nil {
				t.Fatalf("refusing %v", r)
			}
			if _, err := s.Get(ctx, id(1)); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("cluster", func(t *testing.T) {
		c := redisharness.StartClusterT(t, redisharness.Options{}, 3)
		ctx := context.Background()
		first := open(t, Config{Addrs: c.Addrs()[:1]})
		e := first.Epoch()
		p := first.client.Pipeline()
		p.Set(ctx, first.rootKey(), "idgen-epoch v1 "+e, 0)
		for sl := 1; sl < clusterSlots; sl += 2 { // half of them: a mix
			p.Set(ctx, first.markerKey(sl), "idgen-epoch v1 "+e, 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		second := open(t, Config{Addrs: c.Addrs()[:1], Prefix: first.cfg.Prefix})
		if second.Epoch() != e || second.Refusing() != nil {
			t.Fatalf("epoch %q (want %q), refusing %v", second.Epoch(), e, second.Refusing())
		}
		p = first.client.Pipeline()
		cmds := make([]*redis.StringCmd, clusterSlots)
		for sl := range clusterSlots {
			cmds[sl] = p.Get(ctx, first.markerKey(sl))
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for sl, cmd := range cmds {
			if v := cmd.Val(); v != "idgen-epoch v2 "+e {
				t.Fatalf("slot %d marker %q after the upgrade", sl, v)
			}
		}
	})
}
