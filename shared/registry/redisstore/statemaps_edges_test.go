package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

func edgeOp(s *Store, iss registry.Issue) *op {
	o := &op{kind: opRegister, iss: iss, done: make(chan struct{}, 1)}
	for i := range iss.Records {
		k, f := s.bucket(iss.Records[i].ID)
		o.keys, o.fields = append(o.keys, k), append(o.fields, f)
		o.vals = append(o.vals, appendValue(nil, &iss.Records[i], s.nonceBase))
	}
	return o
}

func otherID(c uint64) idcodec.ID {
	return idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS + 1, Worker: 7, Shard: 3, Counter: c})
}

// flushColliding flushes in one call a registration of id(5), then second,
// which holds another ID of counter 5: the first is written, the second
// fails with ErrCollision.
func flushColliding(t *testing.T, s *Store, second registry.Issue) {
	t.Helper()
	batch := []*op{edgeOp(s, pending(id(5))), edgeOp(s, second)}
	s.flush(batch)
	if batch[0].err != nil || !errors.Is(batch[1].err, registry.ErrCollision) {
		t.Fatalf("errors %v / %v", batch[0].err, batch[1].err)
	}
}

// Two registrations of one counter in one call: the first is written, the
// second collides; the map says the first's record is pending.
func TestStateMapCollisionInOneCall(t *testing.T) {
	s := open(t, Config{Shard: 3, Retention: time.Hour})
	flushColliding(t, s, pending(otherID(5)))
	checkStateMaps(t, s, 0, 1)
}

// The same, a batch registration ('R') colliding with a one-record one.
func TestStateMapBatchCollisionInOneCall(t *testing.T) {
	s := open(t, Config{Shard: 3, Retention: time.Hour})
	flushColliding(t, s, pending(id(6), otherID(5)))
	checkStateMaps(t, s, 0, 1)
}

// A bucket extended by a resend while another registration of the call
// collides on the same field: the map's TTL follows the bucket's.
func TestStateMapTTLFollowsBucketOnCollision(t *testing.T) {
	s := open(t, Config{Shard: 3, Retention: time.Hour})
	ctx := context.Background()
	if _, err := s.Register(ctx, pending(id(5)), 0, testMS); err != nil {
		t.Fatal(err)
	}
	bk, mk := s.bucketKey(0), s.stateKey(0)
	// time passes: both have 30 minutes left
	for _, k := range []string{bk, mk} {
		if err := s.client.PExpire(ctx, k, 30*time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	flushColliding(t, s, pending(otherID(5)))
	mttl, bttl := s.client.PTTL(ctx, mk).Val(), s.client.PTTL(ctx, bk).Val()
	if mttl < bttl {
		t.Fatalf("map TTL %v < bucket TTL %v", mttl, bttl)
	}
}

// A registration whose call fails with an error reply after writing a
// record into a new bucket: the bucket gets its TTL and its map the
// record's byte, which the next call's write of the bucket keeps.
func TestStateMapWriteAfterErrorReply(t *testing.T) {
	s := open(t, Config{Shard: 3, Retention: time.Hour})
	ctx := context.Background()
	poison := id(1 << 30)
	key, _ := s.bucket(poison)
	if err := raw(t, shared.Addr()).Set(ctx, key, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	batch := []*op{edgeOp(s, pending(id(2), poison)), edgeOp(s, pending(id(3)))}
	s.flush(batch)
	if batch[1].err != nil || batch[0].err == nil {
		t.Fatalf("errors %v / %v", batch[0].err, batch[1].err)
	}
	checkStateMaps(t, s, 0, 1)
	if ttl := s.client.PTTL(ctx, s.bucketKey(0)).Val(); ttl < 0 {
		t.Errorf("bucket 0 without TTL: %v", ttl)
	}
}

// A resend of a registration and a commit of the same ID in one call: the
// map says committed (the 'M' runs, after every sub-operation, leave a
// field a compare-and-set wrote).
func TestStateMapResendAndTransitionInOneCall(t *testing.T) {
	s := open(t, Config{Shard: 3, Retention: time.Hour})
	ctx := context.Background()
	iss := pending(id(10))
	if _, err := s.Register(ctx, iss, 0, testMS); err != nil {
		t.Fatal(err)
	}
	key, field := s.bucket(id(10))
	old, err := s.load(ctx, id(10))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decodeValue(id(10), old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Apply(&rec, true, registry.Change{To: registry.Committed, Actor: "svc-payments", NowMS: testMS + 1}); err != nil {
		t.Fatal(err)
	}
	cas := &op{kind: opCAS, key: key, field: field, old: old, new: appendValue(nil, &rec, s.nonce()), ttl: time.Hour.Milliseconds(), state: registry.StateOf(&rec), done: make(chan struct{}, 1)}
	batch := []*op{edgeOp(s, iss), cas}
	s.flush(batch)
	if batch[0].err != nil || cas.err != nil || cas.mismatch {
		t.Fatalf("errors %v / %v %v", batch[0].err, cas.err, cas.mismatch)
	}
	checkStateMaps(t, s, 0, 1)
}
