package saga_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/clocktest"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/boltstore"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/diskguard/diskguardtest"
	"github.com/idgen/idgen/shared/registry/pebblestore"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

var (
	_ saga.MarkStore = (*pebblestore.Store)(nil)
	_ saga.MarkStore = (*boltstore.Store)(nil)
)

// embeddedStore is what these tests use of an embedded store: its marks,
// its registry and Close.
type embeddedStore interface {
	saga.MarkStore
	saga.Transitioner
	Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error)
	Close() error
}

// disk is a filesystem whose free space the test sets (diskguard.Usage).
type disk struct{ full atomic.Bool }

func (d *disk) usage(string) (diskguard.Usage, error) {
	if d.full.Load() {
		return diskguard.Usage{FreeBytes: 1 << 20, TotalBytes: 100 << 30}, nil
	}
	return diskguard.Usage{FreeBytes: 50 << 30, TotalBytes: 100 << 30}, nil
}

func (d *disk) config() diskguard.Config {
	return diskguard.Config{Usage: d.usage, PollInterval: 5 * time.Millisecond, BallastBytes: -1}
}

// openFunc opens a real embedded store in dir, closed when the test ends
// (Close may also be called before).
type openFunc func(t *testing.T, dir string, d *disk) embeddedStore

var engines = []struct {
	name string
	open openFunc
}{
	{"pebble", func(t *testing.T, dir string, d *disk) embeddedStore {
		return opened[*pebblestore.Store](t)(pebblestore.Open(pebblestore.Config{Dir: dir, Disk: d.config()}))
	}},
	{"bolt", func(t *testing.T, dir string, d *disk) embeddedStore {
		return opened[*boltstore.Store](t)(boltstore.Open(boltstore.Config{Dir: dir, Disk: d.config()}))
	}},
}

// opened takes what an Open returned: it fails t on the error, and closes
// the store when the test ends.
func opened[S embeddedStore](t *testing.T) func(S, error) embeddedStore {
	return func(s S, err error) embeddedStore {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
}

// forEngines runs test once for each embedded engine, as a subtest.
func forEngines(t *testing.T, test func(t *testing.T, open openFunc)) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) { test(t, eng.open) })
	}
}

// newClock is a settable clock for StoreMarks.Now, at sagatest.TestMS.
func newClock() *clocktest.Clock { return clocktest.New(time.UnixMilli(sagatest.TestMS)) }

// TestMarkerConformance: RedisMarks and StoreMarks over both embedded
// engines answer every case of sagatest.TestMarker alike.
func TestMarkerConformance(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		sagatest.TestMarker(t, func(t *testing.T) sagatest.MarkerEnv {
			e := sagatest.NewEnv(t, sharedRedis)
			m := e.Marks(e.RDB)
			return sagatest.MarkerEnv{Marks: m, Expire: func(t testing.TB, id idcodec.ID) {
				e.RDB.PExpire(context.Background(), m.Prefix+id.String(), time.Millisecond)
				time.Sleep(20 * time.Millisecond)
			}}
		})
	})
	forEngines(t, func(t *testing.T, open openFunc) {
		sagatest.TestMarker(t, func(t *testing.T) sagatest.MarkerEnv {
			c := newClock()
			m := &saga.StoreMarks{Store: open(t, t.TempDir(), &disk{}), Now: c.Now}
			return sagatest.MarkerEnv{Marks: m, Expire: func(testing.TB, idcodec.ID) {
				c.Add(saga.DefaultMarkTTL + time.Millisecond)
			}}
		})
	})
}

// TestStoreMarksTTL: a lease runs out after LeaseTTL and a done mark after
// TTL (each by the marker's clock), not a millisecond before.
func TestStoreMarksTTL(t *testing.T) {
	forEngines(t, func(t *testing.T, open openFunc) {
		ctx := context.Background()
		c := newClock()
		m := &saga.StoreMarks{Store: open(t, t.TempDir(), &disk{}), Now: c.Now, LeaseTTL: time.Second, TTL: time.Hour}
		id := sagatest.NewIDs(1)[0]
		a, b := saga.NewToken(), saga.NewToken()
		if won, err := m.Claim(ctx, id, a); !won || err != nil {
			t.Fatalf("claim: %v, %v", won, err)
		}
		c.Add(time.Second - time.Millisecond)
		if _, err := m.Claim(ctx, id, b); !errors.Is(err, saga.ErrAuditBusy) {
			t.Fatalf("claim just before the lease runs out: %v, want ErrAuditBusy", err)
		}
		c.Add(time.Millisecond)
		if won, err := m.Claim(ctx, id, b); !won || err != nil {
			t.Fatalf("claim once the lease ran out: %v, %v", won, err)
		}
		if err := m.Mark(ctx, id, b); err != nil {
			t.Fatal(err)
		}
		c.Add(time.Hour - time.Millisecond)
		if won, err := m.Claim(ctx, id, a); won || err != nil {
			t.Fatalf("claim just before the done mark runs out: %v, %v; want done", won, err)
		}
		c.Add(time.Millisecond)
		if won, err := m.Claim(ctx, id, a); !won || err != nil {
			t.Fatalf("claim once the done mark ran out: %v, %v", won, err)
		}
	})
}

