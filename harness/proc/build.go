package proc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// IdgenPackage is the import path of the service binary.
const IdgenPackage = "github.com/idgen/idgen/cmd/idgen"

// BuildOptions of Build.
type BuildOptions struct {
	// Race builds with the race detector (and cgo). A test binary that runs
	// with -race usually builds its children without: they would only be
	// slower, and the races they could show are the server's, tested in
	// its own packages.
	Race bool
	// Tags are build tags.
	Tags []string
	// Timeout bounds the build. Default 5 minutes.
	Timeout time.Duration
}

// Build compiles a Go main package to out with the go tool of this machine
// (PATH, else $GOROOT/bin). A build of IdgenPackage is for tests that run
// the binary: under go test -short it ends the test binary (SkipShortMain).
func Build(pkg, out string, o BuildOptions) error {
	if pkg == IdgenPackage {
		SkipShortMain("the idgen binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		root := os.Getenv("GOROOT")
		if root == "" {
			return fmt.Errorf("proc: go tool not found: %w", err)
		}
		goBin = filepath.Join(root, "bin", "go")
	}
	args := []string{"build", "-o", out}
	env := append(os.Environ(), "CGO_ENABLED=0")
	if o.Race {
		args = append(args, "-race")
		env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if len(o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(o.Tags, ","))
	}
	args = append(args, pkg)
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("proc: go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// BuildIdgen builds the idgen binary into a new temporary directory for a
// test package's TestMain: name prefixes the directory and the messages; the
// environment variable <NAME>_RACE_CHILD=1 builds it with -race. It returns
// the binary's path and a cleanup that removes the directory.
func BuildIdgen(name string) (string, func(), error) {
	dir, err := os.MkdirTemp("", name+"-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	bin := filepath.Join(dir, "idgen")
	race := os.Getenv(strings.ToUpper(name)+"_RACE_CHILD") == "1"
	t0 := time.Now()
	if err := Build(IdgenPackage, bin, BuildOptions{Race: race}); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("%s: %w", name, err)
	}
	if os.Getenv("PROC_BUILD_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, "%s: built %s in %v\n", name, bin, time.Since(t0).Round(time.Millisecond))
	}
	return bin, cleanup, nil
}

// Binary is the idgen binary of a test package, built by the first test
// that asks for it (Path) into a temporary directory that the package's
// TestMain removes (Remove). The zero value builds without the race
// detector; Race builds with it.
type Binary struct {
	// Name prefixes the temporary directory and the build error.
	Name string
	Race bool

	once      sync.Once
	dir, path string
	err       error
}

// Path returns the binary, built on first use; under go test -short it
// skips tb (SkipShort), and a failed build fails it.
func (b *Binary) Path(tb testing.TB) string {
	tb.Helper()
	SkipShort(tb, "the idgen binary")
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", b.Name+"-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "idgen")
		b.err = Build(IdgenPackage, b.path, BuildOptions{Race: b.Race})
	})
	if b.err != nil {
		tb.Fatalf("%s: build idgen: %v", b.Name, b.err)
	}
	return b.path
}

// Remove deletes the binary's directory, if it was built.
func (b *Binary) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
