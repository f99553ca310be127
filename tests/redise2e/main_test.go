package redise2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/zkharness"
)

// idgenBin is the `idgen` binary TestMain builds once for every test.
var idgenBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "redise2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "redise2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	idgenBin = filepath.Join(dir, "idgen")
	t0 := time.Now()
	if err := buildIdgen(idgenBin); err != nil {
		fmt.Fprintln(os.Stderr, "redise2e:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "redise2e: built %s in %v\n", idgenBin, time.Since(t0).Round(time.Millisecond))
	}
	code := m.Run()
	if zkShared.e != nil {
		if err := zkShared.e.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "redise2e: close ZooKeeper:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// buildIdgen builds cmd/idgen to out, without the race detector (the test
// binary has it; the child would only be slower) unless
// REDISE2E_RACE_CHILD=1.
func buildIdgen(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goBin = filepath.Join(root, "bin", "go")
		} else {
			return fmt.Errorf("go tool not found: %w", err)
		}
	}
	args := []string{"build", "-o", out}
	env := append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("REDISE2E_RACE_CHILD") == "1" {
		args = append(args, "-race")
		env = append(os.Environ(), "CGO_ENABLED=1")
	}
	args = append(args, "github.com/idgen/idgen/cmd/idgen")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// zkShared is the package's one ZooKeeper server, started on first use.
var zkShared struct {
	once sync.Once
	e    *zkharness.Ensemble
	err  error

	mu sync.Mutex
	tb testing.TB // receives the server's lifecycle log lines
}

func zkLogf(format string, args ...any) {
	zkShared.mu.Lock()
	defer zkShared.mu.Unlock()
	if zkShared.tb != nil {
		zkShared.tb.Logf(format, args...)
	}
}

// zooKeeper returns the connect string of the shared ZooKeeper and a root
// no other test uses.
func zooKeeper(tb testing.TB) (connect, root string) {
	tb.Helper()
	zkShared.mu.Lock()
	zkShared.tb = tb
	zkShared.mu.Unlock()
	tb.Cleanup(func() {
		zkShared.mu.Lock()
		zkShared.tb = nil
		zkShared.mu.Unlock()
	})
	zkShared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		zkShared.e, zkShared.err = zkharness.Start(ctx, zkharness.Options{Servers: 1, Logf: zkLogf})
	})
	if zkShared.err != nil {
		tb.Fatalf("start ZooKeeper: %v", zkShared.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := zkShared.e.WaitQuorum(ctx); err != nil {
		tb.Fatalf("ZooKeeper not serving: %v", err)
	}
	name := nonPath.ReplaceAllString(tb.Name(), "_")
	return zkShared.e.ConnectString(), "/redise2e-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

var nonPath = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
