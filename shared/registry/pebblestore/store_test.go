package pebblestore

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func id(counter uint64) idcodec.ID {
	return idcodec.MustCompose(idcodec.Fields{TimestampMS: 1_764_000_000_000, Counter: counter})
}

func pending(ids ...idcodec.ID) registry.Issue {
	var iss registry.Issue
	for _, x := range ids {
		iss.Records = append(iss.Records, registry.Record{ID: x, State: registry.Pending, IssuedAtMS: 1, History: []registry.Step{{State: registry.Pending, AtMS: 1}}})
	}
	return iss
}

// TestRegistry runs the registry conformance suite.
func TestRegistry(t *testing.T) {
	registrytest.Run(t, func(_ *testing.T, dir string) (*Store, error) {
		return Open(Config{Dir: dir, Shard: registrytest.Shard})
	})
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	t0 := time.Now()
	if s, err := Open(Config{Dir: dir, OpenTimeout: 100 * time.Millisecond}); err == nil {
		s.Close()
		t.Fatal("a second store could open the same directory")
	} else {
		t.Logf("after %v: %v", time.Since(t0).Round(time.Millisecond), err)
	}
}

func TestConfigValidate(t *testing.T) {
	registrytest.ValidateConfig(t, func(shard uint8, maxBatch int) Config { return Config{Shard: shard, MaxBatch: maxBatch} },
		registrytest.ConfigCase[Config]{Name: "negative timeout", Cfg: Config{OpenTimeout: -1}},
		registrytest.ConfigCase[Config]{Name: "negative close timeout", Cfg: Config{CloseTimeout: -1}},
		registrytest.ConfigCase[Config]{Name: "negative error log interval", Cfg: Config{Engine: Engine{ErrorLogInterval: -1}}})
}

// TestRecordProbeAcrossReopen: registering skips the existence probe only
// for IDs above every record key written (read back at Open, raised by
// tombstones too), so collisions are still caught after a reopen, on the
// highest key itself, and under a tombstone above every issued ID.
func TestRecordProbeAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	at := func(ms uint64, counter uint64) idcodec.ID {
		return idcodec.MustCompose(idcodec.Fields{TimestampMS: ms, Counter: counter})
	}
	const ms = 1_764_000_000_000
	high := at(ms+5000, 1) // a compensation of an ID never issued here
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, pending(at(ms, 1), at(ms, 2), at(ms, 3)), 1000, 1); err != nil {
		t.Fatal(err)
	}
	if _, out, err := s.Transition(ctx, high, registry.Change{To: registry.Compensated, NowMS: 2}); err != nil || out != registry.Tombstoned {
		t.Fatalf("tombstone: %v, %v", out, err)
	}
	if _, err := s.Register(ctx, pending(high), 1000, 3); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("registration over a tombstone above every issued ID: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	for _, x := range []idcodec.ID{at(ms, 3), at(ms, 1), high} {
		if _, err := s.Register(ctx, pending(x), 1000, 4); !errors.Is(err, registry.ErrCollision) {
			t.Fatalf("after reopen, registering %s again: %v, want ErrCollision", x, err)
		}
	}
	for _, x := range []idcodec.ID{at(ms, 4), at(ms+9000, 1)} { // below and above the highest key
		if _, err := s.Register(ctx, pending(x), 1000, 5); err != nil {
			t.Fatalf("after reopen, registering new %s: %v", x, err)
		}
		if _, err := s.Register(ctx, pending(x), 1000, 6); !errors.Is(err, registry.ErrCollision) {
			t.Fatalf("registering %s twice: %v, want ErrCollision", x, err)
		}
	}
}
