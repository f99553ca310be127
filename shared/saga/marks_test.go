package saga_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// TestRedisMarksLease: a claim is a lease of one token; the same token
// asking again (a lost reply) holds it still, another token is busy until
// the lease is released by its token, expires or is marked done; a done
// mark is never released or claimed again.
func TestRedisMarksLease(t *testing.T) {
	e := sagatest.NewEnv(t, sharedRedis)
	ctx := context.Background()
	m := &saga.RedisMarks{Client: e.RDB, Prefix: e.Prefix + "audited:"}
	id := sagatest.NewIDs(1)[0]
	key := e.Prefix + "audited:" + id.String()
	a, b := saga.NewToken(), saga.NewToken()
	if a == b || len(a) < 16 {
		t.Fatalf("tokens %q and %q, want distinct random tokens", a, b)
	}
	claim := func(token string) (bool, error) { t.Helper(); return m.Claim(ctx, id, token) }
	busy := func(what, token string) {
		t.Helper()
		won, err := claim(token)
		if won || !errors.Is(err, saga.ErrAuditBusy) || !errors.Is(err, saga.ErrAudit) || saga.Permanent(err) {
			t.Fatalf("%s: %v, %v; want transient ErrAuditBusy", what, won, err)
		}
	}

	if won, err := claim(a); err != nil || !won {
		t.Fatalf("first claim: %v, %v; want won", won, err)
	}
	if won, err := claim(a); err != nil || !won {
		t.Fatalf("the same token again (a lost reply): %v, %v; want won", won, err)
	}
	if ttl := e.RDB.PTTL(ctx, key).Val(); ttl <= 0 || ttl > saga.DefaultLeaseTTL {
		t.Fatalf("lease TTL %v, want at most %v", ttl, saga.DefaultLeaseTTL)
	}
	busy("another token", b)
	if err := m.Release(ctx, id, b); err != nil {
		t.Fatal(err)
	}
	busy("after another token's release", b)
	if err := m.Release(ctx, id, a); err != nil {
		t.Fatal(err)
	}
	if won, err := claim(b); err != nil || !won {
		t.Fatalf("claim after release: %v, %v; want won", won, err)
	}
	e.RDB.PExpire(ctx, key, time.Millisecond) // b died holding it
	time.Sleep(20 * time.Millisecond)
	if won, err := claim(a); err != nil || !won {
		t.Fatalf("claim after the lease expired: %v, %v; want won", won, err)
	}
	if err := m.Mark(ctx, id, a); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx, id, a); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{a, b} {
		if won, err := claim(tok); err != nil || won {
			t.Fatalf("claim of a done mark: %v, %v; want not won, no error", won, err)
		}
	}
	if ttl := e.RDB.TTL(ctx, key).Val(); ttl < saga.DefaultMarkTTL-time.Minute {
		t.Fatalf("done mark TTL %v, want about %v", ttl, saga.DefaultMarkTTL)
	}
}

// TestRedisMarksDurable: with WaitReplicas, Mark returns only after the
// replicas acknowledged this very write: with the replica frozen it fails
// (a WAIT on another connection, with nothing written on it, would not),
// and without a replica it says so.
func TestRedisMarksDurable(t *testing.T) {
	ctx := context.Background()
	id := sagatest.NewIDs(1)[0]
	e := sagatest.NewEnv(t, sharedRedis)
	m := &saga.RedisMarks{Client: e.RDB, Prefix: e.Prefix + "durable:", WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond}
	if err := m.Mark(ctx, id, ""); err == nil || !strings.Contains(err.Error(), "0 of 1 replicas acknowledged") {
		t.Fatalf("mark without a replica: %v, want 0 of 1 replicas acknowledged", err)
	}

	g := redisharness.StartReplicatedT(t, redisharness.Options{}, 1, 0)
	primary := redis.NewClient(&redis.Options{Addr: g.Primary().Addr(), DisableIdentity: true})
	defer primary.Close()
	m = &saga.RedisMarks{Client: primary, Prefix: "durable:", WaitReplicas: 1, WaitTimeout: 5 * time.Second}
	if err := m.Mark(ctx, id, ""); err != nil {
		t.Fatalf("mark with a replica: %v", err)
	}
	replica := redis.NewClient(&redis.Options{Addr: g.Replicas()[0].Addr(), DisableIdentity: true})
	defer replica.Close()
	if v, err := replica.Get(ctx, "durable:"+id.String()).Result(); err != nil || v != "1" {
		t.Fatalf("replica has %q, %v; want the done mark at once", v, err)
	}
	if err := g.Replicas()[0].Stop(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = g.Replicas()[0].Cont() }()
	other := sagatest.NewIDs(1)[0]
	m.WaitTimeout = 200 * time.Millisecond
	if err := m.Mark(ctx, other, ""); err == nil || !strings.Contains(err.Error(), "0 of 1 replicas acknowledged") {
		t.Fatalf("mark with the replica frozen: %v, want 0 of 1 replicas acknowledged", err)
	}
}

