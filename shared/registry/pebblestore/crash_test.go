package pebblestore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/generator"
)

// crashDirEnv, when set, turns TestSIGKILLDurability into the child that
// registers in a loop in that directory until it is killed.
const crashDirEnv = "PEBBLESTORE_CRASH_CHILD_DIR"

// TestSIGKILLDurability: a child process claims ranges and registers their
// IDs from 8 goroutines, printing each range and ID once the store has
// acknowledged it; the parent SIGKILLs it mid-stream, reopens the directory
// and finds every acknowledged ID, and a counter above every acknowledged
// range.
func TestSIGKILLDurability(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		ranges []generator.Range
		acked  []uint64
		killed bool
	)
	timeout := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timeout.Stop()
	// Every line read, even after the kill, was written before it: all of
	// them are acknowledged work.
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "R":
			start, _ := strconv.ParseUint(f[1], 10, 64)
			end, _ := strconv.ParseUint(f[2], 10, 64)
			ranges = append(ranges, generator.Range{Start: start, End: end})
		case len(f) == 2 && f[0] == "A":
			c, _ := strconv.ParseUint(f[1], 10, 64)
			acked = append(acked, c)
		}
		if !killed && len(acked) >= 3000 {
			killed = true
			// The child holds the directory: the fcntl lock, not only the
			// in-process one, keeps a second opener out.
			if s, err := Open(Config{Dir: dir, OpenTimeout: time.Millisecond}); err == nil {
				s.Close()
				t.Error("opened the directory while the child held it")
			} else {
				t.Logf("second process: %v", err)
			}
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before the kill after %d acks: %v", len(acked), err)
	}
	t.Logf("child %v after %d ranges, %d acknowledged registrations", err, len(ranges), len(acked))

	s := open(t, dir)
	ctx := context.Background()
	for _, c := range acked {
		if _, err := s.Get(ctx, id(c)); err != nil {
			t.Fatalf("acknowledged id of counter %d lost: %v", c, err)
		}
	}
	next, err := s.Counter()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		if next < r.End {
			t.Fatalf("counter %d below acknowledged range %+v", next, r)
		}
	}
	if r, err := s.ClaimRange(ctx, 10); err != nil || r.Start != next {
		t.Fatalf("claim after restart: %+v, %v (counter %d)", r, err, next)
	}
}

func crashChild(t *testing.T, dir string) {
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format, args...) // one write per line, unbuffered
	}
	for g := 0; g < 8; g++ {
		go func() {
			for {
				r, err := s.ClaimRange(ctx, 64)
				if err != nil {
					t.Error(err)
					return
				}
				say("R %d %d\n", r.Start, r.End)
				for c := r.Start; c < r.End; c++ {
					if _, err := s.Register(ctx, pending(id(c)), 1000, 1); err != nil {
						t.Error(err)
						return
					}
					say("A %d\n", c)
				}
			}
		}()
	}
	time.Sleep(60 * time.Second) // the parent kills us long before
	os.Exit(3)
}
