package pebblestore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
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

// TestRangesSurviveReopen: ranges never overlap, within one open and across
// a close and reopen of the directory.
func TestRangesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var all []generator.Range
	for round := 0; round < 3; round++ {
		s, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					r, err := s.ClaimRange(ctx, uint64(100+g))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					all = append(all, r)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			a, b := all[i], all[j]
			if a.Start < b.End && b.Start < a.End {
				t.Fatalf("ranges overlap: %+v %+v", a, b)
			}
		}
	}
	if len(all) != 240 {
		t.Fatalf("%d ranges", len(all))
	}
	s := open(t, dir)
	var max uint64
	for _, r := range all {
		max = maxOf(max, r.End)
	}
	if c, err := s.Counter(); err != nil || c != max {
		t.Fatalf("Counter = %d, %v; want %d", c, err, max)
	}
}

func maxOf(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// TestRegisterCollisionWritesNothing: a collision on any record of an issue
// stores none of its records and not its idempotency entry.
func TestRegisterCollisionWritesNothing(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.Register(ctx, pending(id(1), id(2)), 1000, 1); err != nil {
		t.Fatal(err)
	}
	kh := registry.IdemKeyHash("alice", "k")
	iss := pending(id(3), id(2))
	iss.Idem = &registry.IdemEntry{KeyHash: kh, IDs: []idcodec.ID{id(3), id(2)}, CreatedMS: 1}
	_, err := s.Register(ctx, iss, 1000, 1)
	if !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("err = %v, want ErrCollision", err)
	}
	if _, err := s.Get(ctx, id(3)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("half-written issue: id 3 err = %v", err)
	}
	iss = pending(id(4))
	iss.Idem = &registry.IdemEntry{KeyHash: kh, IDs: []idcodec.ID{id(4)}, CreatedMS: 1}
	if replay, err := s.Register(ctx, iss, 1000, 1); err != nil || replay != nil {
		t.Fatalf("idempotency entry of the failed issue was written: replay %v err %v", replay, err)
	}
}

