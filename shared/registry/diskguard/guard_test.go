package diskguard

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/shared/platform/clocktest"
	"github.com/idgen/idgen/shared/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mib = 1 << 20

// fakeDisk is a filesystem of 1 GiB whose free space the test sets; the
// ballast file, when present, is subtracted from it.
type fakeDisk struct {
	mu      sync.Mutex
	free    int64 // without the ballast
	ballast string
}

func (d *fakeDisk) set(free int64) { d.mu.Lock(); d.free = free; d.mu.Unlock() }

func (d *fakeDisk) usage(string) (Usage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Usage{FreeBytes: d.free - ballastSize(d.ballast), TotalBytes: 1 << 30}, nil
}

// newGuard returns a guard on a fake 1 GiB disk: threshold 100 MiB, a
// 10 MiB ballast (a real file in a temporary directory), no polling (the
// test measures by hand).
func newGuard(t *testing.T, free int64) (*Guard, *fakeDisk, *clocktest.Clock) {
	t.Helper()
	dir := t.TempDir()
	disk := &fakeDisk{free: free, ballast: filepath.Join(dir, "ballast")}
	clock := clocktest.New(time.Unix(1_764_000_000, 0))
	g, err := New(Config{MinFreeBytes: 100 * mib, BallastBytes: 10 * mib, PollInterval: time.Hour, Usage: disk.usage, Now: clock.Now, Logger: zaptest.NewLogger(t)}, dir, disk.ballast)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, disk, clock
}

func (g *Guard) measure() {
	g.mu.Lock()
	g.measureLocked()
	g.mu.Unlock()
}

// TestRefuseReleaseResume walks the states: admitting with a ballast;
// below the threshold refusing without it; back only at threshold +
// ballast + margin, with the ballast laid again.
func TestRefuseReleaseResume(t *testing.T) {
	g, disk, _ := newGuard(t, 500*mib)
	if err := g.Check(); err != nil {
		t.Fatal(err)
	}
	if st := g.State(); st.BallastBytes != 10*mib || st.ThresholdBytes != 100*mib || st.FreeBytes != 490*mib {
		t.Fatalf("state after New: %+v", st)
	}
	steps := []struct {
		free     int64 // without the ballast
		refusing bool
		ballast  bool
	}{
		{120 * mib, false, true}, // 110 free with the ballast: above 100
		{105 * mib, true, false}, // 95 free with it: refuse, release
		{115 * mib, true, false}, // above threshold + ballast, not the margin
		{117 * mib, false, true}, // ≥ 100 + 10 + 6.25 (threshold/16): resumed, ballast laid again
		{200 * mib, false, true},
		{50 * mib, true, false},   // refuse again
		{1000 * mib, false, true}, // space back
	}
	for i, s := range steps {
		disk.set(s.free)
		g.measure()
		st := g.State()
		err := g.Check()
		if st.Refusing != s.refusing || (err != nil) != s.refusing || (st.BallastBytes > 0) != s.ballast {
			t.Fatalf("step %d (free %d MiB): state %+v, check %v; want refusing %v ballast %v", i, s.free/mib, st, err, s.refusing, s.ballast)
		}
		if _, statErr := os.Stat(disk.ballast); (statErr == nil) != s.ballast {
			t.Fatalf("step %d: ballast file present = %v, want %v", i, statErr == nil, s.ballast)
		}
		if s.refusing && (!errors.Is(err, ErrLowSpace) || !errors.Is(err, registry.ErrUnavailable)) {
			t.Fatalf("step %d: %v, want ErrLowSpace and ErrUnavailable", i, err)
		}
	}
}

// TestCheapRecheck: writes that eat a quarter of the headroom trigger a
// measure without waiting for the poll.
func TestCheapRecheck(t *testing.T) {
	g, disk, _ := newGuard(t, 200*mib) // 190 free, headroom 90 MiB
	disk.set(100 * mib)                // 90 free: below, but not yet measured
	g.CommitStarted()
	g.CommitDone(1*mib, nil)
	if err := g.Check(); err != nil {
		t.Fatalf("a small write measured: %v", err)
	}
	g.CommitStarted()
	g.CommitDone(30*mib, nil)
	if err := g.Check(); !errors.Is(err, ErrLowSpace) {
		t.Fatalf("after writing a third of the headroom: %v, want ErrLowSpace", err)
	}
}

