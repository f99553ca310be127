package registrytest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// transitionOutcomes: every transition of the saga from every state, in
// order on one record and on an unknown ID (null compensation, tombstone);
// what Transition returns is what Get reads; a registration over a
// tombstone is a collision.
func transitionOutcomes(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.Register(ctx, Pending(ID(1)), idemTTL, NowMS); err != nil {
		t.Fatal(err)
	}
	sweep := registry.Change{To: registry.Compensated, From: registry.Pending, Reason: "timeout", Actor: "system", NowMS: NowMS + 9}
	tests := []struct {
		name    string
		id      idcodec.ID
		ch      registry.Change
		want    registry.Outcome
		wantErr error
	}{
		{"commit pending", ID(1), registry.Change{To: registry.Committed, Actor: "a", NowMS: NowMS + 2}, registry.Applied, nil},
		{"commit again", ID(1), registry.Change{To: registry.Committed, NowMS: NowMS + 3}, registry.Replayed, nil},
		{"sweep committed", ID(1), sweep, 0, registry.ErrConflict},
		{"compensate committed", ID(1), registry.Change{To: registry.Compensated, Reason: "r", Actor: "b", NowMS: NowMS + 4}, registry.Applied, nil},
		{"compensate again", ID(1), registry.Change{To: registry.Compensated, Reason: "r", NowMS: NowMS + 5}, registry.Replayed, nil},
		{"commit compensated", ID(1), registry.Change{To: registry.Committed, NowMS: NowMS + 6}, 0, registry.ErrConflict},
		{"commit unknown", ID(2), registry.Change{To: registry.Committed, NowMS: NowMS + 3}, 0, registry.ErrNotFound},
		{"sweep unknown", ID(2), sweep, 0, registry.ErrConflict},
		{"null compensation", ID(2), registry.Change{To: registry.Compensated, Reason: "r", Actor: "c", NowMS: NowMS + 4}, registry.Tombstoned, nil},
		{"null compensation again", ID(2), registry.Change{To: registry.Compensated, NowMS: NowMS + 5}, registry.Replayed, nil},
		{"commit tombstone", ID(2), registry.Change{To: registry.Committed, NowMS: NowMS + 5}, 0, registry.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, out, err := s.Transition(ctx, tt.id, tt.ch)
			if !errors.Is(err, tt.wantErr) || out != tt.want {
				t.Fatalf("got %v, %v; want %v, %v", out, err, tt.want, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got, err := s.Get(ctx, tt.id); err != nil || !reflect.DeepEqual(got, rec) {
				t.Fatalf("Get after the transition:\n got %+v, %v\nwant %+v", got, err, rec)
			}
		})
	}
	rec, err := s.Get(ctx, ID(1))
	want := []registry.Step{
		{State: registry.Pending, AtMS: NowMS, Actor: Subject},
		{State: registry.Committed, AtMS: NowMS + 2, Actor: "a"},
		{State: registry.Compensated, AtMS: NowMS + 4, Reason: "r", Actor: "b"},
	}
	if err != nil || rec.State != registry.Compensated || rec.IssuedAtMS != NowMS || rec.Subject != Subject || !reflect.DeepEqual(rec.History, want) {
		t.Fatalf("record %+v, %v; want history %+v", rec, err, want)
	}
	tomb, err := s.Get(ctx, ID(2))
	if err != nil || !tomb.Tombstone || tomb.State != registry.Compensated || tomb.IssuedAtMS != 0 || len(tomb.History) != 1 || tomb.History[0].Actor != "c" {
		t.Fatalf("tombstone %+v, %v", tomb, err)
	}
	if _, err := s.Register(ctx, Pending(ID(2)), idemTTL, NowMS+6); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("registration over a tombstone: %v, want ErrCollision", err)
	}
}

