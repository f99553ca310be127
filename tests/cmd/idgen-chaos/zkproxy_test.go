package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeZK answers every framed request with a reply header {xid, zxid, 0},
// after echoing the handshake frame, which is what zkProxy parses.
func fakeZK(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				for first := true; ; first = false {
					f, err := readFrame(c)
					if err != nil {
						return
					}
					if first {
						_, _ = c.Write(f)
						continue
					}
					reply := make([]byte, 20)
					binary.BigEndian.PutUint32(reply[0:], 16)
					copy(reply[4:8], f[4:8]) // xid
					if _, err := c.Write(reply); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

func frame(xid, op uint32) []byte {
	f := make([]byte, 12)
	binary.BigEndian.PutUint32(f[0:], 8)
	binary.BigEndian.PutUint32(f[4:], xid)
	binary.BigEndian.PutUint32(f[8:], op)
	return f
}

// zkClient connects through the proxy and does the handshake.
func zkClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(frame(0, 0)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := readFrame(c); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c
}

// call sends one request and reads its reply within d.
func call(c net.Conn, xid, op uint32, d time.Duration) error {
	if _, err := c.Write(frame(xid, op)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(d))
	_, err := readFrame(c)
	return err
}

// TestZKProxy: replies flow; an armed setData reply is swallowed and the
// connection cut (other requests' replies are not); a partition drops
// everything until the heal closes the connection.
func TestZKProxy(t *testing.T) {
	p, err := startZKProxy([]string{fakeZK(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := zkClient(t, p.ConnectString())
	if err := call(c, 1, zkOpSetData, time.Second); err != nil {
		t.Fatalf("setData through the proxy: %v", err)
	}

	p.ArmSetDrop(1, 200*time.Millisecond)
	if err := call(c, 2, 4, time.Second); err != nil { // getData: not swallowed
		t.Fatalf("getData while armed: %v", err)
	}
	if err := call(c, 3, zkOpSetData, time.Second); err == nil || !isClosed(err) {
		t.Fatalf("the armed setData: %v, want its reply swallowed and the connection cut", err)
	}
	if landed, refused := p.Swallowed(); landed != 1 || refused != 0 {
		t.Fatalf("swallowed %d landed, %d refused; want 1, 0", landed, refused)
	}
	time.Sleep(300 * time.Millisecond) // past the hold
	c = zkClient(t, p.ConnectString())
	if err := call(c, 4, zkOpSetData, time.Second); err != nil {
		t.Fatalf("setData after the swallow (disarmed): %v", err)
	}

	p.Partition()
	if err := call(c, 5, 4, 300*time.Millisecond); err == nil {
		t.Fatal("a reply crossed the partition")
	}
	nc, err := net.DialTimeout("tcp", p.ConnectString(), time.Second)
	if err != nil {
		t.Fatalf("a new connection during the partition is refused (%v), want it black-holed", err)
	}
	nc.Write(frame(0, 0))
	nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := readFrame(nc); err == nil {
		t.Fatal("a new connection was answered during the partition")
	}
	p.Heal()
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := readFrame(c); err == nil {
		t.Fatal("a connection that lived through the partition was not closed by the heal")
	}
	nc.Close()
	c = zkClient(t, p.ConnectString())
	if err := call(c, 6, 4, time.Second); err != nil {
		t.Fatalf("after the heal: %v", err)
	}
}

// isClosed reports an error other than a read timeout (EOF, reset).
func isClosed(err error) bool {
	var ne net.Error
	return err == io.EOF || !errors.As(err, &ne) || !ne.Timeout()
}
