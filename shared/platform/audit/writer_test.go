package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/optionstest"
	"github.com/idgen/idgen/harness/proc"
)

// fakeDisk is a sink of limited capacity whose sync and truncate a test
// makes fail. It counts writes that land after a torn line: the log must
// cut a torn tail before it writes anything else.
type fakeDisk struct {
	mu          sync.Mutex
	data        []byte
	capacity    int   // a write past it is short, then ENOSPC
	syncErr     error // returned by Sync while set
	truncErr    error // returned by Truncate while set
	afterTorn   int   // writes that began after a torn line
	truncations int
}

var _ sink = (*fakeDisk)(nil)

func (d *fakeDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.data) > 0 && d.data[len(d.data)-1] != '\n' {
		d.afterTorn++
	}
	n := min(len(p), max(0, d.capacity-len(d.data)))
	d.data = append(d.data, p[:n]...)
	if n < len(p) {
		return n, syscall.ENOSPC
	}
	return n, nil
}

func (d *fakeDisk) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncErr
}

func (d *fakeDisk) Truncate(size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.truncErr != nil {
		return d.truncErr
	}
	if size > int64(len(d.data)) {
		return fmt.Errorf("truncate to %d past the end %d", size, len(d.data))
	}
	d.data = d.data[:size]
	d.truncations++
	return nil
}

func (d *fakeDisk) Close() error { return nil }

// set changes the disk under its lock.
func (d *fakeDisk) set(f func(d *fakeDisk)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// lines parses the disk's content (every line whole) and counts the lines
// per resource; it also fails the test if a write began after a torn line.
func (d *fakeDisk) lines(t *testing.T) map[string]int {
	t.Helper()
	d.mu.Lock()
	b, afterTorn := append([]byte(nil), d.data...), d.afterTorn
	d.mu.Unlock()
	if afterTorn > 0 {
		t.Fatalf("%d writes began after a torn line", afterTorn)
	}
	return perResource(parseLines(t, b))
}

// fakeLog starts a Log on a fake disk of capacity bytes, closed when the
// test ends.
func fakeLog(t *testing.T, capacity int, s Settings) (*Log, *fakeDisk) {
	t.Helper()
	d := &fakeDisk{capacity: capacity}
	l := newLog(d, 0, true, "fake", "inst", s)
	t.Cleanup(func() {
		// Close writes audit.stop, waiting out Wait on a failing disk.
		d.set(func(d *fakeDisk) { spacious(d); d.syncErr, d.truncErr = nil, nil })
		l.Close()
	})
	return l, d
}

// entry is a commit entry for resource with a fixed time, so that entries
// of resources of one length have one length.
func entry(resource string) Event {
	return Event{Time: time.Unix(1e9, 0), Actor: "alice", Action: ActionCommit, Resource: resource, Outcome: "applied"}
}

// recordAsync runs Record in a goroutine; its error arrives on the channel.
func recordAsync(l *Log, e Event) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- l.Record(e) }()
	return ch
}

// waitErr is the error of an asynchronous Record, which must arrive within d.
func waitErr(t *testing.T, ch <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("Record still waits after %v", d)
		return nil
	}
}

func waiting(l *Log) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting
}

// full leaves room for less than one line.
func full(d *fakeDisk) { d.capacity = len(d.data) + 30 }

// spacious gives the disk room again.
func spacious(d *fakeDisk) { d.capacity = 1 << 20 }