// gatedAudit holds every Record until open is closed.
type gatedAudit struct {
	next    saga.Recorder
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

func (g *gatedAudit) Record(e audit.Event) error {
	g.once.Do(func() { close(g.entered) })
	<-g.open
	return g.next.Record(e)
}

// TestOverlappingAttempts: a redelivery that runs while the first attempt
// is still between its effect and its mark (a slow worker whose entry
// another worker took over) writes no second entry: it is told to come
// back (ErrAuditBusy) and then finds the entry written.
func TestOverlappingAttempts(t *testing.T) {
	e := sagatest.NewEnv(t, sharedRedis)
	store := e.Store()
	ctx := context.Background()
	aud, path := e.AuditLog("overlap")
	gate := &gatedAudit{next: aud, entered: make(chan struct{}), open: make(chan struct{})}
	slow := e.Core(store, gate, e.RDB)
	other := e.Core(store, aud, e.Client())
	id := sagatest.PendingIDs(t, store, 1)[0]
	ev := saga.Event{ID: id.String(), Reason: "card declined", Source: "payments", EventID: "evt-1"}

	first := make(chan error, 1)
	go func() {
		res, err := slow.Compensate(ctx, ev)
		if err == nil && res.Outcome != registry.Applied {
			err = errors.New("first attempt: outcome " + res.Outcome.String())
		}
		first <- err
	}()
	<-gate.entered // the first attempt holds the claim and writes its entry
	again := ev
	again.Redelivered = true
	res, err := other.Compensate(ctx, again)
	if !errors.Is(err, saga.ErrAuditBusy) || saga.Permanent(err) || res.Outcome != registry.Replayed || res.AuditRecovered {
		t.Fatalf("overlapping redelivery: %+v, %v; want a duplicate told ErrAuditBusy", res, err)
	}
	close(gate.open)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if res, err := other.Compensate(ctx, again); err != nil || res.AuditRecovered {
		t.Fatalf("redelivery after the first attempt: %+v, %v; want a plain duplicate", res, err)
	}
	lines := sagatest.AuditLines(t, audit.ActionCompensate, path)
	if len(lines) != 1 || lines[0].Recovered {
		t.Fatalf("audit %+v, want the first attempt's entry only", lines)
	}
}

// TestDiedHoldingTheLease: an attempt that died after its claim and
// before its entry leaves a lease; redeliveries are busy until it
// expires, then one writes the entry, marked recovered.
func TestDiedHoldingTheLease(t *testing.T) {
	e := sagatest.NewEnv(t, sharedRedis)
	store := e.Store()
	ctx := context.Background()
	aud, path := e.AuditLog("lease")
	marks := &saga.RedisMarks{Client: e.RDB, Prefix: e.Prefix + "audited:"}
	core := &saga.Core{Registry: store, Audit: aud, Marks: marks}
	id := sagatest.PendingIDs(t, store, 1)[0]
	ev := saga.Event{ID: id.String(), Reason: "r", Redelivered: true}
	// The dead attempt: its effect and its claim.
	if _, _, err := store.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: ev.Reason, Actor: ev.Actor(), NowMS: sagatest.NowMS()}); err != nil {
		t.Fatal(err)
	}
	if won, err := marks.Claim(ctx, id, saga.NewToken()); err != nil || !won {
		t.Fatalf("claim: %v, %v", won, err)
	}
	if _, err := core.Compensate(ctx, ev); !errors.Is(err, saga.ErrAuditBusy) {
		t.Fatalf("redelivery under the lease: %v, want ErrAuditBusy", err)
	}
	e.RDB.PExpire(ctx, e.Prefix+"audited:"+id.String(), time.Millisecond) // the lease runs out
	time.Sleep(20 * time.Millisecond)
	if res, err := core.Compensate(ctx, ev); err != nil || !res.AuditRecovered {
		t.Fatalf("redelivery after the lease: %+v, %v; want the entry recovered", res, err)
	}
	if res, err := core.Compensate(ctx, ev); err != nil || res.AuditRecovered {
		t.Fatalf("later redelivery: %+v, %v", res, err)
	}
	lines := sagatest.AuditLines(t, audit.ActionCompensate, path)
	if len(lines) != 1 || !lines[0].Recovered {
		t.Fatalf("audit %+v, want one entry marked recovered", lines)
	}
}

// cancellingAudit cancels the attempt's context while it writes the entry
// (its deadline runs out during the fsync).
type cancellingAudit struct {
	next   saga.Recorder
	cancel context.CancelFunc
}

func (c *cancellingAudit) Record(e audit.Event) error {
	err := c.next.Record(e)
	c.cancel()
	return err
}

// TestMarkOutlivesTheDeadline: an attempt whose context ends after its
// entry is written still stores the mark, so a later redelivery writes no
// second entry.
func TestMarkOutlivesTheDeadline(t *testing.T) {
	e := sagatest.NewEnv(t, sharedRedis)
	store := e.Store()
	aud, path := e.AuditLog("deadline")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	core := e.Core(store, &cancellingAudit{next: aud, cancel: cancel}, e.RDB)
	id := sagatest.PendingIDs(t, store, 1)[0]
	ev := saga.Event{ID: id.String(), Reason: "r"}
	res, err := core.Compensate(ctx, ev)
	if err != nil || res.Outcome != registry.Applied || res.Unmarked {
		t.Fatalf("attempt: %+v, %v; want applied and marked", res, err)
	}
	if ctx.Err() == nil {
		t.Fatal("the attempt's context was not cancelled during the entry")
	}
	if v := e.RDB.Get(context.Background(), e.Prefix+"audited:"+id.String()).Val(); v != "1" {
		t.Fatalf("mark %q, want done", v)
	}
	ev.Redelivered = true
	if res, err := e.Core(store, aud, e.RDB).Compensate(context.Background(), ev); err != nil || res.AuditRecovered {
		t.Fatalf("redelivery: %+v, %v; want a plain duplicate", res, err)
	}
	if n := len(sagatest.AuditLines(t, audit.ActionCompensate, path)); n != 1 {
		t.Fatalf("%d audit entries, want 1", n)
	}
}
