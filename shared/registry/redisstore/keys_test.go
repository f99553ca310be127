package redisstore

import (
	"errors"
	"reflect"
	"strconv"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// TestValueRoundTrip: what appendValue drops as redundant comes back, what
// it cannot drop is kept, and a value of another ID is recognised.
func TestValueRoundTrip(t *testing.T) {
	x := id(77)
	base := pending(x).Records[0]
	tests := []struct {
		name    string
		rec     registry.Record
		maxSize int
	}{
		{"pending, everything implied", base, 34},
		{"issued time differs from the ID", func() registry.Record {
			r := base
			r.IssuedAtMS = testMS + 3
			r.History = []registry.Step{{State: registry.Pending, AtMS: testMS + 3, Actor: r.Subject}}
			return r
		}(), 40},
		{"first step not implied", func() registry.Record {
			r := base
			r.History = []registry.Step{{State: registry.Pending, AtMS: testMS, Actor: "someone-else"}}
			return r
		}(), 64},
		{"committed with metadata and deadline", func() registry.Record {
			r := base
			r.State, r.DeadlineMS, r.Metadata = registry.Committed, testMS+5000, []byte{1, 2, 3}
			r.IdemKeyHash = make([]byte, 32)
			r.History = append(r.History[:1:1], registry.Step{State: registry.Committed, AtMS: testMS + 9, Actor: "svc-payments"})
			return r
		}(), 128},
		{"tombstone", registry.Record{ID: x, State: registry.Compensated, Tombstone: true,
			History: []registry.Step{{State: registry.Compensated, AtMS: 5, Reason: "r", Actor: "a"}}}, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := appendValue(nil, &tt.rec, 0xdeadbeef)
			if len(v) > tt.maxSize {
				t.Errorf("%d bytes, want <= %d", len(v), tt.maxSize)
			}
			got, err := decodeValue(x, v)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.rec) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.rec)
			}
			other := idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS + 1, Worker: 7, Shard: 3, Counter: 77})
			if _, err := decodeValue(other, v); !errors.Is(err, errOtherID) {
				t.Fatalf("another ID: %v", err)
			}
			if _, err := decodeValue(x, v[:valueHeader-1]); !errors.Is(err, registry.ErrCorrupt) {
				t.Fatalf("short value: %v", err)
			}
		})
	}
}

// TestSlot: the hash tag decides the slot, as in Redis Cluster.
func TestSlot(t *testing.T) {
	for key, want := range map[string]int{
		"foo":                  12182, // CLUSTER KEYSLOT foo
		"123456789":            12739,
		"{user1000}.following": slot("user1000"),
		"a{}b":                 slot("a{}b"),
	} {
		if got := slot(key); got != want {
			t.Errorf("slot(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestSameBucketAndField holds the shortcuts Register takes between the
// records of a batch to the ID's fields: fieldOf names the counter's
// offset in its bucket, and sameBucket holds when Store.bucket names one
// key for both IDs.
func TestSameBucketAndField(t *testing.T) {
	s := &Store{cfg: Config{Prefix: DefaultPrefix}}
	ids := []idcodec.ID{}
	for _, shard := range []uint8{0, 1, 3, idcodec.MaxShard} {
		for _, c := range []uint64{0, 1, 127, 128, 129, 255, 256, 1 << 20, 1<<20 + 127, idcodec.MaxCounter - 128, idcodec.MaxCounter} {
			for _, ms := range []uint64{testMS, testMS + 1} {
				ids = append(ids, idcodec.MustCompose(idcodec.Fields{TimestampMS: ms, Worker: 7, Shard: shard, Counter: c}))
			}
		}
	}
	for _, a := range ids {
		ka, _ := s.bucket(a)
		if want := strconv.FormatUint(a.Decompose().Counter%(1<<bucketBits), 10); fieldOf(a) != want {
			t.Fatalf("%s: fieldOf %s, want %s", a, fieldOf(a), want)
		}
		for _, b := range ids {
			kb, _ := s.bucket(b)
			if sameBucket(a, b) != (ka == kb) {
				t.Fatalf("%s (%s) and %s (%s): sameBucket %v", a, ka, b, kb, sameBucket(a, b))
			}
		}
	}
}
