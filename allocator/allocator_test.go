package allocator

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Servers: []string{"127.0.0.1:2181"}}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no servers", func(c *Config) { c.Servers = nil }, "no ZooKeeper servers"},
		{"empty server", func(c *Config) { c.Servers = []string{" "} }, "empty server"},
		{"relative root", func(c *Config) { c.Root = "idgen" }, "root"},
		{"slash root", func(c *Config) { c.Root = "/" }, "root"},
		{"trailing slash", func(c *Config) { c.Root = "/idgen/" }, "root"},
		{"nested root", func(c *Config) { c.Root = "/prod/idgen" }, ""},
		{"shard 63", func(c *Config) { c.Shard = 63 }, ""},
		{"shard 64", func(c *Config) { c.Shard = 64 }, "shard 64"},
		{"short timeout", func(c *Config) { c.SessionTimeout = time.Millisecond }, "session timeout"},
		{"too many slots", func(c *Config) { c.MaxSlots = 4097 }, "max slots"},
		{"negative slots", func(c *Config) { c.MaxSlots = -1 }, "max slots"},
		{"empty digest user", func(c *Config) { c.Auth = &DigestAuth{Password: "x"} }, "digest user"},
		{"colon in user", func(c *Config) { c.Auth = &DigestAuth{User: "a:b"} }, "digest user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate: %v, want error containing %q", err, tc.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "allocator: "):
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// newLeaseOnly builds an Allocator with just what Worker and the lease use.
func newLeaseOnly(base time.Time, lease time.Duration) *Allocator {
	a := &Allocator{base: base, lease: lease, log: zap.NewNop(), versionAlarmAt: VersionAlarmThreshold}
	a.slot.Store(-1)
	return a
}

func TestWorkerLease(t *testing.T) {
	base := time.Now()
	a := newLeaseOnly(base, 2*time.Second)
	if _, err := a.Worker(base); !errors.Is(err, ErrFenced) {
		t.Fatalf("Worker without a slot: %v, want ErrFenced", err)
	}
	a.touch(base.Add(time.Second)) // proof of life at +1s: lease until +3s
	a.slot.Store(42)
	for _, tc := range []struct {
		at   time.Duration
		want error
	}{
		{0, nil}, {2999 * time.Millisecond, nil}, {3 * time.Second, nil},
		{3*time.Second + 1, ErrFenced}, {time.Hour, ErrFenced},
	} {
		w, err := a.Worker(base.Add(tc.at))
		if !errors.Is(err, tc.want) || (err == nil && w != 42) {
			t.Errorf("Worker(+%v) = %d, %v; want 42, %v", tc.at, w, err, tc.want)
		}
	}
	a.touch(base) // an older proof never shortens the lease
	if _, err := a.Worker(base.Add(3 * time.Second)); err != nil {
		t.Errorf("lease shortened by an older proof: %v", err)
	}
	// A clock that steps back (wall clock) keeps the slot usable; the lease
	// compares monotonic readings when both times carry them.
	if _, err := a.Worker(base.Add(-time.Hour)); err != nil {
		t.Errorf("Worker before base: %v", err)
	}
	a.slot.Store(-1)
	if _, err := a.Worker(base); !errors.Is(err, ErrFenced) {
		t.Errorf("Worker after the slot was lost: %v, want ErrFenced", err)
	}
	a.slot.Store(42)
	a.closed.Store(true)
	if _, err := a.Worker(base); !errors.Is(err, ErrClosed) {
		t.Errorf("Worker after Close: %v, want ErrClosed", err)
	}
}

func TestWorkerDoesNotAllocate(t *testing.T) {
	a := newLeaseOnly(time.Now(), time.Hour)
	a.touch(time.Now())
	a.slot.Store(7)
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { _, _ = a.Worker(now) }); n != 0 {
		t.Errorf("Worker allocates %v times per call", n)
	}
	a.slot.Store(-1)
	if n := testing.AllocsPerRun(1000, func() { _, _ = a.Worker(now) }); n != 0 {
		t.Errorf("fenced Worker allocates %v times per call", n)
	}
}

func TestVersionAlarm(t *testing.T) {
	a := newLeaseOnly(time.Now(), time.Second)
	for _, tc := range []struct {
		v    int32
		want bool
	}{
		{0, false}, {1000, false}, {VersionAlarmThreshold - 1, false},
		{VersionAlarmThreshold, true}, {1<<31 - 1, true}, {-1 << 31, true}, {-2, true}, {5, false},
	} {
		a.observeVersion("/c", tc.v)
		if s := a.Stats(); s.VersionAlarm != tc.want || s.CounterVersion != tc.v {
			t.Errorf("version %d: alarm %v, want %v", tc.v, s.VersionAlarm, tc.want)
		}
	}
}

func TestCounterData(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    counterData
		wantErr bool
	}{
		{`{"next":0,"token":""}`, counterData{}, false},
		{`{"next":72057594037927935,"token":"u:1"}`, counterData{Next: 1<<56 - 1, Token: "u:1"}, false},
		{`{"next":5,"token":"m","moved_to":"counter.2"}`, counterData{Next: 5, Token: "m", MovedTo: "counter.2"}, false},
		{``, counterData{}, true},
		{`{"next":-1}`, counterData{}, true},
		{`{"next":1,"moved_to":"../x"}`, counterData{}, true},
		{`{"next":1,"moved_to":"counter.0"}`, counterData{}, true},
		{`{"next":1,"moved_to":"counter.01"}`, counterData{}, true},
		{`not json`, counterData{}, true},
	} {
		got, err := decodeCounter([]byte(tc.in))
		if (err != nil) != tc.wantErr || (err == nil && got != tc.want) {
			t.Errorf("decodeCounter(%q) = %+v, %v", tc.in, got, err)
		}
	}
	for in, want := range map[string]string{"counter": "counter.1", "counter.1": "counter.2", "counter.41": "counter.42"} {
		if got := nextCounterName(in); got != want || !validCounterName(got) {
			t.Errorf("nextCounterName(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzDecodeCounter(f *testing.F) {
	f.Add([]byte(`{"next":1,"token":"a:1"}`))
	f.Add([]byte(`{"next":1,"moved_to":"counter.3"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeCounter(b)
		if err != nil {
			return
		}
		if d.MovedTo != "" && (strings.Contains(d.MovedTo, "/") || !validCounterName(d.MovedTo)) {
			t.Errorf("accepted moved_to %q", d.MovedTo)
		}
		enc, err := encodeCounter(d)
		if err != nil {
			t.Fatal(err)
		}
		if d2, err := decodeCounter(enc); err != nil || d2 != d {
			t.Errorf("round trip %+v → %s → %+v, %v", d, enc, d2, err)
		}
	})
}
