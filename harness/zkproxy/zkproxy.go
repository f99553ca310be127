// Package zkproxy stands between ZooKeeper clients and the servers of an
// ensemble, one loopback listener per server, so that link faults hit the
// clients behind the proxy only while the ensemble keeps its quorum.
//
// It understands just enough of the wire protocol (length-prefixed frames;
// the first frame each way is the session handshake, then request headers
// {xid, opcode} and reply headers {xid, zxid, err}) to lose the reply of a
// setData: the request reaches the server and commits, the reply is
// swallowed and the connection cut, as when a network path dies at the
// worst moment. A byte-level proxy (toxiproxy) cuts by bytes or time, not
// at a reply boundary, so it cannot promise "write landed, reply lost"; this
// one can, and it counts what the swallowed replies said.
//
// Faults:
//   - Partition drops every frame both ways and black-holes new connections
//     (accepted, never answered: packets lost, not refused) until Heal, which
//     closes every connection that lived through it, as a long partition
//     ends for TCP.
//   - Cut closes every connection and refuses new ones (accepted and closed
//     at once) for a while: a partition long enough to expire sessions whose
//     clients learn of it at once.
//   - ArmSetDrop and SetDropProbability swallow setData replies; after each
//     swallow, reconnects are refused for the hold ArmSetDrop set.
//
// Invariants: the proxy never changes, reorders or invents a frame; it
// forwards it whole, drops it, or ends its connection. Close ends every
// goroutine it started.
package zkproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// OpSetData is the opcode of a setData request.
const OpSetData = 5

// MaxFrame bounds a frame's length; a longer one ends its connection.
const MaxFrame = 16 << 20

// dialTimeout bounds the dial of a server for each accepted connection.
const dialTimeout = 2 * time.Second

// Proxy is a running proxy. Its methods are safe for concurrent use.
type Proxy struct {
	addrs []string
	lns   []net.Listener

	mu          sync.Mutex
	conns       map[net.Conn]struct{}
	blocked     bool          // partitioned until Heal
	refuseUntil time.Time     // new connections refused until then
	holdAfter   time.Duration // how long a swallow refuses reconnects
	closed      bool

	armed   atomic.Int32  // setData replies still to swallow
	dropP   atomic.Uint64 // probability (×1e6) that any setData reply is swallowed
	landed  atomic.Int32  // swallowed replies that said success
	refused atomic.Int32  // swallowed replies that said failure (bad version)
	wg      sync.WaitGroup
}

// Start listens on a fresh loopback port for each target server
// ("host:port"), in the order given.
func Start(targets ...string) (*Proxy, error) {
	p := &Proxy{conns: map[net.Conn]struct{}{}}
	for _, target := range targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("zkproxy: listen: %w", err)
		}
		p.lns = append(p.lns, ln)
		p.addrs = append(p.addrs, ln.Addr().String())
		p.wg.Go(func() { p.accept(ln, target) })
	}
	return p, nil
}

