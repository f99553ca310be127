package zke2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// zkProxy stands between one idgen process and the ZooKeeper servers, one
// loopback listener per server, so a test can cut that process off while the
// ensemble keeps its quorum: a partition of one client. While partitioned,
// bytes in both directions are dropped and new connections are accepted but
// never answered (packets lost, not refused). heal closes every connection
// that lived through the partition, as a long partition ends for TCP, and
// forwards again.
type zkProxy struct {
	addrs []string

	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]struct{}
	lns     []net.Listener
	wg      sync.WaitGroup
}

func startZKProxy(tb testing.TB, targets []string) *zkProxy {
	tb.Helper()
	p := &zkProxy{conns: map[net.Conn]struct{}{}}
	for _, target := range targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		p.lns = append(p.lns, ln)
		p.addrs = append(p.addrs, ln.Addr().String())
		p.wg.Go(func() { p.accept(ln, target) })
	}
	tb.Cleanup(p.close)
	return p
}

func (p *zkProxy) connectString() string {
	s := ""
	for i, a := range p.addrs {
		if i > 0 {
			s += ","
		}
		s += a
	}
	return s
}

func (p *zkProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *zkProxy) isBlocked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked
}

func (p *zkProxy) accept(ln net.Listener, target string) {
	for {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		if !p.track(down) {
			return
		}
		p.wg.Go(func() {
			if p.isBlocked() {
				_, _ = io.Copy(io.Discard, down) // accepted, never answered
				return
			}
			up, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err != nil {
				down.Close()
				return
			}
			if !p.track(up) {
				down.Close()
				return
			}
			p.wg.Go(func() { p.pipe(up, down) })
			p.pipe(down, up)
		})
	}
}

// pipe copies src to dst, dropping what arrives while partitioned.
func (p *zkProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.isBlocked() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// partition starts dropping everything.
func (p *zkProxy) partition() {
	p.mu.Lock()
	p.blocked = true
	p.mu.Unlock()
}

// heal closes every connection and forwards new ones again.
func (p *zkProxy) heal() {
	p.mu.Lock()
	p.blocked = false
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *zkProxy) close() {
	for _, ln := range p.lns {
		_ = ln.Close()
	}
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