// ConcurrentTransitions: commits and compensations racing on the same IDs,
// spread over stores (instances of one registry), serialize: every ID ends
// compensated with one pending, one compensated and at most one committed
// step; exactly one caller was told Applied for the compensation, and as
// many for the commit as the history holds; no deadline entry is left.
// Backends with several instances per registry call it with several.
func ConcurrentTransitions(t *testing.T, stores ...Store) {
	ctx := context.Background()
	var ids []idcodec.ID
	for i := range uint64(40) {
		ids = append(ids, ID(i*37))
	}
	iss := Pending(ids...)
	for i := range iss.Records {
		iss.Records[i].DeadlineMS = NowMS + 10
	}
	if _, err := stores[0].Register(ctx, iss, idemTTL, NowMS); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied = map[idcodec.ID]map[registry.State]int{}
	)
	for _, x := range ids {
		applied[x] = map[registry.State]int{}
	}
	for _, x := range ids {
		for g := range 8 {
			wg.Go(func() {
				to := registry.Committed
				if g%2 == 1 {
					to = registry.Compensated
				}
				s := stores[(g%2^(g/2)%2)%len(stores)]
				_, out, err := s.Transition(ctx, x, registry.Change{To: to, NowMS: NowMS + int64(g), Actor: "t"})
				if err != nil {
					if to != registry.Committed || !errors.Is(err, registry.ErrConflict) {
						t.Error(err)
					}
					return
				}
				if out == registry.Applied {
					mu.Lock()
					applied[x][to]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, x := range ids {
		rec, err := stores[len(stores)-1].Get(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[registry.State]int{}
		for _, st := range rec.History {
			counts[st.State]++
		}
		if rec.State != registry.Compensated || counts[registry.Compensated] != 1 || counts[registry.Committed] > 1 || counts[registry.Pending] != 1 {
			t.Fatalf("%s: %s, history %+v", x, rec.State, rec.History)
		}
		if applied[x][registry.Compensated] != 1 || applied[x][registry.Committed] != counts[registry.Committed] {
			t.Fatalf("%s: applied %v, history %+v", x, applied[x], rec.History)
		}
	}
	if got, err := stores[0].Expired(ctx, NowMS+10, 100); err != nil || len(got) != 0 {
		t.Fatalf("deadline entries left after compensation: %v, %v", got, err)
	}
}

// deadlineIndex: Expired lists the pending IDs whose deadline is at or
// before now, oldest first, at most limit; a commit and a sweep take an ID
// out of the index.
func deadlineIndex(t *testing.T, s Store) {
	ctx := context.Background()
	iss := Pending(ID(1), ID(2), ID(3))
	for i := range iss.Records {
		iss.Records[i].DeadlineMS = NowMS + int64(100*(i+1))
	}
	if _, err := s.Register(ctx, iss, idemTTL, NowMS); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		now   int64
		limit int
		want  []idcodec.ID
	}{
		{"none yet", NowMS + 99, 10, nil},
		{"two", NowMS + 250, 10, []idcodec.ID{ID(1), ID(2)}},
		{"deadline equal to now", NowMS + 200, 10, []idcodec.ID{ID(1), ID(2)}},
		{"limit 1", NowMS + 1000, 1, []idcodec.ID{ID(1)}},
		{"all", NowMS + 1000, 10, []idcodec.ID{ID(1), ID(2), ID(3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := s.Expired(ctx, tt.now, tt.limit); err != nil || len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Fatalf("Expired = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, _, err := s.Transition(ctx, ID(1), registry.Change{To: registry.Committed, NowMS: NowMS + 5}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Transition(ctx, ID(3), registry.Change{To: registry.Compensated, From: registry.Pending, Reason: "timeout", Actor: "system", NowMS: NowMS + 500}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Expired(ctx, NowMS+1000, 10); err != nil || len(got) != 1 || got[0] != ID(2) {
		t.Fatalf("after a commit and a sweep: %v, %v; want [%s]", got, err, ID(2))
	}
}