// TestDiskFull: an ENOSPC releases the ballast and refuses at once.
func TestDiskFull(t *testing.T) {
	g, disk, _ := newGuard(t, 500*mib)
	disk.set(10 * mib) // the ballast alone is what is left
	g.DiskFull()
	if err := g.Check(); !errors.Is(err, ErrLowSpace) {
		t.Fatalf("after DiskFull: %v", err)
	}
	if st := g.State(); st.BallastBytes != 0 || st.FreeBytes != 10*mib {
		t.Fatalf("state after DiskFull: %+v", st)
	}
}

// TestStall: a commit in flight past StallTimeout fails Check until it
// returns.
func TestStall(t *testing.T) {
	g, _, clock := newGuard(t, 500*mib)
	g.CommitStarted()
	clock.Add(DefaultStallTimeout)
	if err := g.Check(); err != nil {
		t.Fatalf("at the bound: %v", err)
	}
	clock.Add(time.Millisecond)
	err := g.Check()
	if !errors.Is(err, ErrStalled) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("past the bound: %v, want ErrStalled", err)
	}
	if st := g.State(); !st.Stalled || st.StalledFor <= DefaultStallTimeout {
		t.Fatalf("state %+v", st)
	}
	g.CommitDone(0, nil)
	if err := g.Check(); err != nil {
		t.Fatalf("after the commit returned: %v", err)
	}
}

// TestFailSticky: the first cause wins and never clears.
func TestFailSticky(t *testing.T) {
	g, disk, _ := newGuard(t, 500*mib)
	if !g.Fail(errors.New("wal sync: EIO")) || g.Fail(errors.New("second")) {
		t.Fatal("Fail did not report the first call only")
	}
	disk.set(900 * mib)
	g.measure()
	for _, err := range []error{g.Check(), g.CheckFailed(), g.State().Failed} {
		if !errors.Is(err, ErrFailed) || !errors.Is(err, registry.ErrUnavailable) || !strings.Contains(err.Error(), "wal sync: EIO") {
			t.Fatalf("%v, want ErrFailed naming the first cause", err)
		}
	}
}

// TestNewOnFullDisk: below the threshold New fails in one line naming the
// directory, the free and the needed bytes; a ballast counts as free, and
// New releases it when it is needed to start.
func TestNewOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	disk := &fakeDisk{free: 95 * mib, ballast: filepath.Join(dir, "ballast")}
	cfg := Config{MinFreeBytes: 100 * mib, BallastBytes: 10 * mib, PollInterval: time.Hour, Usage: disk.usage}
	_, err := New(cfg, dir, disk.ballast)
	if !errors.Is(err, ErrLowSpace) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), "95.00 MiB free") || !strings.Contains(err.Error(), "100.00 MiB") {
		t.Fatalf("New on a full disk: %v", err)
	}
	if err := allocate(disk.ballast, 10*mib); err != nil {
		t.Fatal(err)
	}
	// 95 MiB free beside a 10 MiB ballast: enough, once it is released.
	disk.set(105 * mib)
	g, err := New(cfg, dir, disk.ballast)
	if err != nil {
		t.Fatalf("New counting the ballast: %v", err)
	}
	defer g.Close()
	if _, err := os.Stat(disk.ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast kept although needed to start: %v", err)
	}
	if err := g.Check(); err != nil {
		t.Fatalf("check after starting with the ballast released: %v", err)
	}
}

// TestDefaults: the zero Config means 256 MiB or 2%, a ballast of 1% up to
// 64 MiB; negative values turn each part off.
func TestDefaults(t *testing.T) {
	for _, c := range []struct {
		cfg                Config
		total              int64
		threshold, ballast int64
	}{
		{Config{}, 1 << 30, 256 * mib, 1 << 30 / 100},
		{Config{}, 100 << 30, 2 * (100 << 30) / 100, 64 * mib},
		{Config{MinFreeBytes: -1, MinFreePercent: -1, BallastBytes: -1}, 100 << 30, 0, 0},
		{Config{MinFreeBytes: 4 * mib, MinFreePercent: -1, BallastBytes: 2 * mib}, 32 * mib, 4 * mib, 2 * mib},
	} {
		cfg := c.cfg
		cfg.setDefaults()
		if got := cfg.threshold(c.total); got != c.threshold {
			t.Errorf("%+v on %d: threshold %d, want %d", c.cfg, c.total, got, c.threshold)
		}
		if got := cfg.ballast(c.total); got != c.ballast {
			t.Errorf("%+v on %d: ballast %d, want %d", c.cfg, c.total, got, c.ballast)
		}
	}
	for _, bad := range []Config{{PollInterval: -1}, {StallTimeout: -1}, {MinFreePercent: 60}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
	if got := Bytes(3 * mib / 2).String(); got != "1.50 MiB" {
		t.Errorf("Bytes: %q", got)
	}
}
