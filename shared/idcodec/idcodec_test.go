package idcodec

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestComposeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		f    Fields
	}{
		{"zero", Fields{}},
		{"max", Fields{TimestampMS: MaxTimestamp, Worker: MaxWorker, Shard: MaxShard, Counter: MaxCounter}},
		{"typical", Fields{TimestampMS: 1_764_000_000_000, Worker: 17, Shard: 3, Counter: 123_456_789}},
		{"bit boundaries", Fields{TimestampMS: 1 << 47, Worker: 1 << 11, Shard: 1 << 5, Counter: 1 << 55}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := Compose(tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := id.Decompose(); got != tt.f {
				t.Fatalf("Decompose = %+v, want %+v", got, tt.f)
			}
			if !id.Valid() {
				t.Fatalf("%s: not version 8 / variant 10", id)
			}
			back, err := Parse(id.String())
			if err != nil || back != id {
				t.Fatalf("Parse(String()) = %v, %v", back, err)
			}
			up, err := Parse(strings.ToUpper(id.String()))
			if err != nil || up != id {
				t.Fatalf("Parse(upper) = %v, %v", up, err)
			}
		})
	}
}

func TestComposeRange(t *testing.T) {
	for _, f := range []Fields{
		{TimestampMS: MaxTimestamp + 1},
		{Worker: MaxWorker + 1},
		{Shard: MaxShard + 1},
		{Counter: MaxCounter + 1},
	} {
		if _, err := Compose(f); !errors.Is(err, ErrRange) {
			t.Errorf("Compose(%+v) err = %v, want ErrRange", f, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	v4 := uuid.New().String()
	tests := []struct {
		in   string
		want error
	}{
		{"", ErrSyntax},
		{"not-a-uuid", ErrSyntax},
		{"01a217a2-47aa-8000-8000-00000000000", ErrSyntax},   // 35 chars
		{"01a217a2-47aa-8000-8000-0000000000000", ErrSyntax}, // 37 chars
		{"01a217a2x47aa-8000-8000-000000000000", ErrSyntax},
		{"01a217a2-47aa-8000-8000-00000000000g", ErrSyntax},
		{"{1a217a2-47aa-8000-8000-000000000000", ErrSyntax},
		{v4, ErrNotOurs},
		{"01a217a2-47aa-8000-c000-000000000000", ErrNotOurs}, // variant 11
		{"01a217a2-47aa-7000-8000-000000000000", ErrNotOurs}, // version 7
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if _, err := Parse(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%q) err = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

// TestInteropGoogleUUID checks that a standard UUID library reads our IDs as
// RFC 9562 version 8 and gives the same text.
func TestInteropGoogleUUID(t *testing.T) {
	id := MustCompose(Fields{TimestampMS: 1_764_000_000_123, Worker: 4095, Shard: 63, Counter: 42})
	u, err := uuid.Parse(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if u.Version() != 8 {
		t.Errorf("version = %d, want 8", u.Version())
	}
	if u.Variant() != uuid.RFC4122 {
		t.Errorf("variant = %v, want RFC4122 (RFC 9562)", u.Variant())
	}
	if u.String() != id.String() || !bytes.Equal(u[:], id[:]) {
		t.Errorf("uuid text %s / bytes differ from %s", u, id)
	}
}

// TestTextMatchesGoogleUUID holds the text form of random IDs to
// google/uuid's: every byte value in every position.
func TestTextMatchesGoogleUUID(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for n := range 4096 {
		var id ID
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		id[n%16] = byte(n / 16) // each position takes all 256 values
		if got, want := string(id.AppendText([]byte("x"))[1:]), uuid.UUID(id).String(); got != want {
			t.Fatalf("text %s, google/uuid %s", got, want)
		}
	}
}

// TestOrder checks that byte order is (timestamp, worker, shard, counter)
// order, so that sorting IDs sorts by issue time.
func TestOrder(t *testing.T) {
	fs := []Fields{
		{TimestampMS: 2, Worker: 0, Shard: 0, Counter: 0},
		{TimestampMS: 1, Worker: 5, Shard: 9, Counter: MaxCounter},
		{TimestampMS: 1, Worker: 5, Shard: 9, Counter: 7},
		{TimestampMS: 1, Worker: 6, Shard: 0, Counter: 0},
		{TimestampMS: 1, Worker: 5, Shard: 10, Counter: 0},
	}
	ids := make([]ID, len(fs))
	for i, f := range fs {
		ids[i] = MustCompose(f)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.TimestampMS != b.TimestampMS {
			return a.TimestampMS < b.TimestampMS
		}
		if a.Worker != b.Worker {
			return a.Worker < b.Worker
		}
		if a.Shard != b.Shard {
			return a.Shard < b.Shard
		}
		return a.Counter < b.Counter
	})
	for i := range ids {
		if ids[i].Decompose() != fs[i] {
			t.Fatalf("position %d: %+v, want %+v", i, ids[i].Decompose(), fs[i])
		}
		// Text order is byte order too (lowercase hex).
		if i > 0 && ids[i-1].String() >= ids[i].String() {
			t.Fatalf("text order broken at %d", i)
		}
	}
}

func TestTextMarshal(t *testing.T) {
	id := MustCompose(Fields{TimestampMS: 99, Counter: 1})
	b, _ := id.MarshalText()
	var back ID
	if err := back.UnmarshalText(b); err != nil || back != id {
		t.Fatalf("UnmarshalText = %v, %v", back, err)
	}
	if err := back.UnmarshalText([]byte("nope")); !errors.Is(err, ErrSyntax) {
		t.Fatalf("err = %v", err)
	}
	if got := string(id.AppendText([]byte("x:"))); got != "x:"+id.String() {
		t.Fatalf("AppendText = %q", got)
	}
	if id.Time().UnixMilli() != 99 {
		t.Fatalf("Time = %v", id.Time())
	}
}

func TestClockNeverGoesBack(t *testing.T) {
	base := time.UnixMilli(1_764_000_000_000)
	now := base
	c := &Clock{Now: func() time.Time { return now }}
	if got := c.Millis(); got != uint64(base.UnixMilli()) {
		t.Fatalf("first = %d", got)
	}
	now = base.Add(-time.Hour) // NTP steps the wall clock back an hour
	if got := c.Millis(); got != uint64(base.UnixMilli()) {
		t.Fatalf("after step back = %d, want %d (held)", got, base.UnixMilli())
	}
	now = base.Add(5 * time.Millisecond)
	if got := c.Millis(); got != uint64(base.UnixMilli()+5) {
		t.Fatalf("after recovery = %d", got)
	}
	if c.Last() != uint64(base.UnixMilli()+5) {
		t.Fatalf("Last = %d", c.Last())
	}
}

func TestClockConcurrentMonotonic(t *testing.T) {
	var mu sync.Mutex
	tick := int64(1000)
	c := &Clock{Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		tick += 7
		if tick%3 == 0 {
			tick -= 50 // jitter backwards
		}
		return time.UnixMilli(tick)
	}}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for i := 0; i < 2000; i++ {
				ms := c.Millis()
				if ms < last {
					t.Errorf("went back: %d after %d", ms, last)
					return
				}
				last = ms
			}
		}()
	}
	wg.Wait()
}

// BenchmarkAppendText formats an ID as text, the loop of a batch's answer;
// google/uuid's String of the same 16 bytes is the baseline.
func BenchmarkAppendText(b *testing.B) {
	id := MustCompose(Fields{TimestampMS: 1_764_000_000_000, Worker: 513, Shard: 3, Counter: 123_456_789})
	buf := make([]byte, 0, TextLen)
	b.Run("idcodec", func(b *testing.B) {
		for b.Loop() {
			buf = id.AppendText(buf[:0])
		}
	})
	b.Run("google-uuid", func(b *testing.B) {
		u := uuid.UUID(id)
		for b.Loop() {
			buf = append(buf[:0], u.String()...)
		}
	})
}