// TestStoreMarksRestart: done marks outlive the process (the store is
// closed and opened again by a new marker), leases do not: their holders
// died with the process, so a claim after the restart wins at once.
// Marks of two prefixes (commits, compensations) stay apart.
func TestStoreMarksRestart(t *testing.T) {
	forEngines(t, func(t *testing.T, open openFunc) {
		ctx := context.Background()
		dir := t.TempDir()
		s := open(t, dir, &disk{})
		ids := sagatest.NewIDs(2)
		done, held := ids[0], ids[1]
		comp := &saga.StoreMarks{Store: s}
		if err := comp.Mark(ctx, done, ""); err != nil {
			t.Fatal(err)
		}
		if won, err := comp.Claim(ctx, held, saga.NewToken()); !won || err != nil {
			t.Fatalf("claim: %v, %v", won, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dir, &disk{})
		comp = &saga.StoreMarks{Store: s}
		commits := &saga.StoreMarks{Store: s, Prefix: "idgen:commit:audited:"}
		if won, err := comp.Claim(ctx, done, saga.NewToken()); won || err != nil {
			t.Fatalf("claim of a done mark after the restart: %v, %v; want done", won, err)
		}
		if won, err := comp.Claim(ctx, held, saga.NewToken()); !won || err != nil {
			t.Fatalf("claim of a lease of the dead process: %v, %v; want won", won, err)
		}
		if won, err := commits.Claim(ctx, done, saga.NewToken()); !won || err != nil {
			t.Fatalf("claim under another prefix: %v, %v; want won", won, err)
		}
	})
}

// TestStoreMarksPurge: Purge deletes the done marks that ran out, at most
// limit per call, and keeps the live ones, also one written again before
// its first expiry (that expiry leaves the index); expired leases are
// forgotten.
func TestStoreMarksPurge(t *testing.T) {
	forEngines(t, func(t *testing.T, open openFunc) {
		ctx := context.Background()
		c := newClock()
		s := open(t, t.TempDir(), &disk{})
		m := &saga.StoreMarks{Store: s, Now: c.Now, TTL: time.Hour}
		ids := sagatest.NewIDs(5)
		for _, id := range ids[:3] {
			if err := m.Mark(ctx, id, ""); err != nil {
				t.Fatal(err)
			}
		}
		c.Add(30 * time.Minute)
		// Written again: it runs out later.
		if err := m.Mark(ctx, ids[2], ""); err != nil {
			t.Fatal(err)
		}
		if err := m.Mark(ctx, ids[3], ""); err != nil {
			t.Fatal(err)
		}
		if won, err := m.Claim(ctx, ids[4], saga.NewToken()); !won || err != nil {
			t.Fatalf("claim: %v, %v", won, err)
		}
		if n, err := m.Purge(ctx, 100); n != 0 || err != nil {
			t.Fatalf("purge before any mark ran out: %d, %v; want 0", n, err)
		}
		c.Add(31 * time.Minute)
		if n, err := m.Purge(ctx, 1); n != 1 || err != nil {
			t.Fatalf("purge limited to 1: %d, %v", n, err)
		}
		if n, err := m.Purge(ctx, 100); n != 1 || err != nil {
			t.Fatalf("purge: %d, %v; want the other run-out mark", n, err)
		}
		if n, err := m.Purge(ctx, 100); n != 0 || err != nil {
			t.Fatalf("purge again: %d, %v; want 0", n, err)
		}
		for i, id := range ids[:2] {
			if exp, err := s.AuditMark(ctx, []byte(saga.DefaultMarkPrefix+id.String())); exp != 0 || err != nil {
				t.Fatalf("mark %d after the purge: %d, %v; want gone", i, exp, err)
			}
		}
		for _, id := range ids[2:4] {
			if won, err := m.Claim(ctx, id, saga.NewToken()); won || err != nil {
				t.Fatalf("claim of a live mark after the purge: %v, %v; want done", won, err)
			}
		}
		if got := m.Leases(); got != 0 {
			t.Fatalf("%d leases after the purge, want the expired one forgotten", got)
		}
		c.Add(time.Hour)
		if n, err := m.Purge(ctx, 100); n != 2 || err != nil {
			t.Fatalf("last purge: %d, %v; want 2", n, err)
		}
	})
}

// TestStoreMarksRefused: a done mark the store refuses (its disk below the
// free-space threshold) fails as a Redis mark that cannot be stored does:
// Mark errors with registry.ErrUnavailable, the lease stays until LeaseTTL
// and then a claim wins again (the entry may be repeated, marked
// recovered). Once the disk has room, the mark is stored.
func TestStoreMarksRefused(t *testing.T) {
	forEngines(t, func(t *testing.T, open openFunc) {
		ctx := context.Background()
		c := newClock()
		d := &disk{}
		m := &saga.StoreMarks{Store: open(t, t.TempDir(), d), Now: c.Now}
		id := sagatest.NewIDs(1)[0]
		a := saga.NewToken()
		if won, err := m.Claim(ctx, id, a); !won || err != nil {
			t.Fatalf("claim: %v, %v", won, err)
		}
		d.full.Store(true)
		// The guard notices at its next measure: wait on another ID.
		probe := sagatest.NewIDs(1)[0]
		diskguardtest.Eventually(t, 5*time.Second, "marks refused after the disk filled", func() bool { return m.Mark(ctx, probe, "") != nil })
		err := m.Mark(ctx, id, a)
		if !errors.Is(err, registry.ErrUnavailable) || !errors.Is(err, diskguard.ErrLowSpace) {
			t.Fatalf("mark on a full disk: %v, want ErrUnavailable (low space)", err)
		}
		if _, err := m.Claim(ctx, id, saga.NewToken()); !errors.Is(err, saga.ErrAuditBusy) {
			t.Fatalf("claim under the lease of the unmarked entry: %v, want ErrAuditBusy", err)
		}
		c.Add(saga.DefaultLeaseTTL)
		b := saga.NewToken()
		if won, err := m.Claim(ctx, id, b); !won || err != nil {
			t.Fatalf("claim once the lease ran out: %v, %v; want won", won, err)
		}
		d.full.Store(false)
		diskguardtest.Eventually(t, 5*time.Second, "mark stored after space returned", func() bool { return m.Mark(ctx, id, b) == nil })
		if won, err := m.Claim(ctx, id, a); won || err != nil {
			t.Fatalf("claim after the mark: %v, %v; want done", won, err)
		}
	})
}

// onceFailing refuses its first entry (a full audit disk).
type onceFailing struct {
	next   saga.Recorder
	failed atomic.Bool
}

func (o *onceFailing) Record(e audit.Event) error {
	if o.failed.CompareAndSwap(false, true) {
		return errors.New("audit: no space left on device (test)")
	}
	return o.next.Record(e)
}

// TestStoreMarksRecovery: Core with StoreMarks over an embedded store: a
// compensation whose entry is refused is stored (ErrAudit); its
// redelivery writes the entry once, marked recovered, and so does no later
// one, also after a restart.
func TestStoreMarksRecovery(t *testing.T) {
	forEngines(t, func(t *testing.T, open openFunc) {
		ctx := context.Background()
		dir := t.TempDir()
		s := open(t, dir, &disk{})
		e := sagatest.NewEnv(t, sharedRedis)
		aud, path := e.AuditLog("embedded")
		id := sagatest.NewIDs(1)[0]
		now := time.Now().UnixMilli()
		if _, err := s.Register(ctx, registry.Issue{Records: []registry.Record{{
			ID: id, State: registry.Pending, IssuedAtMS: now, History: []registry.Step{{State: registry.Pending, AtMS: now}},
		}}}, 0, now); err != nil {
			t.Fatal(err)
		}
		core := &saga.Core{Registry: s, Audit: &onceFailing{next: aud}, Marks: &saga.StoreMarks{Store: s}}
		ev := saga.Event{ID: id.String(), Reason: "declined", Redelivered: true}
		if res, err := core.Compensate(ctx, ev); !errors.Is(err, saga.ErrAudit) || res.Outcome != registry.Applied {
			t.Fatalf("first attempt: %+v, %v; want applied with ErrAudit", res, err)
		}
		if res, err := core.Compensate(ctx, ev); err != nil || !res.AuditRecovered || res.Unmarked {
			t.Fatalf("redelivery: %+v, %v; want the entry recovered and marked", res, err)
		}
		if res, err := core.Compensate(ctx, ev); err != nil || res.AuditRecovered {
			t.Fatalf("later redelivery: %+v, %v; want a plain duplicate", res, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dir, &disk{})
		core = &saga.Core{Registry: s, Audit: aud, Marks: &saga.StoreMarks{Store: s}}
		if res, err := core.Compensate(ctx, ev); err != nil || res.AuditRecovered {
			t.Fatalf("redelivery after a restart: %+v, %v; want a plain duplicate", res, err)
		}
		lines := sagatest.AuditLines(t, audit.ActionCompensate, path)
		if len(lines) != 1 || !lines[0].Recovered {
			t.Fatalf("audit %+v, want one entry marked recovered", lines)
		}
	})
}
