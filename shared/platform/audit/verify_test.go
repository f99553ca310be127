package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKey is a fresh signing key.
func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// signedLog writes n commit entries (resources id-0...) to a new log at
// path, signed with key, a checkpoint every 5 lines, and closes it. It
// returns the checkpoints the hook received.
func signedLog(t *testing.T, path string, key ed25519.PrivateKey, n int) []Checkpoint {
	t.Helper()
	var mu sync.Mutex
	var cps []Checkpoint
	l, err := OpenWith(path, "inst-1", Settings{SigningKey: key, CheckpointEvery: 5, Checkpoint: func(c Checkpoint) {
		mu.Lock()
		defer mu.Unlock()
		cps = append(cps, c)
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := l.Record(Event{Actor: "alice", Action: ActionCommit, Resource: fmt.Sprintf("id-%d", i), Outcome: "applied"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return cps
}

// fileLines is the lines of path, without their newlines.
func fileLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'})
}

// writeLines writes lines to a new file in dir and returns its path.
func writeLines(t testing.TB, dir, name string, lines [][]byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, append(bytes.Join(lines, []byte{'\n'}), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineOf is the 1-based number of the first line of lines holding s.
func lineOf(t *testing.T, lines [][]byte, s string) int {
	t.Helper()
	for i, l := range lines {
		if bytes.Contains(l, []byte(s)) {
			return i + 1
		}
	}
	t.Fatalf("no line holds %q", s)
	return 0
}

// lineFields is the top-level fields of a line, which must be one JSON object.
func lineFields(t testing.TB, line []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("not JSON: %s: %v", line, err)
	}
	return m
}

// field is the value of a top-level field of a line.
func field(t testing.TB, line []byte, name string) any {
	t.Helper()
	return lineFields(t, line)[name]
}

// checkpointAt is the checkpoint that line n (1-based) of lines states.
func checkpointAt(t testing.TB, lines [][]byte, n int) Checkpoint {
	t.Helper()
	var m struct {
		Checkpoint Checkpoint `json:"checkpoint"`
	}
	if err := json.Unmarshal(lines[n-1], &m); err != nil {
		t.Fatal(err)
	}
	return m.Checkpoint
}

// rechain recomputes the prev of every line from index i on (and the
// hash of each checkpoint there), as an attacker who knows the format
// does after changing line i: only the signatures still tell.
func rechain(t *testing.T, lines [][]byte, i int) {
	t.Helper()
	for ; i < len(lines); i++ {
		m := lineFields(t, lines[i])
		sum := sha256.Sum256(lines[i-1])
		prev := hex.EncodeToString(sum[:])
		old := fmt.Sprintf(`"prev":"%s"`, m["prev"])
		line := bytes.Replace(lines[i], []byte(old), []byte(`"prev":"`+prev+`"`), 1)
		if cp, ok := m["checkpoint"].(map[string]any); ok {
			line = bytes.Replace(line, []byte(fmt.Sprintf(`"hash":"%s"`, cp["hash"])), []byte(`"hash":"`+prev+`"`), 1)
		}
		lines[i] = line
	}
}

func verify(t *testing.T, pub ed25519.PublicKey, checkpoints []string, paths ...string) *Report {
	t.Helper()
	rep, err := Verify(VerifyOptions{PublicKey: pub}, checkpoints, paths...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// verifyData verifies the log data, in memory, against the checkpoints
// kept in a second place (kept).
func verifyData(t testing.TB, pub ed25519.PublicKey, kept, data []byte) *Report {
	t.Helper()
	v := NewVerifier(VerifyOptions{PublicKey: pub})
	if err := v.AddCheckpoints("kept", bytes.NewReader(kept)); err != nil {
		t.Fatal(err)
	}
	if err := v.Add("log", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return v.Finish()
}

// TestVerifyIntact: a log written with a key verifies; every line is
// covered by a checkpoint, the last one written at Close.
func TestVerifyIntact(t *testing.T) {
	pub, key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	cps := signedLog(t, path, key, 12)
	rep := verify(t, pub, nil, path)
	if rep.Broken != nil {
		t.Fatal(rep.Broken)
	}
	// audit.start, 12 entries, audit.stop: 14 lines, and 3 checkpoints:
	// after every 5 lines and at Close.
	if len(rep.Writers) != 1 {
		t.Fatalf("%d writers, want 1", len(rep.Writers))
	}
	w := rep.Writers[0]
	if w.Lines != 17 || w.Checkpoints != 3 || w.Unsigned() != 0 || w.Instance != "inst-1" || !rep.Signatures {
		t.Fatalf("report %+v: want 17 lines, 3 checkpoints, none unsigned", w)
	}
	if len(cps) != 3 || cps[2].Seq != 16 {
		t.Fatalf("hook got %+v: want 3 checkpoints, the last of lines 1-16", cps)
	}
	for _, c := range cps {
		if err := c.Verify(pub); err != nil {
			t.Fatalf("checkpoint %+v: %v", c, err)
		}
	}
}

// TestVerifyTampering makes each kind of tampering in a signed log and
// expects the verifier to report it at the line where it is.
func TestVerifyTampering(t *testing.T) {
	pub, key := testKey(t)
	dir := t.TempDir()
	orig := filepath.Join(dir, "audit.log")
	signedLog(t, orig, key, 20)
	_, otherKey := testKey(t)

	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, lines [][]byte) ([][]byte, int) // the lines and the line expected in the report
		reason string
	}{
		{"modified", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, `"id-7"`)
			lines[n-1] = bytes.Replace(lines[n-1], []byte(`"applied"`), []byte(`"denied"`), 1)
			return lines, n
		}, "line modified"},
		{"deleted", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, `"id-7"`)
			return append(lines[:n-1:n-1], lines[n:]...), n
		}, "lines deleted before this line: seq 10 of"},
		{"reordered", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, `"id-7"`)
			lines[n-1], lines[n] = lines[n], lines[n-1]
			return lines, n
		}, "lines reordered"},
		{"inserted without chain", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, `"id-7"`)
			fake := []byte(`{"time":"2024-01-01T00:00:00.000Z","actor":"mallory","action":"id.commit","resource":"id-x","outcome":"applied","instance":"inst-1"}`)
			return append(lines[:n-1:n-1], append([][]byte{fake}, lines[n-1:]...)...), n
		}, "no chain fields"},
		{"inserted with a forged link", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			// The forged line takes the seq of id-7 and links to the line
			// before it, as id-7 does.
			n := lineOf(t, lines, `"id-7"`)
			fake := bytes.Replace(lines[n-1], []byte(`"alice"`), []byte(`"mallory"`), 1)
			return append(lines[:n-1:n-1], append([][]byte{fake}, lines[n-1:]...)...), n
		}, "line inserted"},
		{"duplicated", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, `"id-7"`)
			return append(lines[:n:n], append([][]byte{lines[n-1]}, lines[n:]...)...), n + 1
		}, "a copy of"},
		{"modified and rechained", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, `"id-7"`)
			lines[n-1] = bytes.Replace(lines[n-1], []byte(`"applied"`), []byte(`"denied"`), 1)
			rechain(t, lines, n)
			return lines, n - 1 + lineOf(t, lines[n-1:], ActionAuditCheckpoint)
		}, "signature does not verify"},
		{"deleted before a checkpoint that remains", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			cp := lineOf(t, lines, `"seq":12,`) // the second checkpoint: lines 1-11
			if field(t, lines[cp-1], "action") != ActionAuditCheckpoint {
				t.Fatalf("line %d is no checkpoint: %s", cp, lines[cp-1])
			}
			return append(lines[:cp-3:cp-3], lines[cp-1:]...), cp - 2
		}, "lines deleted before this line: seq 10-11"},
		{"forged checkpoint signature", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, ActionAuditCheckpoint)
			cp := checkpointAt(t, lines, n)
			forged := cp
			forged.sign(otherKey, forged.KeyID) // claims the right key
			lines[n-1] = bytes.Replace(lines[n-1], []byte(cp.Sig), []byte(forged.Sig), 1)
			return lines, n
		}, "signature does not verify"},
		{"checkpoint of another key", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, ActionAuditCheckpoint)
			cp := checkpointAt(t, lines, n)
			forged := cp
			forged.sign(otherKey, KeyID(otherKey.Public().(ed25519.PublicKey)))
			line := bytes.Replace(lines[n-1], []byte(cp.Sig), []byte(forged.Sig), 1)
			lines[n-1] = bytes.Replace(line, []byte(cp.KeyID), []byte(forged.KeyID), 1)
			return lines, n
		}, "another key"},
		{"checkpoint moved", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			// A checkpoint's statement copied into a later checkpoint line.
			first := lineOf(t, lines, ActionAuditCheckpoint)
			second := first + lineOf(t, lines[first:], ActionAuditCheckpoint)
			var a, b struct {
				Checkpoint json.RawMessage `json:"checkpoint"`
			}
			if json.Unmarshal(lines[first-1], &a) != nil || json.Unmarshal(lines[second-1], &b) != nil {
				t.Fatal("checkpoint lines do not parse")
			}
			lines[second-1] = bytes.Replace(lines[second-1], b.Checkpoint, a.Checkpoint, 1)
			return lines, second
		}, "contradicts its chain"},
		{"not JSON", func(t *testing.T, lines [][]byte) ([][]byte, int) {
			n := lineOf(t, lines, `"id-3"`)
			lines[n-1] = lines[n-1][:40]
			return lines, n
		}, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, want := tc.tamper(t, fileLines(t, orig))
			path := writeLines(t, t.TempDir(), "tampered.log", lines)
			rep := verify(t, pub, nil, path)
			if rep.Broken == nil {
				t.Fatalf("tampering not found")
			}
			if rep.Broken.Line != want || !strings.Contains(rep.Broken.Reason, tc.reason) || !errors.Is(rep.Broken, ErrBroken) {
				t.Fatalf("reported %v; want line %d, %q", rep.Broken, want, tc.reason)
			}
			t.Log(rep.Broken)
		})
	}
}

