package allocator

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// zkProxy is a TCP proxy between ZooKeeper clients and one server that
// understands just enough of the wire protocol (length-prefixed frames; the
// first frame each way is the session handshake, then request headers
// {xid, opcode} and reply headers {xid, zxid, err}) to lose the reply of a
// chosen setData: the request reaches the server and commits, the reply is
// swallowed and the connection cut, as when a network path dies at the worst
// moment. It can also cut all connections and refuse new ones for a while (a
// partition long enough to expire sessions).
//
// A generic proxy such as toxiproxy (fetchable as a module) cuts by bytes or
// time, not at a reply boundary, so it cannot guarantee "write landed, reply
// lost"; this one can, and it tells the test what the swallowed reply said.
type zkProxy struct {
	t        *testing.T
	ln       net.Listener
	upstream string

	mu          sync.Mutex
	conns       map[net.Conn]struct{}
	refuseUntil time.Time
	holdAfter   time.Duration // refuse reconnects this long after swallowing a reply

	armed   atomic.Int32  // next setData requests whose replies to swallow
	dropP   atomic.Uint64 // probability (×1e6) that any setData reply is swallowed
	landed  atomic.Int32  // swallowed replies that said success
	refused atomic.Int32  // swallowed replies that said failure (e.g. bad version)
	wg      sync.WaitGroup
	closed  atomic.Bool
}

const opSetData = 5

func newZKProxy(t *testing.T, upstream string) *zkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &zkProxy{t: t, ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *zkProxy) Addr() string { return p.ln.Addr().String() }

// ArmSetDrop swallows the replies of the next n setData requests.
func (p *zkProxy) ArmSetDrop(n int) { p.armed.Add(int32(n)) }

// SetDropProbability swallows each setData reply with probability q.
func (p *zkProxy) SetDropProbability(q float64) { p.dropP.Store(uint64(q * 1e6)) }

// HoldAfterDrop makes the proxy refuse reconnects for d after a swallow.
func (p *zkProxy) HoldAfterDrop(d time.Duration) {
	p.mu.Lock()
	p.holdAfter = d
	p.mu.Unlock()
}

// Partition cuts every connection and refuses new ones for d.
func (p *zkProxy) Partition(d time.Duration) {
	p.mu.Lock()
	p.refuseUntil = time.Now().Add(d)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func (p *zkProxy) Close() {
	if !p.closed.CompareAndSwap(false, true) {
		return
	}
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *zkProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := time.Now().Before(p.refuseUntil)
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.upstream, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, s) {
			return
		}
		pc := &proxyConn{p: p, client: c, server: s, watch: map[uint32]bool{}}
		p.wg.Add(2)
		go pc.clientToServer()
		go pc.serverToClient()
	}
}

func (p *zkProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

type proxyConn struct {
	p              *zkProxy
	client, server net.Conn
	mu             sync.Mutex
	watch          map[uint32]bool // xids of setData requests whose reply to swallow
	once           sync.Once
}

func (c *proxyConn) cut() {
	c.once.Do(func() {
		c.client.Close()
		c.server.Close()
		c.p.mu.Lock()
		delete(c.p.conns, c.client)
		delete(c.p.conns, c.server)
		c.p.mu.Unlock()
	})
}

func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 16<<20 {
		return nil, errors.New("frame too large")
	}
	buf := make([]byte, 4+n)
	copy(buf, hdr[:])
	_, err := io.ReadFull(r, buf[4:])
	return buf, err
}

func (c *proxyConn) clientToServer() {
	defer c.p.wg.Done()
	defer c.cut()
	for first := true; ; first = false {
		f, err := readFrame(c.client)
		if err != nil {
			return
		}
		if !first && len(f) >= 12 && binary.BigEndian.Uint32(f[8:12]) == opSetData && c.p.shouldDrop() {
			c.mu.Lock()
			c.watch[binary.BigEndian.Uint32(f[4:8])] = true
			c.mu.Unlock()
		}
		if _, err := c.server.Write(f); err != nil {
			return
		}
	}
}

func (p *zkProxy) shouldDrop() bool {
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

func (c *proxyConn) serverToClient() {
	defer c.p.wg.Done()
	defer c.cut()
	for first := true; ; first = false {
		f, err := readFrame(c.server)
		if err != nil {
			return
		}
		if !first && len(f) >= 20 {
			xid := binary.BigEndian.Uint32(f[4:8])
			c.mu.Lock()
			drop := c.watch[xid]
			c.mu.Unlock()
			if drop {
				if binary.BigEndian.Uint32(f[16:20]) == 0 {
					c.p.landed.Add(1)
				} else {
					c.p.refused.Add(1)
				}
				c.p.mu.Lock()
				if c.p.holdAfter > 0 {
					c.p.refuseUntil = time.Now().Add(c.p.holdAfter)
				}
				c.p.mu.Unlock()
				return // swallow the reply and cut the connection
			}
		}
		if _, err := c.client.Write(f); err != nil {
			return
		}
	}
}
