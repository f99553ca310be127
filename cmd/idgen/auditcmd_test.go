package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idgen/idgen/shared/platform/audit"
)

// signedAuditLog writes a log as `idgen serve` does with the key files of
// `idgen keygen`: n entries, a checkpoint every 4 lines. It returns the
// log's path and the public key file.
func signedAuditLog(t *testing.T, n int) (path, pub string) {
	t.Helper()
	dir := t.TempDir()
	var out bytes.Buffer
	if err := keygen([]string{"--dir", dir}, &out, &out); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "audit.log")
	a := auditFlags{Path: path, SigningKey: filepath.Join(dir, auditKeyFile), CheckpointEvery: 4}
	if err := a.validate(); err != nil {
		t.Fatal(err)
	}
	l, err := a.open("test-instance", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := l.Record(audit.Event{Actor: "alice", Action: audit.ActionCommit, Resource: fmt.Sprintf("id-%d", i), Outcome: "applied"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, filepath.Join(dir, auditPubKeyFile)
}

// runIdgen runs the command line args and returns the exit code, stdout
// and stderr.
func runIdgen(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestAuditVerifyCLI: `idgen audit verify` exits 0 on an intact log, 1 at
// the first broken link (printed as FILE:LINE), and 1 on a usage error.
func TestAuditVerifyCLI(t *testing.T) {
	path, pub := signedAuditLog(t, 10)
	lines := strings.SplitAfter(strings.TrimSuffix(mustRead(t, path), "\n"), "\n")

	code, out, errOut := runIdgen("audit", "verify", "--public-key", pub, path)
	if code != 0 || !strings.Contains(out, "OK: 1 writers") || !strings.Contains(out, "every line is under a checkpoint") || !strings.Contains(out, "instance test-instance") {
		t.Fatalf("intact log: exit %d\n%s%s", code, out, errOut)
	}

	// The sixth line (id-3, after the first checkpoint) modified.
	tampered := filepath.Join(t.TempDir(), "audit.log")
	modified := append([]string(nil), lines...)
	modified[5] = strings.Replace(modified[5], `"alice"`, `"mallory"`, 1)
	writeFile(t, tampered, strings.Join(modified, ""))
	code, out, errOut = runIdgen("audit", "verify", "--public-key", pub, tampered)
	if want := tampered + ":6: line modified"; code != 1 || !strings.Contains(out, "BROKEN "+want) || !strings.Contains(errOut, want) {
		t.Fatalf("modified line: exit %d, want 1 and %q\n%s%s", code, want, out, errOut)
	}

	// Cut after the second checkpoint: the file alone shows the unsigned
	// tail; the shipped copy of the log, as kept checkpoints, the cut.
	cut := filepath.Join(t.TempDir(), "audit.log")
	writeFile(t, cut, strings.Join(lines[:12], ""))
	code, out, _ = runIdgen("audit", "verify", "--public-key", pub, cut)
	if code != 0 || !strings.Contains(out, "2 lines after the last checkpoint are unsigned") {
		t.Fatalf("cut log alone: exit %d\n%s", code, out)
	}
	code, out, _ = runIdgen("audit", "verify", "--public-key", pub, "--checkpoints", path, cut)
	if code != 1 || !strings.Contains(out, cut+":12: writer") || !strings.Contains(out, "cut off") {
		t.Fatalf("cut log with the shipped copy: exit %d\n%s", code, out)
	}

	// Without the public key the chain is checked and the signatures not.
	code, out, _ = runIdgen("audit", "verify", path)
	if code != 0 || !strings.Contains(out, "signatures not checked") {
		t.Fatalf("no key: exit %d\n%s", code, out)
	}
	// Another key's public half refuses the checkpoints.
	_, otherPub := signedAuditLog(t, 1)
	if code, out, _ = runIdgen("audit", "verify", "--public-key", otherPub, path); code != 1 || !strings.Contains(out, "another key") {
		t.Fatalf("another key: exit %d\n%s", code, out)
	}

	for _, args := range [][]string{
		{"audit"},
		{"audit", "check", path},
		{"audit", "verify"},
		{"audit", "verify", filepath.Join(t.TempDir(), "missing.log")},
		{"audit", "verify", "--public-key", path, path},
	} {
		if code, out, errOut := runIdgen(args...); code != 1 {
			t.Errorf("idgen %s: exit %d, want 1\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if code, _, _ := runIdgen("audit", "verify", "--help"); code != 0 {
		t.Errorf("--help: exit %d, want 0", code)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