// StartT is Start for tests: it fails tb on error and closes the proxy in
// tb.Cleanup.
func StartT(tb testing.TB, targets ...string) *Proxy {
	tb.Helper()
	p, err := Start(targets...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// Addrs returns the proxy's listen addresses, one per target in Start's
// order.
func (p *Proxy) Addrs() []string { return p.addrs }

// ConnectString is Addrs joined by commas, as ZooKeeper clients take it.
func (p *Proxy) ConnectString() string { return strings.Join(p.addrs, ",") }

// Partition drops everything both ways until Heal.
func (p *Proxy) Partition() {
	p.mu.Lock()
	p.blocked = true
	p.mu.Unlock()
}

// Heal closes every connection and forwards new ones again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.blocked = false
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// Cut closes every connection and refuses new ones for d.
func (p *Proxy) Cut(d time.Duration) {
	p.mu.Lock()
	p.refuseLocked(d)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// ArmSetDrop swallows the replies of the next n setData requests, refusing
// reconnects for hold after each.
func (p *Proxy) ArmSetDrop(n int, hold time.Duration) {
	p.mu.Lock()
	p.holdAfter = hold
	p.mu.Unlock()
	p.armed.Store(int32(n))
}

// SetDropProbability swallows each setData reply with probability q (0 to
// 1), on top of the armed ones.
func (p *Proxy) SetDropProbability(q float64) { p.dropP.Store(uint64(q * 1e6)) }

// Disarm stops swallowing replies, armed or by probability.
func (p *Proxy) Disarm() {
	p.armed.Store(0)
	p.dropP.Store(0)
}

// Swallowed returns the swallowed setData replies: those that said the
// write landed, and those that said it was refused.
func (p *Proxy) Swallowed() (landed, refused int) {
	return int(p.landed.Load()), int(p.refused.Load())
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for _, ln := range p.lns {
		ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// refuseLocked refuses new connections for at least d; a longer refusal
// already in force stays. The caller holds p.mu.
func (p *Proxy) refuseLocked(d time.Duration) {
	if until := time.Now().Add(d); until.After(p.refuseUntil) {
		p.refuseUntil = until
	}
}

func (p *Proxy) state() (blocked, refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked, time.Now().Before(p.refuseUntil)
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *Proxy) accept(ln net.Listener, target string) {
	for {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		blocked, refuse := p.state()
		switch {
		case refuse:
			down.Close()
			continue
		case blocked:
			if p.track(down) {
				p.wg.Go(func() {
					_, _ = io.Copy(io.Discard, down) // accepted, never answered
					p.untrack(down)
				})
			}
			continue
		}
		up, err := net.DialTimeout("tcp", target, dialTimeout)
		if err != nil {
			down.Close()
			continue
		}
		if !p.track(down, up) {
			return
		}
		c := &conn{p: p, client: down, server: up, watch: map[uint32]bool{}}
		p.wg.Go(c.clientToServer)
		p.wg.Go(c.serverToClient)
	}
}

// shouldDrop consumes one armed swallow, if any, else draws against the
// drop probability.
func (p *Proxy) shouldDrop() bool {
	for {
		n := p.armed.Load()
		if n <= 0 {
			break
		}
		if p.armed.CompareAndSwap(n, n-1) {
			return true
		}
	}
	q := p.dropP.Load()
	return q > 0 && rand.Uint64N(1e6) < q
}

// conn is one proxied connection.
type conn struct {
	p              *Proxy
	client, server net.Conn
	mu             sync.Mutex
	watch          map[uint32]bool // xids of setData requests whose reply to swallow
}

func (c *conn) cut() { c.p.untrack(c.client, c.server) }

// ReadFrame reads one length-prefixed frame, prefix included.
func ReadFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, errors.New("zkproxy: frame too large")
	}
	buf := make([]byte, 4+n)
	copy(buf, hdr[:])
	_, err := io.ReadFull(r, buf[4:])
	return buf, err
}

// pump forwards whole frames from src to dst until either side fails or
// inspect ends the connection, then cuts it. Frames read while partitioned
// are dropped. inspect sees every frame after the handshake (the first
// frame each way) before it is forwarded, and returns false to cut the
// connection instead.
func (c *conn) pump(src, dst net.Conn, inspect func(f []byte) bool) {
	defer c.cut()
	for first := true; ; first = false {
		f, err := ReadFrame(src)
		if err != nil {
			return
		}
		if blocked, _ := c.p.state(); blocked {
			continue
		}
		if !first && !inspect(f) {
			return
		}
		if _, err := dst.Write(f); err != nil {
			return
		}
	}
}

func (c *conn) clientToServer() { c.pump(c.client, c.server, c.request) }

func (c *conn) serverToClient() { c.pump(c.server, c.client, c.reply) }

// request marks the xid of a setData request whose reply is to be
// swallowed; every request is forwarded.
func (c *conn) request(f []byte) bool {
	if len(f) >= 12 && binary.BigEndian.Uint32(f[8:12]) == OpSetData && c.p.shouldDrop() {
		c.mu.Lock()
		c.watch[binary.BigEndian.Uint32(f[4:8])] = true
		c.mu.Unlock()
	}
	return true
}

// reply swallows the reply to a marked request: it counts what the reply
// said, refuses reconnects for the hold, and returns false so the reply is
// never delivered and the connection is cut.
func (c *conn) reply(f []byte) bool {
	if len(f) < 20 {
		return true
	}
	xid := binary.BigEndian.Uint32(f[4:8])
	c.mu.Lock()
	swallow := c.watch[xid]
	delete(c.watch, xid)
	c.mu.Unlock()
	if !swallow {
		return true
	}
	if binary.BigEndian.Uint32(f[16:20]) == 0 {
		c.p.landed.Add(1)
	} else {
		c.p.refused.Add(1)
	}
	c.p.mu.Lock()
	c.p.refuseLocked(c.p.holdAfter)
	c.p.mu.Unlock()
	return false
}
