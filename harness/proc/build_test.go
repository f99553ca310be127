package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/hello\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"built\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	out := filepath.Join(dir, "hello")
	if err := Build("example.com/hello", out, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(out).Output()
	if err != nil || strings.TrimSpace(string(b)) != "built" {
		t.Fatalf("built binary: %q %v", b, err)
	}
	if err := Build("example.com/missing", filepath.Join(dir, "x"), BuildOptions{}); err == nil {
		t.Fatal("building a missing package succeeded")
	}
}
