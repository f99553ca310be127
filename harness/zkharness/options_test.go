package zkharness

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/optionstest"
	"github.com/idgen/idgen/harness/proc"
)

func TestOptionsValidate(t *testing.T) {
	optionstest.Run(t, []optionstest.Case[Options]{
		{Name: "zero", Opts: Options{}, OK: true},
		{Name: "three", Opts: Options{Servers: 3, TickTime: 100 * time.Millisecond}, OK: true},
		{Name: "negative servers", Opts: Options{Servers: -1}, OK: false},
		{Name: "too many servers", Opts: Options{Servers: maxServers + 1}, OK: false},
		{Name: "sub-millisecond tick", Opts: Options{TickTime: 1500 * time.Microsecond}, OK: false},
		{Name: "negative tick", Opts: Options{TickTime: -time.Second}, OK: false},
		{Name: "heap without dash", Opts: Options{JVMHeap: "256m"}, OK: false},
	})
}

func TestStartNotInstalled(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no java", Options{Java: "/nonexistent/java"}},
		{"no jar", Options{ClassPath: []string{"/nonexistent/zookeeper.jar"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(t.Context(), tc.opts)
			if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "scripts/install-deps.sh") {
				t.Fatalf("Start = %v, want ErrNotInstalled naming scripts/install-deps.sh", err)
			}
		})
	}
}

// TestStartCanceled checks that a Start cut short kills its JVM and leaves
// the given Dir in place (only a temporary Dir is removed).
func TestStartCanceled(t *testing.T) {
	proc.SkipShort(t, "ZooKeeper")
	dir := filepath.Join(t.TempDir(), "zk")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := Start(ctx, Options{Dir: dir})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want context.DeadlineExceeded", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "zk0", "zoo.cfg")); err != nil {
		t.Fatalf("given Dir was not kept: %v", err)
	}
}

// TestRestartPortTaken checks that a server whose port was taken while it was
// down fails Restart with ErrPortInUse instead of hanging until ctx ends.
func TestRestartPortTaken(t *testing.T) {
	e := StartT(t, Options{})
	if err := e.Kill(0); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	ln, err := net.Listen("tcp", e.Addrs()[0])
	if err != nil {
		t.Fatalf("take the client port: %v", err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	began := time.Now()
	err = e.Restart(ctx, 0)
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Restart with the port taken = %v, want ErrPortInUse", err)
	}
	t.Logf("Restart failed after %v: %v", time.Since(began).Round(time.Millisecond), err)
}

// takenPicker returns a picker whose first answer puts a port held by a
// listener at position pos; later calls pick normally.
func takenPicker(t *testing.T, pos int) func(int) ([]int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	calls := 0
	return func(n int) ([]int, error) {
		ports, err := pickPorts(n)
		if calls++; calls == 1 && err == nil {
			ports[pos] = ln.Addr().(*net.TCPAddr).Port
		}
		return ports, err
	}
}

// TestStartRetriesTakenPort checks that Start survives the race it cannot
// prevent: a picked port taken before the JVM binds it. Position 0 is the
// client port of server 0, which makes the JVM exit; position 7 is the
// quorum port of server 2, usually the first leader (highest myid wins a tie),
// which does not exit but re-runs the election, so only its log shows the
// failure. If servers 0 and 1 elect each other before server 2 is up, the
// port is never bound and the first attempt simply succeeds.
func TestStartRetriesTakenPort(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers int
		pos     int
	}{
		{"client port", 1, 0},
		{"leader quorum port", 3, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			picker := takenPicker(t, tc.pos)
			began := time.Now()
			e := StartT(t, Options{Servers: tc.servers, pickPorts: picker})
			t.Logf("started after %v", time.Since(began).Round(time.Millisecond))
			if err := e.WaitQuorum(t.Context()); err != nil {
				t.Fatalf("WaitQuorum: %v", err)
			}
		})
	}
}
