package boltstore

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

func open(t *testing.T, dir string) *Store {
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
// a close and reopen of the file.
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
}

func TestRegisterCollisionWritesNothing(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.Register(ctx, pending(id(1), id(2)), 1000, 1); err != nil {
		t.Fatal(err)
	}
	_, err := s.Register(ctx, pending(id(3), id(2)), 1000, 1)
	if !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("err = %v, want ErrCollision", err)
	}
	if _, err := s.Get(ctx, id(3)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("half-written issue: id 3 err = %v", err)
	}
}

// TestIdempotencyOneWinner: concurrent registrations with one key, group
// committed together, store exactly one answer; the others get it back.
func TestIdempotencyOneWinner(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	kh := registry.IdemKeyHash("alice", "order-1")
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
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
	if _, _, err := s.Transition(ctx, id(1), registry.Change{To: registry.Committed, NowMS: 5}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Expired(ctx, 1000, 10)
	if len(got) != 2 || got[0] != id(2) {
		t.Fatalf("after commit: %v", got)
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
	s2 := open(t, dir)
	n := 0
	for x := range acked {
		n++
		if _, err := s2.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s lost: %v", x, err)
		}
	}
	t.Logf("%d of 200 registrations acknowledged before close", n)
}

func TestSecondOpenTimesOut(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if _, err := Open(Config{Dir: dir, OpenTimeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("a second process could open the same store")
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