// TestVerifyTruncated: lines cut off the end of a file, a checkpoint that
// covers them included, leave a chain the file alone cannot fault (its
// tail after the last checkpoint is unsigned); the checkpoints kept in a
// second place show the cut.
func TestVerifyTruncated(t *testing.T) {
	pub, key := testKey(t)
	dir := t.TempDir()
	orig := filepath.Join(dir, "audit.log")
	cps := signedLog(t, orig, key, 20)
	var kept bytes.Buffer
	for _, c := range cps {
		b, _ := json.Marshal(c)
		kept.Write(append(b, '\n'))
	}
	second := filepath.Join(dir, "checkpoints.jsonl")
	if err := os.WriteFile(second, kept.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	lines := fileLines(t, orig)
	last := lineOf(t, lines, `"seq":12,`) + 3 // 3 lines after the second checkpoint
	path := writeLines(t, dir, "truncated.log", lines[:last])

	rep := verify(t, pub, nil, path)
	if rep.Broken != nil {
		t.Fatalf("the file alone: %v", rep.Broken)
	}
	if w := rep.Writers[0]; w.Unsigned() != 3 {
		t.Fatalf("the file alone: %d unsigned lines, want 3", w.Unsigned())
	}
	rep = verify(t, pub, []string{second}, path)
	if rep.Broken == nil || rep.Broken.Line != last || !strings.Contains(rep.Broken.Reason, "cut off") {
		t.Fatalf("with the second place: %v; want the cut at line %d", rep.Broken, last)
	}
	t.Log(rep.Broken)
	// The whole file matches every checkpoint kept.
	if rep := verify(t, pub, []string{second}, orig); rep.Broken != nil || rep.External != len(cps) {
		t.Fatalf("intact file with the second place: %v, %d checkpoints matched, want %d", rep.Broken, rep.External, len(cps))
	}
	// The kept checkpoints are signed: a forged one is refused.
	forged := bytes.Replace(kept.Bytes(), []byte(`"seq":`), []byte(`"seq":1`), 1)
	if err := os.WriteFile(second, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, pub, []string{second}, orig); rep.Broken == nil || rep.Broken.File != second || rep.Broken.Line != 1 {
		t.Fatalf("a forged kept checkpoint: %v", rep.Broken)
	}
}

// TestVerifyWriters: two writers interleaved in one file, a restart that
// appends a second chain, and rotation across files all verify; files in
// the wrong order or one missing do not.
func TestVerifyWriters(t *testing.T) {
	pub, key := testKey(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	signedLog(t, a, key, 10)
	signedLog(t, b, key, 10)

	t.Run("interleaved", func(t *testing.T) {
		la, lb := fileLines(t, a), fileLines(t, b)
		var mixed [][]byte
		for len(la)+len(lb) > 0 {
			for i := 0; i < 2 && len(la) > 0; i++ {
				mixed, la = append(mixed, la[0]), la[1:]
			}
			if len(lb) > 0 {
				mixed, lb = append(mixed, lb[0]), lb[1:]
			}
		}
		rep := verify(t, pub, nil, writeLines(t, t.TempDir(), "mixed.log", mixed))
		if rep.Broken != nil || len(rep.Writers) != 2 {
			t.Fatalf("%v, %d writers; want 2 intact", rep.Broken, len(rep.Writers))
		}
	})
	t.Run("restart", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		signedLog(t, path, key, 3)
		signedLog(t, path, key, 3)
		rep := verify(t, pub, nil, path)
		if rep.Broken != nil || len(rep.Writers) != 2 || rep.Writers[1].Start.Line != rep.Writers[0].End.Line+1 {
			t.Fatalf("%v, %+v; want two chains, one after the other", rep.Broken, rep.Writers)
		}
	})
	t.Run("rotation", func(t *testing.T) {
		lines := fileLines(t, a)
		rdir := t.TempDir()
		f1 := writeLines(t, rdir, "audit.log.2", lines[:4])
		f2 := writeLines(t, rdir, "audit.log.1", lines[4:9])
		f3 := writeLines(t, rdir, "audit.log", lines[9:])
		if rep := verify(t, pub, nil, f1, f2, f3); rep.Broken != nil || rep.Writers[0].Lines != uint64(len(lines)) {
			t.Fatalf("rotated files oldest first: %v", rep.Broken)
		}
		if rep := verify(t, pub, nil, f2, f1, f3); rep.Broken == nil || rep.Broken.File != f2 || rep.Broken.Line != 1 {
			t.Fatalf("oldest file given second: %v, want a break at %s:1", rep.Broken, f2)
		}
		rep := verify(t, pub, nil, f1, f3)
		if rep.Broken == nil || rep.Broken.File != f3 || rep.Broken.Line != 1 || !strings.Contains(rep.Broken.Reason, "seq 5-9 ") {
			t.Fatalf("middle file missing: %v, want 5 lines missing at %s:1", rep.Broken, f3)
		}
		t.Log(rep.Broken)
	})
}

// TestVerifyUnsigned: without a key the log writes its chain only; the
// verifier says all its lines are unsigned. With a key and no public key
// the verifier checks the chain and says the signatures are not checked.
func TestVerifyUnsigned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, "i")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(entry("id-1")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, nil, nil, path)
	if rep.Broken != nil || rep.Signatures || rep.Writers[0].Lines != 3 || rep.Writers[0].Unsigned() != 3 {
		t.Fatalf("%v %+v: want 3 unsigned lines", rep.Broken, rep.Writers[0])
	}
}

