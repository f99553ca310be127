package redischeckpoints

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/platform/audit"
)

// TestCheckpointsKeptInRedis: a signed audit log ships every checkpoint
// (its last, written at Close, included) to a real Redis; the export the
// package doc names verifies against the file, and when the file's tail
// (its last checkpoint with it) is cut off, the kept checkpoints show the
// cut, which the file alone cannot.
func TestCheckpointsKeptInRedis(t *testing.T) {
	srv := redisharness.StartStandaloneT(t, redisharness.Options{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ship := New(rdb, zaptest.NewLogger(t))
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.OpenWith(path, "inst-1", audit.Settings{SigningKey: priv, CheckpointEvery: 10, Checkpoint: ship.Hook})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 35 {
		if err := l.Record(audit.Event{Actor: "alice", Action: audit.ActionCommit, Resource: fmt.Sprintf("id-%d", i), Outcome: "applied"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ship.Close()

	msgs, err := rdb.XRange(context.Background(), Stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var kept strings.Builder
	for _, m := range msgs {
		kept.WriteString(m.Values["checkpoint"].(string) + "\n")
	}
	if len(msgs) < 4 {
		t.Fatalf("%d checkpoints in Redis for 35 lines at one per 10 and one at Close, want at least 4", len(msgs))
	}
	keptFile := filepath.Join(t.TempDir(), "kept.jsonl")
	if err := os.WriteFile(keptFile, []byte(kept.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(audit.VerifyOptions{PublicKey: pub}, []string{keptFile}, path)
	if err != nil || rep.Broken != nil || rep.External != len(msgs) {
		t.Fatalf("intact file with %d kept checkpoints: %v, broken %v, matched %d", len(msgs), err, rep.Broken, rep.External)
	}

	// Cut the file after its 20th line: the file alone still verifies,
	// the kept checkpoints do not.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if err := os.WriteFile(path, []byte(strings.Join(lines[:20], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.Verify(audit.VerifyOptions{PublicKey: pub}, nil, path); err != nil || rep.Broken != nil {
		t.Fatalf("the cut file alone: %v %v, want no break (a tail cut is invisible in the file)", err, rep.Broken)
	}
	rep, err = audit.Verify(audit.VerifyOptions{PublicKey: pub}, []string{keptFile}, path)
	if err != nil || rep.Broken == nil {
		t.Fatalf("the cut file with the kept checkpoints: %v, no break reported", err)
	}
	t.Logf("reported: %v", rep.Broken)
}

// TestHookNeverBlocks: with Redis unreachable, the hook returns at once
// for more checkpoints than the queue holds, and Close returns.
func TestHookNeverBlocks(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	ship := New(rdb, zaptest.NewLogger(t))
	ship.closeWait = 200 * time.Millisecond
	for i := range 2 * queue {
		ship.Hook(audit.Checkpoint{Writer: "w", Seq: uint64(i)})
	}
	ship.Close()
}
