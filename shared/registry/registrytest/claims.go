package registrytest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// claimLedger: claims come back in order of Start, within the asked window
// only, each with its releases; recording a claim or a release again
// changes nothing; malformed claims and releases and claims of another
// shard are refused; ScanCounters yields exactly the records whose counter
// is in its range, also across record buckets and above 2^53.
func claimLedger(t *testing.T, s Store) {
	ctx := context.Background()
	claim := func(start, end uint64, atMS int64) registry.Claim {
		return registry.Claim{Shard: Shard, Start: start, End: end, Worker: Worker, Instance: "i-1", Source: registry.SourceZooKeeper, AtMS: atMS}
	}
	big := uint64(1<<53 + 1)
	claims := []registry.Claim{
		claim(1000, 2000, NowMS+20), // recorded out of order of Start
		claim(0, 1000, NowMS+10),
		claim(big, big+500, NowMS+30),
		claim(5000, 6000, NowMS+900), // outside the window below
	}
	for _, c := range claims {
		for range 2 {
			if err := s.RecordClaim(ctx, c); err != nil {
				t.Fatalf("RecordClaim %+v: %v", c, err)
			}
		}
	}
	for _, bad := range []registry.Claim{
		{Shard: Shard, Start: 10, End: 10, Source: registry.SourceZooKeeper, AtMS: NowMS},
		{Shard: Shard, Start: 10, End: 20, Source: "dice", AtMS: NowMS},
		{Shard: Shard + 1, Start: 10, End: 20, Source: registry.SourceZooKeeper, AtMS: NowMS},
	} {
		if err := s.RecordClaim(ctx, bad); !errors.Is(err, registry.ErrBadClaim) {
			t.Fatalf("RecordClaim %+v: %v, want ErrBadClaim", bad, err)
		}
	}
	rel := registry.Release{Start: 1500, End: 2000, Reason: registry.ReleasedAtShutdown, AtMS: NowMS + 40}
	for range 2 {
		if err := s.RecordRelease(ctx, 1000, rel); err != nil {
			t.Fatal(err)
		}
	}
	pre := registry.Release{Start: big, End: big + 500, Reason: registry.ReleasedPrefetch, AtMS: NowMS + 41}
	if err := s.RecordRelease(ctx, big, pre); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRelease(ctx, 1000, registry.Release{Start: 900, End: 950, Reason: registry.ReleasedAtShutdown}); !errors.Is(err, registry.ErrBadClaim) {
		t.Fatalf("release below its claim: %v, want ErrBadClaim", err)
	}
	got, err := s.Claims(ctx, NowMS, NowMS+100)
	if err != nil {
		t.Fatal(err)
	}
	want := []registry.ClaimEntry{
		{Claim: claims[1]},
		{Claim: claims[0], Releases: []registry.Release{rel}},
		{Claim: claims[2], Releases: []registry.Release{pre}},
	}
	if !slices.EqualFunc(got, want, func(a, b registry.ClaimEntry) bool {
		return a.Claim == b.Claim && slices.Equal(a.Releases, b.Releases)
	}) {
		t.Fatalf("Claims:\n got %+v\nwant %+v", got, want)
	}
	if got, err := s.Claims(ctx, NowMS+500, NowMS+1000); err != nil || len(got) != 1 || got[0].Claim != claims[3] {
		t.Fatalf("later window: %+v, %v", got, err)
	}

	// Records of counters around bucket edges and the range's ends.
	in := []uint64{1000, 1127, 1128, 1999, big, big + 499}
	out := []uint64{999, 2000, big + 500}
	var ids []idcodec.ID
	for _, c := range append(slices.Clone(in), out...) {
		ids = append(ids, ID(c))
	}
	if _, err := s.Register(ctx, Pending(ids...), idemTTL, NowMS); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Transition(ctx, ID(1128), registry.Change{To: registry.Committed, Actor: Subject, NowMS: NowMS + 1}); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]registry.State{}
	scan := func(start, end uint64) {
		t.Helper()
		if err := s.ScanCounters(ctx, start, end, func(r registry.Record) error {
			c := r.ID.Decompose().Counter
			if _, dup := seen[c]; dup {
				t.Fatalf("counter %d scanned twice", c)
			}
			if r.ID != ID(c) {
				t.Fatalf("scanned %s, want %s", r.ID, ID(c))
			}
			seen[c] = r.State
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	scan(1000, 2000)
	scan(big, big+500)
	if len(seen) != len(in) {
		t.Fatalf("scanned %v, want counters %v", seen, in)
	}
	for _, c := range in {
		want := registry.Pending
		if c == 1128 {
			want = registry.Committed
		}
		if seen[c] != want {
			t.Fatalf("counter %d: %v, want %v (scanned %v)", c, seen[c], want, seen)
		}
	}
	stop := errors.New("stop")
	if err := s.ScanCounters(ctx, 0, 1<<20, func(registry.Record) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ScanCounters does not return fn's error: %v", err)
	}
}