// TestCheckpointInterval: a line waits at most CheckpointInterval for its
// checkpoint, with no other line to write.
func TestCheckpointInterval(t *testing.T) {
	pub, key := testKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	got := make(chan Checkpoint, 10)
	l, err := OpenWith(path, "i", Settings{SigningKey: key, CheckpointInterval: 20 * time.Millisecond, Checkpoint: func(c Checkpoint) { got <- c }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Record(entry("id-1")); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-got:
		if c.Seq != 2 || c.Verify(pub) != nil {
			t.Fatalf("checkpoint %+v: want lines 1-2, signed", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no checkpoint within 5 s")
	}
	rep := verify(t, pub, nil, path)
	if rep.Broken != nil || rep.Writers[0].Unsigned() != 0 {
		t.Fatalf("%v %+v: want all lines signed", rep.Broken, rep.Writers[0])
	}
	// No lines since: no checkpoint.
	select {
	case c := <-got:
		t.Fatalf("a checkpoint %+v with no new line", c)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestKeyFiles: keys round-trip through their PEM files; a public key
// loads from either file.
func TestKeyFiles(t *testing.T) {
	pub, key := testKey(t)
	dir := t.TempDir()
	kb, err := MarshalSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	kp, pp := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub")
	os.WriteFile(kp, kb, 0o600)
	os.WriteFile(pp, pb, 0o600)
	if k, err := LoadSigningKey(kp); err != nil || !k.Equal(key) {
		t.Fatalf("LoadSigningKey: %v", err)
	}
	for _, p := range []string{kp, pp} {
		if k, err := LoadPublicKey(p); err != nil || !k.Equal(pub) {
			t.Fatalf("LoadPublicKey(%s): %v", p, err)
		}
	}
	if _, err := LoadSigningKey(pp); err == nil {
		t.Fatal("a public key loaded as a signing key")
	}
}

// FuzzVerify: a Verifier reads any bytes, as log or as kept checkpoints,
// without panicking, and reports a break or a whole chain.
func FuzzVerify(f *testing.F) {
	_, key := testKey(f)
	path := filepath.Join(f.TempDir(), "audit.log")
	l, err := OpenWith(path, "i", Settings{SigningKey: key, CheckpointEvery: 2})
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range []string{"id-1", "id-2", "id-3"} {
		if err := l.Record(entry(r)); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(`{"writer":"a","seq":1}` + "\n" + `{"writer":"a","seq":1,"prev":"x"}`))
	pub := key.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		rep := verifyData(t, pub, data, data)
		if rep.Broken == nil {
			for _, w := range rep.Writers {
				if w.Signed > w.Lines {
					t.Fatalf("writer %+v: more lines signed than verified", w)
				}
			}
		}
	})
}