// TestShortWriteGivesBack: an entry that does not fit is cut off, not left
// torn; after Wait its Record fails and the entry is absent for good; the
// log turns healthy by itself once space returns, and the caller's retry
// writes the entry once.
func TestShortWriteGivesBack(t *testing.T) {
	l, d := fakeLog(t, 1<<20, Settings{RetryInterval: 10 * time.Millisecond, Wait: 30 * time.Millisecond})
	if err := l.Record(entry("id-1")); err != nil {
		t.Fatal(err)
	}
	d.set(full)
	start := time.Now()
	err := l.Record(entry("id-2"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Record on a full disk: %v, want ENOSPC", err)
	}
	if waited := time.Since(start); waited < 30*time.Millisecond {
		t.Fatalf("Record gave up after %v, before Wait", waited)
	}
	if l.Healthy() == nil {
		t.Fatal("Healthy() = nil on a full disk")
	}
	d.set(spacious)
	proc.Eventually(t, 2*time.Second, "Healthy() = nil once space returned, with no new entry", func() bool { return l.Healthy() == nil })
	if per := d.lines(t); per["id-1"] != 1 || per["id-2"] != 0 || per[ActionAuditResume] != 1 {
		t.Fatalf("lines %v: want id-1 once, the refused id-2 absent, one audit.resume", per)
	}
	if err := l.Record(entry("id-2")); err != nil {
		t.Fatal(err)
	}
	if per := d.lines(t); per["id-2"] != 1 {
		t.Fatalf("lines %v: want the retried id-2 once", per)
	}
}

// TestBacklogRides: entries that fail wait in the backlog and are written
// by the retries: a short write keeps the whole lines it holds and cuts
// the rest; once space returns the remaining entries are written and every
// Record returns nil, each entry once.
func TestBacklogRides(t *testing.T) {
	l, d := fakeLog(t, 1<<20, Settings{RetryInterval: 10 * time.Millisecond, Wait: time.Minute})
	d.set(func(d *fakeDisk) { d.capacity = len(d.data) })
	var chs []<-chan error
	for _, r := range []string{"id-1", "id-2", "id-3"} {
		chs = append(chs, recordAsync(l, entry(r)))
	}
	proc.Eventually(t, 2*time.Second, "three entries waiting on a failed disk", func() bool { return waiting(l) == 3 && l.Healthy() != nil })
	lineLen := len(mustLine(t, entry("id-1")))
	d.set(func(d *fakeDisk) { d.capacity = len(d.data) + lineLen + lineLen/2 })
	proc.Eventually(t, 2*time.Second, "one entry written by a short write", func() bool { return waiting(l) == 2 })
	if per := d.lines(t); per["id-1"]+per["id-2"]+per["id-3"] != 1 {
		t.Fatalf("lines %v: want the one whole line of the short write", per)
	}
	d.set(spacious)
	for _, ch := range chs {
		if err := waitErr(t, ch, 2*time.Second); err != nil {
			t.Fatalf("Record of a retried entry: %v", err)
		}
	}
	proc.Eventually(t, 2*time.Second, "Healthy() = nil", func() bool { return l.Healthy() == nil })
	if per := d.lines(t); per["id-1"] != 1 || per["id-2"] != 1 || per["id-3"] != 1 || per[ActionAuditResume] != 1 {
		t.Fatalf("lines %v: want each entry once and one audit.resume", per)
	}
}

// mustLine is e's line as the log writes it after its first line: with
// the chain fields, prev included.
func mustLine(t *testing.T, e Event) []byte {
	t.Helper()
	e.Instance = "inst"
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	c := chain{writer: newWriterID(), seq: 1}
	return c.appendLine(nil, openBody(b))
}

// TestSyncFailureCut: a write whose fsync fails is cut back (its pages may
// be lost, so nothing of it counts), and the retry writes the entry once.
func TestSyncFailureCut(t *testing.T) {
	// A retry interval longer than the test: only a new entry retries.
	l, d := fakeLog(t, 1<<20, Settings{RetryInterval: time.Hour, Wait: time.Minute})
	d.set(func(d *fakeDisk) { d.syncErr = syscall.EIO })
	first := recordAsync(l, entry("id-1"))
	proc.Eventually(t, 2*time.Second, "Healthy() reports the failed fsync", func() bool { return errors.Is(l.Healthy(), syscall.EIO) })
	if per := d.lines(t); per["id-1"] != 0 {
		t.Fatalf("lines %v: the entry of the failed fsync is still in the file", per)
	}
	d.set(func(d *fakeDisk) { d.syncErr = nil })
	if err := l.Record(entry("id-2")); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, first, 2*time.Second); err != nil {
		t.Fatalf("Record of the retried entry: %v", err)
	}
	if per := d.lines(t); per["id-1"] != 1 || per["id-2"] != 1 || per[ActionAuditResume] != 1 {
		t.Fatalf("lines %v: want each entry once and one audit.resume", per)
	}
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v after a successful write", err)
	}
}

// TestTruncateFailure: when the torn tail of a short write cannot be cut,
// nothing is written until it can; then the file holds whole lines only.
func TestTruncateFailure(t *testing.T) {
	l, d := fakeLog(t, 1<<20, Settings{RetryInterval: 10 * time.Millisecond, Wait: 20 * time.Millisecond})
	d.set(func(d *fakeDisk) { full(d); d.truncErr = syscall.EIO })
	// Given back after Wait, with the error of the last retry: the cut
	// that still fails.
	if err := l.Record(entry("id-1")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Record: %v, want the truncation's EIO", err)
	}
	if err := l.Record(entry("id-2")); err == nil {
		t.Fatal("Record succeeded while the file has a torn tail")
	}
	d.set(func(d *fakeDisk) { spacious(d); d.truncErr = nil })
	proc.Eventually(t, 2*time.Second, "Healthy() = nil once the tail is cut and space returned", func() bool { return l.Healthy() == nil })
	if per := d.lines(t); per["id-1"] != 0 || per["id-2"] != 0 || per[ActionAuditResume] != 1 {
		t.Fatalf("lines %v: want the refused entries absent and one audit.resume", per)
	}
}