// TestIdempotencyOneWinner: concurrent registrations with one key, group
// committed together, store exactly one answer; the others get it back.
func TestIdempotencyOneWinner(t *testing.T) {
	var (
		mu      sync.Mutex
		batches []int
	)
	s, err := Open(Config{Dir: t.TempDir(), Observe: func(ops int, _ time.Duration) {
		mu.Lock()
		batches = append(batches, ops)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	kh := registry.IdemKeyHash("alice", "order-1")
	var (
		wg      sync.WaitGroup
		winners []idcodec.ID
		answers = map[idcodec.ID]int{}
	)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := id(uint64(100 + g))
			iss := pending(mine)
			iss.Idem = &registry.IdemEntry{KeyHash: kh, IDs: []idcodec.ID{mine}, CreatedMS: 1}
			replay, err := s.Register(ctx, iss, 1000, 1)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if replay == nil {
				winners = append(winners, mine)
				answers[mine]++
			} else {
				answers[replay.IDs[0]]++
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 || len(answers) != 1 || answers[winners[0]] != 32 {
		t.Fatalf("winners %v answers %v", winners, answers)
	}
	mu.Lock()
	t.Logf("batch sizes %v", batches)
	mu.Unlock()
	// An expired entry (created before now - ttl) is replaced.
	iss := pending(id(500))
	iss.Idem = &registry.IdemEntry{KeyHash: kh, IDs: []idcodec.ID{id(500)}, CreatedMS: 5000}
	if replay, err := s.Register(ctx, iss, 1000, 5000); err != nil || replay != nil {
		t.Fatalf("after ttl: replay %v err %v", replay, err)
	}
}

// TestConcurrentTransitions: commit and compensate racing on the same IDs
// serialize; the result is one of the legal histories.
func TestConcurrentTransitions(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	var ids []idcodec.ID
	for i := uint64(0); i < 20; i++ {
		ids = append(ids, id(i))
	}
	if _, err := s.Register(ctx, pending(ids...), 1000, 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, x := range ids {
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				to := registry.Committed
				if g%2 == 1 {
					to = registry.Compensated
				}
				_, _, err := s.Transition(ctx, x, registry.Change{To: to, NowMS: 2})
				if err != nil && !(to == registry.Committed && errors.Is(err, registry.ErrConflict)) {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	for _, x := range ids {
		rec, err := s.Get(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != registry.Compensated {
			t.Fatalf("%s ended %s, want compensated", x, rec.State)
		}
		counts := map[registry.State]int{}
		for _, st := range rec.History {
			counts[st.State]++
		}
		if counts[registry.Compensated] != 1 || counts[registry.Committed] > 1 || counts[registry.Pending] != 1 {
			t.Fatalf("%s history %+v", x, rec.History)
		}
	}
}

func TestTransitionOutcomes(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.Register(ctx, pending(id(1)), 1000, 1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      idcodec.ID
		ch      registry.Change
		want    registry.Outcome
		wantErr error
	}{
		{"commit pending", id(1), registry.Change{To: registry.Committed, NowMS: 2}, registry.Applied, nil},
		{"commit again", id(1), registry.Change{To: registry.Committed, NowMS: 3}, registry.Replayed, nil},
		{"commit unknown", id(2), registry.Change{To: registry.Committed, NowMS: 3}, 0, registry.ErrNotFound},
		{"null compensation", id(2), registry.Change{To: registry.Compensated, NowMS: 4}, registry.Tombstoned, nil},
		{"commit tombstone", id(2), registry.Change{To: registry.Committed, NowMS: 5}, 0, registry.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, out, err := s.Transition(ctx, tt.id, tt.ch)
			if !errors.Is(err, tt.wantErr) || out != tt.want {
				t.Fatalf("got %v, %v; want %v, %v", out, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := s.Register(ctx, pending(id(2)), 1000, 6); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("registration over a tombstone: %v", err)
	}
}

func TestDeadlineIndex(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	iss := pending(id(1), id(2), id(3))
	for i := range iss.Records {
		iss.Records[i].DeadlineMS = int64(100 * (i + 1))
	}
	if _, err := s.Register(ctx, iss, 1000, 1); err != nil {
		t.Fatal(err)
	}
	got, err := s.Expired(ctx, 250, 10)
	if err != nil || len(got) != 2 || got[0] != id(1) || got[1] != id(2) {
		t.Fatalf("Expired = %v, %v", got, err)
	}
	if got, _ := s.Expired(ctx, 200, 10); len(got) != 2 {
		t.Fatalf("deadline equal to now not expired: %v", got)
	}
	if got, _ := s.Expired(ctx, 1000, 1); len(got) != 1 || got[0] != id(1) {
		t.Fatalf("limit 1: %v", got)
	}
	if _, _, err := s.Transition(ctx, id(1), registry.Change{To: registry.Committed, NowMS: 5}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Expired(ctx, 1000, 10)
	if len(got) != 2 || got[0] != id(2) {
		t.Fatalf("after commit: %v", got)
	}
}

func TestPurgeIdempotency(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		iss := pending(id(uint64(i)))
		iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("a", string(rune('a'+i))), IDs: []idcodec.ID{id(uint64(i))}, CreatedMS: int64(100 * i)}
		if _, err := s.Register(ctx, iss, 1_000_000, 0); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		cutoff int64
		limit  int
		want   int
	}{
		{"limited", 250, 2, 2},
		{"rest before cutoff", 250, 10, 1},
		{"nothing left before cutoff", 250, 10, 0},
		{"all", 1000, 10, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n, err := s.PurgeIdempotency(ctx, tt.cutoff, tt.limit); err != nil || n != tt.want {
				t.Fatalf("purged %d, %v; want %d", n, err, tt.want)
			}
		})
	}
}

func TestCloseFlushesAndRefuses(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	acked := make(chan idcodec.ID, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Register(ctx, pending(id(uint64(i))), 1000, 1); err == nil {
				acked <- id(uint64(i))
			} else if !errors.Is(err, registry.ErrClosed) {
				t.Error(err)
			}
		}()
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(acked)
	if _, err := s.Register(ctx, pending(id(9999)), 1000, 1); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if _, err := s.Get(ctx, id(0)); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Get after close: %v", err)
	}
	if _, err := s.Expired(ctx, 0, 1); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Expired after close: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Ping after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s2 := open(t, dir)
	if err := s2.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for x := range acked {
		n++
		if _, err := s2.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s lost: %v", x, err)
		}
	}
	t.Logf("%d of 200 registrations acknowledged before close", n)
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
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"max shard", Config{Shard: idcodec.MaxShard}, true},
		{"shard too big", Config{Shard: idcodec.MaxShard + 1}, false},
		{"negative batch", Config{MaxBatch: -1}, false},
		{"negative timeout", Config{OpenTimeout: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
}

// TestPurgeKeepsReusedKey: purging deletes the stale entry, and a key reused
// after its entry went stale keeps its fresh entry.
func TestPurgeKeepsReusedKey(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	reg := func(key string, counter uint64, created int64) *registry.IdemEntry {
		iss := pending(id(counter))
		iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("s", key), IDs: []idcodec.ID{id(counter)}, CreatedMS: created}
		replay, err := s.Register(ctx, iss, 1000, created)
		if err != nil {
			t.Fatal(err)
		}
		return replay
	}
	reg("stale", 1, 100)
	reg("reused", 2, 100)
	if r := reg("reused", 3, 5000); r != nil { // expired (ttl 1000): replaced
		t.Fatalf("expired entry replayed: %+v", r)
	}
	if n, err := s.PurgeIdempotency(ctx, 1000, 10); err != nil || n != 2 {
		t.Fatalf("purged %d, %v; want the 2 index entries before 1000", n, err)
	}
	if r := reg("reused", 4, 5100); r == nil || r.IDs[0] != id(3) {
		t.Fatalf("fresh entry of a reused key lost: %+v", r)
	}
	// The stale key is gone: a registration long before its TTL would end
	// does not replay it.
	iss := pending(id(5))
	iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("s", "stale"), IDs: []idcodec.ID{id(5)}, CreatedMS: 101}
	if r, err := s.Register(ctx, iss, 1_000_000, 101); err != nil || r != nil {
		t.Fatalf("purged entry still answers: %+v, %v", r, err)
	}
}

func TestKeyStore(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	if v, err := s.GetKey(ctx, "dek:a"); err != nil || v != nil {
		t.Fatalf("absent key: %v %v", v, err)
	}
	if v, err := s.PutKeyIfAbsent(ctx, "dek:a", []byte("one")); err != nil || string(v) != "one" {
		t.Fatalf("first put: %q %v", v, err)
	}
	if v, err := s.PutKeyIfAbsent(ctx, "dek:a", []byte("two")); err != nil || string(v) != "one" {
		t.Fatalf("second put must keep the first: %q %v", v, err)
	}
	if err := s.DeleteKey(ctx, "dek:a"); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetKey(ctx, "dek:a"); v != nil {
		t.Fatalf("deleted key still there: %q", v)
	}
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
