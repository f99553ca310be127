package zkharness

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// discard keeps go-zookeeper's reconnect chatter out of the test output; its
// goroutines may log after the test that owned them has returned.
type discard struct{}

func (discard) Printf(string, ...any) {}

// connect opens a session to servers (through dialer if not nil) and waits
// until it is established.
func connect(t *testing.T, servers []string, dialer zk.Dialer) *zk.Conn {
	t.Helper()
	opts := []func(*zk.Conn){zk.WithLogger(discard{})}
	if dialer != nil {
		opts = append(opts, zk.WithDialer(dialer))
	}
	conn, _, err := zk.Connect(servers, 4*time.Second, func(c *zk.Conn) {
		for _, o := range opts {
			o(c)
		}
	})
	if err != nil {
		t.Fatalf("zk.Connect: %v", err)
	}
	t.Cleanup(conn.Close)
	deadline := time.Now().Add(15 * time.Second)
	for conn.State() != zk.StateHasSession {
		if time.Now().After(deadline) {
			t.Fatalf("no session with %v after 15s (state %v)", servers, conn.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return conn
}

func mustCreate(t *testing.T, conn *zk.Conn, path, data string) {
	t.Helper()
	if _, err := conn.Create(path, []byte(data), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
}

func mustGet(t *testing.T, conn *zk.Conn, path, want string) {
	t.Helper()
	got, _, err := conn.Get(path)
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	if string(got) != want {
		t.Fatalf("get %s = %q, want %q", path, got, want)
	}
}

func TestStandalone(t *testing.T) {
	began := time.Now()
	e := StartT(t, Options{})
	t.Logf("1-node start took %v", time.Since(began).Round(time.Millisecond))
	ctx := t.Context()

	if mode, err := e.Mode(ctx, 0); err != nil || mode != "standalone" {
		t.Fatalf("Mode(0) = %q, %v; want standalone", mode, err)
	}
	if l, err := e.Leader(ctx); err != nil || l != 0 {
		t.Fatalf("Leader = %d, %v; want 0", l, err)
	}
	conn := connect(t, e.Addrs(), nil)
	mustCreate(t, conn, "/standalone", "one")
	mustGet(t, conn, "/standalone", "one")

	if err := e.Kill(0); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if _, err := e.Mode(ctx, 0); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Mode of killed server: %v, want ErrNotRunning", err)
	}
	if err := e.WaitServing(ctx, 0); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("WaitServing of killed server: %v, want ErrNotRunning", err)
	}
	if err := e.Restart(ctx, 0); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	mustGet(t, connect(t, e.Addrs(), nil), "/standalone", "one")

	// Close must also kill a frozen server.
	if err := e.Stop(0); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := e.Leader(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leader after Close: %v, want ErrClosed", err)
	}
	if conn, err := net.DialTimeout("tcp", e.Addrs()[0], time.Second); err == nil {
		conn.Close()
		t.Fatalf("server still listening after Close")
	}
}

func TestEnsembleFailover(t *testing.T) {
	began := time.Now()
	e := StartT(t, Options{Servers: 3})
	t.Logf("3-node start took %v", time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()

	leader, err := e.Leader(ctx)
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	for i := range 3 {
		want := "follower"
		if i == leader {
			want = "leader"
		}
		if mode, err := e.Mode(ctx, i); err != nil || mode != want {
			t.Fatalf("Mode(%d) = %q, %v; want %s", i, mode, err, want)
		}
	}
	conn := connect(t, strings.Split(e.ConnectString(), ","), nil)
	mustCreate(t, conn, "/survives", "failover")

	if killed, err := e.KillLeader(ctx); err != nil || killed != leader {
		t.Fatalf("KillLeader = %d, %v; want %d", killed, err, leader)
	}
	if err := e.WaitQuorum(ctx); err != nil {
		t.Fatalf("WaitQuorum after killing the leader: %v", err)
	}
	next, err := e.Leader(ctx)
	if err != nil || next == leader {
		t.Fatalf("Leader after kill = %d, %v; want a new one (old %d)", next, err, leader)
	}
	survivors := []string{}
	for i, a := range e.Addrs() {
		if i != leader {
			survivors = append(survivors, a)
		}
	}
	mustGet(t, connect(t, survivors, nil), "/survives", "failover")

	if err := e.Restart(ctx, leader); err != nil {
		t.Fatalf("Restart(%d): %v", leader, err)
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatalf("WaitServing: %v", err)
	}
	if mode, err := e.Mode(ctx, leader); err != nil || mode != "follower" {
		t.Fatalf("Mode of restarted server = %q, %v; want follower", mode, err)
	}
	mustGet(t, connect(t, e.Addrs()[leader:leader+1], nil), "/survives", "failover")

	// Freeze a follower: it stops answering; thawed, it serves again.
	follower := (next + 1) % 3
	if err := e.Stop(follower); err != nil {
		t.Fatalf("Stop(%d): %v", follower, err)
	}
	if _, err := e.Mode(ctx, follower); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Mode of frozen server: %v, want ErrNotRunning", err)
	}
	if err := e.WaitQuorum(ctx); err != nil {
		t.Fatalf("WaitQuorum with a frozen follower: %v", err)
	}
	if err := e.Cont(follower); err != nil {
		t.Fatalf("Cont(%d): %v", follower, err)
	}
	if err := e.WaitServing(ctx, follower); err != nil {
		t.Fatalf("WaitServing(%d) after Cont: %v", follower, err)
	}
}