// TestBacklogFull: beyond MaxBacklog entries, Record fails at once (the
// entry is not taken, not dropped later); Close gives back those waiting.
func TestBacklogFull(t *testing.T) {
	l, d := fakeLog(t, 1<<20, Settings{RetryInterval: 10 * time.Millisecond, Wait: time.Hour, MaxBacklog: 2})
	d.set(func(d *fakeDisk) { d.capacity = len(d.data) })
	a, b := recordAsync(l, entry("id-1")), recordAsync(l, entry("id-2"))
	proc.Eventually(t, 2*time.Second, "two entries waiting", func() bool { return waiting(l) == 2 })
	if err := l.Record(entry("id-3")); !errors.Is(err, ErrBacklogFull) {
		t.Fatalf("Record beyond MaxBacklog: %v, want ErrBacklogFull", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan error{a, b} {
		if err := waitErr(t, ch, 2*time.Second); !errors.Is(err, ErrClosed) {
			t.Fatalf("Record waiting at Close: %v, want ErrClosed", err)
		}
	}
	if per := d.lines(t); per["id-1"]+per["id-2"]+per["id-3"] != 0 {
		t.Fatalf("lines %v: no entry given back may be in the file", per)
	}
}

func TestSettingsValidate(t *testing.T) {
	optionstest.Run(t, []optionstest.Case[Settings]{
		{Name: "zero", Opts: Settings{}, OK: true},
		{Name: "set", Opts: Settings{RetryInterval: time.Second, Wait: 2 * time.Second, MaxBacklog: 10}, OK: true},
		{Name: "negative interval", Opts: Settings{RetryInterval: -1}},
		{Name: "negative wait", Opts: Settings{Wait: -1}},
		{Name: "negative backlog", Opts: Settings{MaxBacklog: -1}},
	})
	if d := (Settings{}).withDefaults(); d.RetryInterval != DefaultRetryInterval || d.Wait != DefaultWait || d.MaxBacklog != DefaultMaxBacklog {
		t.Fatalf("zero Settings mean %+v, want the defaults", d)
	}
}

// TestSignedChainThroughFailures: with checkpoints, entries written after
// failed writes and cuts still form one whole chain, and every checkpoint
// handed to the hook is one the file holds (a checkpoint whose write
// failed is not handed on).
func TestSignedChainThroughFailures(t *testing.T) {
	pub, key := testKey(t)
	var mu sync.Mutex
	var cps bytes.Buffer
	l, d := fakeLog(t, 1<<20, Settings{RetryInterval: 10 * time.Millisecond, Wait: time.Minute, SigningKey: key, CheckpointEvery: 2,
		Checkpoint: func(c Checkpoint) {
			mu.Lock()
			defer mu.Unlock()
			b, _ := json.Marshal(c)
			cps.Write(append(b, '\n'))
		}})
	var chs []<-chan error
	for i := 0; i < 9; i++ {
		if i == 3 {
			d.set(func(d *fakeDisk) { d.capacity = len(d.data) + 100 })
		}
		if i == 6 {
			d.set(func(d *fakeDisk) { d.syncErr = syscall.EIO })
		}
		chs = append(chs, recordAsync(l, entry(fmt.Sprintf("id-%d", i))))
		if i < 3 {
			if err := <-chs[i]; err != nil {
				t.Fatal(err)
			}
		}
	}
	proc.Eventually(t, 2*time.Second, "entries waiting on a failed disk", func() bool { return waiting(l) > 0 && l.Healthy() != nil })
	d.set(func(d *fakeDisk) { spacious(d); d.syncErr = nil })
	for _, ch := range chs[3:] {
		if err := waitErr(t, ch, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	proc.Eventually(t, 2*time.Second, "Healthy() = nil", func() bool { return l.Healthy() == nil })
	d.mu.Lock()
	data := append([]byte(nil), d.data...)
	d.mu.Unlock()
	mu.Lock()
	kept := append([]byte(nil), cps.Bytes()...)
	mu.Unlock()
	rep := verifyData(t, pub, kept, data)
	if rep.Broken != nil || rep.External == 0 || rep.Writers[0].Checkpoints != rep.External {
		t.Fatalf("%v; %d checkpoints in the file, %d handed on: want all in both", rep.Broken, rep.Writers[0].Checkpoints, rep.External)
	}
	if per := d.lines(t); per["id-0"]+per["id-4"]+per["id-8"] != 3 || per[ActionAuditResume] != 1 {
		t.Fatalf("lines %v: want each entry once", per)
	}
}
