package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/registry"
)

// TestTrimKeepsReleasesOfKeptClaim: a trim whose cutoff falls between a
// claim's announcement and its confirmation removes the announcement and
// keeps the confirmed claim with its releases (both share the releases'
// hash field, the claim's start); the trimmed claims before go.
func TestTrimKeepsReleasesOfKeptClaim(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{Shard: 3, Retention: time.Hour})
	t0 := time.Now().UnixMilli() - 2*time.Hour.Milliseconds()
	c := registry.Claim{Shard: 3, Start: 0, End: 100, Instance: "a", Source: registry.SourceZooKeeper, AtMS: t0, Unconfirmed: true}
	if err := s.RecordClaim(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.Unconfirmed, c.AtMS = false, t0+5
	if err := s.RecordClaim(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRelease(ctx, 0, registry.Release{Start: 50, End: 100, Reason: registry.ReleasedAtShutdown, AtMS: t0 + 6}); err != nil {
		t.Fatal(err)
	}
	// The next claim is recorded Retention+2ms after the announcement: the
	// cutoff falls between announcement (t0) and confirmation (t0+5).
	next := registry.Claim{Shard: 3, Start: 100, End: 200, Instance: "a", Source: registry.SourceZooKeeper, AtMS: t0 + time.Hour.Milliseconds() + 2}
	if err := s.RecordClaim(ctx, next); err != nil {
		t.Fatal(err)
	}
	es, err := s.Claims(ctx, 0, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Start != 0 || es[0].Unconfirmed || len(es[0].Releases) != 1 || es[1].Start != 100 {
		t.Fatalf("claims after the trim: %+v; want the confirmed [0,100) with its release, and [100,200)", es)
	}
}
