package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// noSync is a file whose Sync does nothing: a log of a million lines is
// written in seconds, with the lines and chain of a real one.
type noSync struct{ *os.File }

func (noSync) Sync() error { return nil }

// writeEntries writes n commit entries like the service's to a new log at
// path, signed with key (a checkpoint every DefaultCheckpointEvery lines),
// from 64 goroutines, as concurrent requests do.
func writeEntries(tb testing.TB, path string, key ed25519.PrivateKey, n int) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	l := newLog(noSync{f}, 0, true, path, "10.0.3.17:8080/20240101T000000.000", Settings{SigningKey: key, MaxBacklog: 1 << 16})
	const workers = 64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				err := l.Record(Event{
					Actor: "svc-payments", Action: ActionCommit, Resource: fmt.Sprintf("73185920273956%05d", i%100000), Outcome: "applied",
					Source: "10.0.3.17:52344", RequestID: fmt.Sprintf("req-%016x", i),
				})
				if err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
}

// TestVerifyMany verifies a log of 20,000 entries written concurrently:
// the benchmark's file at a test's size.
func TestVerifyMany(t *testing.T) {
	pub, key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	writeEntries(t, path, key, 20000)
	rep := verify(t, pub, nil, path)
	if rep.Broken != nil || rep.Writers[0].Lines != 20000+2+20 || rep.Writers[0].Unsigned() != 0 {
		t.Fatalf("%v %+v: want 20,002 lines and 20 checkpoints, all signed", rep.Broken, rep.Writers[0])
	}
}

// BenchmarkVerify1M verifies a signed log of a million entries (about
// 300 MB, a checkpoint every 1000 lines), beside a baseline that reads
// and parses the same lines without checking them. Run it with
//
//	go test -run '^$' -bench Verify1M -benchtime 3x ./shared/platform/audit/
func BenchmarkVerify1M(b *testing.B) {
	pub, key := testKey(b)
	path := filepath.Join(b.TempDir(), "audit.log")
	writeEntries(b, path, key, 1_000_000)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(fi.Size())
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			n := 0
			for sc.Scan() {
				var l chainLine
				if err := json.Unmarshal(bytes.TrimSpace(sc.Bytes()), &l); err != nil {
					b.Fatal(err)
				}
				n++
			}
			f.Close()
			b.ReportMetric(float64(n), "lines")
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(fi.Size())
		for b.Loop() {
			rep, err := Verify(VerifyOptions{PublicKey: pub}, nil, path)
			if err != nil {
				b.Fatal(err)
			}
			if rep.Broken != nil || rep.Writers[0].Unsigned() != 0 {
				b.Fatalf("%v %+v", rep.Broken, rep.Writers[0])
			}
			b.ReportMetric(float64(rep.Writers[0].Lines), "lines")
		}
	})
}

// BenchmarkChainLine is what the chain adds to the writing of a line: its
// fields and the SHA-256 of the line, beside the plain line.
func BenchmarkChainLine(b *testing.B) {
	ev, err := json.Marshal(Event{Actor: "svc-payments", Action: ActionCommit, Resource: "7318592027395604481", Outcome: "applied",
		Source: "10.0.3.17:52344", RequestID: "req-000000000000beef", Instance: "10.0.3.17:8080/20240101T000000.000"})
	if err != nil {
		b.Fatal(err)
	}
	body := openBody(ev)
	buf := make([]byte, 0, 4096)
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = append(append(append(buf[:0], body...), '}'), '\n')
		}
	})
	b.Run("chained", func(b *testing.B) {
		b.ReportAllocs()
		c := chain{writer: newWriterID()}
		for b.Loop() {
			buf = c.appendLine(buf[:0], body)
		}
	})
}
