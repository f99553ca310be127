package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// ids is id(lo), ..., id(hi-1).
func ids(lo, hi uint64) []idcodec.ID {
	out := make([]idcodec.ID, 0, hi-lo)
	for c := lo; c < hi; c++ {
		out = append(out, id(c))
	}
	return out
}

// issuedBy is an issue of pending records of ids for subject.
func issuedBy(subject string, ids []idcodec.ID) registry.Issue {
	iss := pending(ids...)
	for i := range iss.Records {
		iss.Records[i].Subject = subject
		iss.Records[i].History[0].Actor = subject
	}
	return iss
}

// wantRecords fails t unless each of ids is held for subject ("" = absent).
func wantRecords(t *testing.T, s *Store, subject string, ids []idcodec.ID) {
	t.Helper()
	for _, x := range ids {
		rec, err := s.Get(context.Background(), x)
		switch {
		case subject == "" && !errors.Is(err, registry.ErrNotFound):
			t.Fatalf("%s: want absent, got %+v, %v", x, rec, err)
		case subject != "" && (err != nil || rec.Subject != subject || rec.State != registry.Pending):
			t.Fatalf("%s: want pending of %s, got %+v, %v", x, subject, rec, err)
		}
	}
}

// commandCalls is the number of calls of cmd since the last CONFIG
// RESETSTAT of the server s writes to.
func commandCalls(t *testing.T, s *Store, cmd string) int64 {
	t.Helper()
	info, err := raw(t, s.cfg.Addrs[0]).Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		// cmdstat_hset:calls=3,usec=...
		if v, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, err := strconv.ParseInt(v[:strings.IndexByte(v+",", ',')], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0 // never called
}

// A batch of IDs of one millisecond into free fields is one run per bucket
// (one HSET of RunsField, no field per counter, no HSETNX); a resend of it
// finds its own values; records and maps are those of record-by-record
// writes.
func TestGroupIsOneRunPerBucket(t *testing.T) {
	s := open(t, Config{Addrs: []string{redisharnessStandalone(t, "noeviction")}, Shard: 3, Retention: time.Hour})
	ctx := context.Background()
	if err := raw(t, s.cfg.Addrs[0]).ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	batch := ids(1, 301) // buckets 0, 1 and 2
	if _, err := s.Register(ctx, pending(batch...), 0, testMS); err != nil {
		t.Fatal(err)
	}
	if n, m := commandCalls(t, s, "hset"), commandCalls(t, s, "hsetnx"); n != 3 || m != 0 {
		t.Fatalf("%d HSET, %d HSETNX calls; want 3 and 0", n, m)
	}
	for b := range uint64(3) {
		key, _ := s.bucket(id(b << bucketBits))
		if f, err := s.client.HKeys(ctx, key).Result(); err != nil || len(f) != 1 || f[0] != RunsField {
			t.Fatalf("bucket %d fields %q (%v), want only %q", b, f, err, RunsField)
		}
	}
	if _, err := s.Register(ctx, pending(batch...), 0, testMS); err != nil {
		t.Fatalf("resend: %v", err)
	}
	wantRecords(t, s, "svc-payments", batch)
	checkStateMaps(t, s, 0, 3)
}

// A registration overlapping one written earlier in the same call, by
// another subject: it collides and writes nothing, also in the fields the
// first did not write (the call's own writes reach the maps only at its
// end, so they are looked up in the call).
func TestGroupOverlapInOneCall(t *testing.T) {
	s := open(t, Config{Shard: 3, Retention: time.Hour})
	batch := []*op{edgeOp(s, issuedBy("a", ids(10, 21))), edgeOp(s, issuedBy("b", ids(1, 13)))}
	s.flush(batch)
	if batch[0].err != nil || !errors.Is(batch[1].err, registry.ErrCollision) {
		t.Fatalf("errors %v / %v", batch[0].err, batch[1].err)
	}
	wantRecords(t, s, "a", ids(10, 21))
	wantRecords(t, s, "", ids(1, 10))
	checkStateMaps(t, s, 0, 1)
}

// A batch over a field already held collides and leaves nothing: across
// buckets, neither the bucket written whole before the collision nor the
// fields of the colliding bucket before the held one stay; a bucket
// without a map (written by an idgen before state maps) is written field
// by field, so a held field is a collision, never overwritten.
func TestGroupCollision(t *testing.T) {
	for _, tc := range []struct {
		name         string
		held, lo, hi uint64 // the counter held by "b"; the batch of "a"
		dropMap      bool
	}{
		{name: "across buckets", held: 150, lo: 100, hi: 201},
		{name: "bucket without map", held: 20, lo: 10, hi: 30, dropMap: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, Config{Shard: 3, Retention: time.Hour})
			ctx := context.Background()
			if _, err := s.Register(ctx, issuedBy("b", ids(tc.held, tc.held+1)), 0, testMS); err != nil {
				t.Fatal(err)
			}
			if tc.dropMap {
				if err := s.client.Del(ctx, s.stateKey(tc.held>>bucketBits)).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Register(ctx, issuedBy("a", ids(tc.lo, tc.hi)), 0, testMS); !errors.Is(err, registry.ErrCollision) {
				t.Fatalf("want a collision, got %v", err)
			}
			wantRecords(t, s, "", ids(tc.lo, tc.held))
			wantRecords(t, s, "b", ids(tc.held, tc.held+1))
			wantRecords(t, s, "", ids(tc.held+1, tc.hi))
			if !tc.dropMap {
				checkStateMaps(t, s, tc.lo>>bucketBits, tc.hi>>bucketBits+1)
			}
		})
	}
}
