package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// zkProxy stands between one idgen instance and the ZooKeeper servers, one
// loopback listener per server, so that link faults hit that instance only
// while the ensemble keeps its quorum. It understands just enough of the
// wire protocol (length-prefixed frames; the first frame each way is the
// session handshake, then request headers {xid, opcode} and reply headers
// {xid, zxid, err}) to lose the reply of a setData, the write of a range
// claim: the request reaches the server and commits, the reply is swallowed
// and the connection cut, as when a path dies at the worst moment. A
// byte-level proxy (toxiproxy) cannot promise "write landed, reply lost".
//
// Partition drops every frame both ways and black-holes new connections
// (accepted, never answered: packets lost, not refused); Heal closes every
// connection that lived through it, as a long partition ends for TCP.
type zkProxy struct {
	addrs []string
	lns   []net.Listener

	mu          sync.Mutex
	conns       map[net.Conn]struct{}
	blocked     bool
	refuseUntil time.Time     // after a swallowed reply: reconnects refused until then
	holdAfter   time.Duration // how long a swallow refuses reconnects
	closed      bool

	armed   atomic.Int32 // setData replies still to swallow
	landed  atomic.Int32 // swallowed replies that said success
	refused atomic.Int32 // swallowed replies that said failure (bad version)
	wg      sync.WaitGroup
}

const zkOpSetData = 5

// startZKProxy listens on a fresh loopback port for each target.
func startZKProxy(targets []string) (*zkProxy, error) {
	p := &zkProxy{conns: map[net.Conn]struct{}{}}
	for _, target := range targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.Close()
			return nil, err
		}
		p.lns = append(p.lns, ln)
		p.addrs = append(p.addrs, ln.Addr().String())
		p.wg.Go(func() { p.accept(ln, target) })
	}
	return p, nil
}

// ConnectString is the proxy's addresses joined by commas.
func (p *zkProxy) ConnectString() string { return strings.Join(p.addrs, ",") }

// Partition drops everything until Heal.
func (p *zkProxy) Partition() {
	p.mu.Lock()
	p.blocked = true
	p.mu.Unlock()
}

// Heal closes every connection and forwards new ones again.
func (p *zkProxy) Heal() {
	p.mu.Lock()
	p.blocked = false
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// ArmSetDrop swallows the replies of the next n setData requests, refusing
// reconnects for hold after each.
func (p *zkProxy) ArmSetDrop(n int, hold time.Duration) {
	p.mu.Lock()
	p.holdAfter = hold
	p.mu.Unlock()
	p.armed.Store(int32(n))
}

// Disarm stops swallowing replies.
func (p *zkProxy) Disarm() { p.armed.Store(0) }

// Swallowed returns the swallowed setData replies: those that said the
// write landed, and those that said it was refused.
func (p *zkProxy) Swallowed() (landed, refused int) {
	return int(p.landed.Load()), int(p.refused.Load())
}

// Close stops listening and closes every connection.
func (p *zkProxy) Close() {
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

func (p *zkProxy) state() (blocked, refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked, time.Now().Before(p.refuseUntil)
}

func (p *zkProxy) track(cs ...net.Conn) bool {
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

func (p *zkProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *zkProxy) accept(ln net.Listener, target string) {
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
		up, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			down.Close()
			continue
		}
		if !p.track(down, up) {
			return
		}
		c := &zkConn{p: p, client: down, server: up, watch: map[uint32]bool{}}
		p.wg.Go(c.clientToServer)
		p.wg.Go(c.serverToClient)
	}
}

// zkConn is one proxied connection.
type zkConn struct {
	p              *zkProxy
	client, server net.Conn
	mu             sync.Mutex
	watch          map[uint32]bool // xids of setData requests whose reply to swallow
}

func (c *zkConn) cut() { c.p.untrack(c.client, c.server) }

// readFrame reads one length-prefixed frame, prefix included.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 16<<20 {
		return nil, errors.New("zkproxy: frame too large")
	}
	buf := make([]byte, 4+n)
	copy(buf, hdr[:])
	_, err := io.ReadFull(r, buf[4:])
	return buf, err
}

func (c *zkConn) clientToServer() {
	defer c.cut()
	for first := true; ; first = false {
		f, err := readFrame(c.client)
		if err != nil {
			return
		}
		if blocked, _ := c.p.state(); blocked {
			continue
		}
		if !first && len(f) >= 12 && binary.BigEndian.Uint32(f[8:12]) == zkOpSetData && c.p.take() {
			c.mu.Lock()
			c.watch[binary.BigEndian.Uint32(f[4:8])] = true
			c.mu.Unlock()
		}
		if _, err := c.server.Write(f); err != nil {
			return
		}
	}
}

// take consumes one armed swallow, if any.
func (p *zkProxy) take() bool {
	for {
		n := p.armed.Load()
		if n <= 0 {
			return false
		}
		if p.armed.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (c *zkConn) serverToClient() {
	defer c.cut()
	for first := true; ; first = false {
		f, err := readFrame(c.server)
		if err != nil {
			return
		}
		if blocked, _ := c.p.state(); blocked {
			continue
		}
		if !first && len(f) >= 20 {
			xid := binary.BigEndian.Uint32(f[4:8])
			c.mu.Lock()
			swallow := c.watch[xid]
			delete(c.watch, xid)
			c.mu.Unlock()
			if swallow {
				if binary.BigEndian.Uint32(f[16:20]) == 0 {
					c.p.landed.Add(1)
				} else {
					c.p.refused.Add(1)
				}
				c.p.mu.Lock()
				c.p.refuseUntil = time.Now().Add(c.p.holdAfter)
				c.p.mu.Unlock()
				return // cut: the reply is never delivered
			}
		}
		if _, err := c.client.Write(f); err != nil {
			return
		}
	}
}
