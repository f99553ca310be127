package main

// End-to-end tests of the data directory's guards: one process per
// directory whatever the engine, an identity that refuses another engine,
// shard or mode, and a restored backup that never hands out a counter again.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// engines returns the engine the e2e run uses and the other one.
func engines() (this, other string) {
	this = os.Getenv("IDGEN_E2E_STORE_ENGINE")
	if this == "" {
		this = "pebble"
	}
	if this == "pebble" {
		return this, "bbolt"
	}
	return this, "pebble"
}

// issue generates n IDs in batches of up to 1000.
func issue(t *testing.T, s *server, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for len(out) < n {
		count := min(1000, n-len(out))
		ids, code, err := s.api().generate(ctx, `{"count":`+strconv.Itoa(count)+`}`)
		if err != nil || code != 200 {
			t.Fatalf("generate: %d %v", code, err)
		}
		out = append(out, ids...)
	}
	return out
}

func TestDataDirIdentity(t *testing.T) {
	this, other := engines()
	s := startServer(t, serverOpts{})
	ids := issue(t, s, 50)
	serveArgs := func(extra ...string) []string {
		addr, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		return append([]string{"serve", "--dev", "--listen", addr, "--data-dir", s.dataDir}, extra...)
	}

	t.Run("another engine while the first runs", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, serveArgs("--store-engine", other)...)
		if code == 0 || !strings.Contains(stderr, "held by another process") {
			t.Errorf("second process on the same --data-dir: exit %d, stderr %q; want a refusal naming the lock", code, stderr)
		}
	})
	t.Run("the same engine while the first runs", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, serveArgs("--store-engine", this)...)
		if code == 0 || !strings.Contains(stderr, "held by another process") {
			t.Errorf("second process on the same --data-dir: exit %d, stderr %q; want a refusal naming the lock", code, stderr)
		}
	})
	if code, _ := s.stop(20 * time.Second); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"another engine", []string{"--store-engine", other}, []string{"store engine " + this, "store engine " + other}},
		{"another shard", []string{"--store-engine", this, "--shard", "3"}, []string{"shard 0", "shard 3"}},
	} {
		t.Run(tc.name+" after a stop", func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, serveArgs(tc.args...)...)
			for _, w := range tc.wants {
				if code == 0 || !strings.Contains(stderr, w) {
					t.Errorf("exit %d, stderr %q; want non-zero and one line naming %q", code, stderr, w)
				}
			}
		})
	}
	t.Run("the directory is intact afterwards", func(t *testing.T) {
		s.restart()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, id := range ids[:5] {
			if rec, code, err := s.api().get(ctx, id); err != nil || code != 200 || rec.State != "pending" {
				t.Errorf("GET %s after the refused starts: %d %+v %v", id, code, rec, err)
			}
		}
		checkUnique(t, ids, issue(t, s, 1000))
	})
}

// TestRestoredBackupNeverReissues: a copy of the data directory taken
// earlier and put back after more IDs were issued starts above every
// counter handed out, not at the copy's counter.
func TestRestoredBackupNeverReissues(t *testing.T) {
	s := startServer(t, serverOpts{})
	before := issue(t, s, 100)
	if code, _ := s.stop(20 * time.Second); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	if out, err := exec.Command("cp", "-a", s.dataDir, backup).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v %s", err, out)
	}
	s.restart()
	after := issue(t, s, 5000)
	if code, _ := s.stop(20 * time.Second); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	if err := os.RemoveAll(s.dataDir); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", backup, s.dataDir).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	s.restart()
	restored := issue(t, s, 5000)
	checkUnique(t, before, after, restored)
	_, hi := counterRange(t, after)
	if lo, _ := counterRange(t, restored); lo <= hi {
		t.Errorf("after the restore the counters start at %d, not above %d, the last handed out before it", lo, hi)
	}
}
