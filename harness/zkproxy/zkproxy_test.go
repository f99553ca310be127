package zkproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/zkharness"
)

type discard struct{}

func (discard) Printf(string, ...any) {}

// connect opens a ZooKeeper session through servers and waits for it.
func connect(t *testing.T, servers ...string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(servers, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(discard{}))
	if err != nil {
		t.Fatalf("zk.Connect: %v", err)
	}
	t.Cleanup(conn.Close)
	waitFor(t, "a session", func() bool { return conn.State() == zk.StateHasSession })
	return conn
}

// waitFor polls cond until it holds, failing t after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proc.Eventually(t, 15*time.Second, what, cond)
}

// probe dials the proxy and sends a frame: "answered" when a frame comes
// back, "closed" when the proxy ends the connection, "silent" when nothing
// comes within d.
func probe(t *testing.T, addr string, d time.Duration) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial the proxy: %v", err)
	}
	defer c.Close()
	// A connect request ZooKeeper answers: protocol 0, zxid 0, timeout
	// 10 s, session 0, a 16-byte password.
	var req bytes.Buffer
	for _, v := range []any{int32(44), int32(0), int64(0), int32(10000), int64(0), int32(16), [16]byte{}} {
		_ = binary.Write(&req, binary.BigEndian, v)
	}
	_, _ = c.Write(req.Bytes())
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err = ReadFrame(c)
	var ne net.Error
	switch {
	case err == nil:
		return "answered"
	case errors.As(err, &ne) && ne.Timeout():
		return "silent"
	default: // EOF, reset
		return "closed"
	}
}

// TestProxyFaults runs every fault against a real ZooKeeper server, with a
// session through the proxy and a direct one as the witness.
func TestProxyFaults(t *testing.T) {
	e := zkharness.StartT(t, zkharness.Options{})
	p := StartT(t, e.Addrs()...)
	if p.ConnectString() != p.Addrs()[0] || len(p.Addrs()) != 1 {
		t.Fatalf("ConnectString %q, Addrs %q", p.ConnectString(), p.Addrs())
	}
	direct := connect(t, e.Addrs()...)
	c := connect(t, p.ConnectString())
	path := "/zkproxy-" + t.Name()
	if _, err := c.Create(path, []byte("0"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create through the proxy: %v", err)
	}
	if got := probe(t, p.Addrs()[0], 2*time.Second); got != "answered" {
		t.Fatalf("a new connection was %s, want answered", got)
	}

	t.Run("swallowed reply, write landed", func(t *testing.T) {
		p.ArmSetDrop(1, 500*time.Millisecond)
		if _, _, err := c.Get(path); err != nil {
			t.Fatalf("getData while armed: %v (only setData replies are swallowed)", err)
		}
		_, err := c.Set(path, []byte("1"), -1)
		if err == nil {
			t.Fatal("the armed setData answered")
		}
		if landed, refused := p.Swallowed(); landed != 1 || refused != 0 {
			t.Fatalf("swallowed %d landed, %d refused; want 1, 0", landed, refused)
		}
		if got := probe(t, p.Addrs()[0], 2*time.Second); got != "closed" {
			t.Errorf("a reconnect within the hold was %s, want closed", got)
		}
		if data, _, err := direct.Get(path); err != nil || string(data) != "1" {
			t.Fatalf("direct read %q, %v; want the write that lost its reply", data, err)
		}
		waitFor(t, "reconnect after the hold", func() bool {
			data, _, err := c.Get(path)
			return err == nil && string(data) == "1"
		})
	})

	t.Run("swallowed reply, write refused", func(t *testing.T) {
		p.ArmSetDrop(1, 0)
		if _, err := c.Set(path, []byte("2"), 99); err == nil {
			t.Fatal("the armed setData answered")
		}
		if landed, refused := p.Swallowed(); landed != 1 || refused != 1 {
			t.Fatalf("swallowed %d landed, %d refused; want 1, 1", landed, refused)
		}
		p.Disarm()
		waitFor(t, "a setData through the disarmed proxy", func() bool {
			_, err := c.Set(path, []byte("3"), -1)
			return err == nil
		})
		if landed, refused := p.Swallowed(); landed+refused != 2 {
			t.Fatalf("swallowed %d after Disarm, want still 2", landed+refused)
		}
	})

	t.Run("partition and heal", func(t *testing.T) {
		p.Partition()
		if got := probe(t, p.Addrs()[0], 500*time.Millisecond); got != "silent" {
			t.Fatalf("a new connection during the partition was %s, want black-holed", got)
		}
		p.Heal()
		waitFor(t, "the session back after the heal", func() bool {
			_, err := c.Set(path, []byte("4"), -1)
			return err == nil
		})
		if data, _, err := direct.Get(path); err != nil || string(data) != "4" {
			t.Fatalf("direct read %q, %v after the heal", data, err)
		}
	})

	t.Run("cut", func(t *testing.T) {
		p.Cut(time.Second)
		if got := probe(t, p.Addrs()[0], 2*time.Second); got != "closed" {
			t.Fatalf("a new connection during the cut was %s, want refused", got)
		}
		waitFor(t, "the session back after the cut", func() bool {
			_, _, err := c.Get(path)
			return err == nil
		})
	})

	t.Run("random drops", func(t *testing.T) {
		p.SetDropProbability(1)
		if _, err := c.Set(path, []byte("5"), -1); err == nil {
			t.Fatal("setData answered with drop probability 1")
		}
		p.Disarm()
		if landed, _ := p.Swallowed(); landed != 2 {
			t.Fatalf("%d landed swallows, want 2", landed)
		}
	})

	p.Close()
	p.Close() // idempotent
}
