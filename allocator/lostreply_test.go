package allocator

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/zkproxy"
	"github.com/idgen/idgen/shared/generator"
)

// TestLostReplyResolved: a claim's setData commits but its reply is lost
// with the connection. The allocator re-reads after reconnecting: it uses
// the range when the counter still carries its token, and burns it
// (claiming afresh) when another instance wrote in between. Then several
// allocators lose replies at random while others claim directly: no range is
// ever used twice.
func TestLostReplyResolved(t *testing.T) {
	root := testRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := zkproxy.StartT(t, zkAddrs(t)[0])
	a := openT(t, Config{Servers: []string{p.ConnectString()}, Root: root, SessionTimeout: 6 * time.Second})
	b := openT(t, Config{Servers: zkAddrs(t), Root: root, SessionTimeout: 6 * time.Second})
	conn := rawConn(t, zkAddrs(t), nil)
	var l ledger
	claim := func(who int, al *Allocator, n uint64) generator.Range {
		t.Helper()
		r, err := al.ClaimRange(ctx, n)
		if err != nil {
			t.Fatalf("ClaimRange: %v", err)
		}
		l.add(who, r)
		return r
	}
	claim(0, a, 100) // [0, 100)

	t.Run("landed and still ours", func(t *testing.T) {
		p.ArmSetDrop(1, 0)
		r := claim(0, a, 100)
		if r != (generator.Range{Start: 100, End: 200}) {
			t.Errorf("range %+v, want [100, 200)", r)
		}
		if got, _ := p.Swallowed(); got != 1 {
			t.Fatalf("proxy swallowed %d successful setData replies, want 1", got)
		}
		if s := a.Stats(); s.LostReplies != 1 || s.LostRepliesOurs != 1 || s.LostRepliesBurnt != 0 {
			t.Errorf("stats %+v, want one lost reply resolved as ours", s)
		}
		if next := counterNext(t, conn, root, 0); next != 200 {
			t.Errorf("counter %d, want 200: nothing burnt", next)
		}
	})

	t.Run("landed then overwritten: burnt", func(t *testing.T) {
		p.ArmSetDrop(1, 2*time.Second) // a stays cut off while b claims
		done := make(chan generator.Range, 1)
		go func() {
			r, err := a.ClaimRange(ctx, 100)
			if err != nil {
				t.Errorf("ClaimRange after lost reply: %v", err)
			}
			l.add(0, r)
			done <- r
		}()
		proc.Eventually(t, 10*time.Second, "the swallowed reply", func() bool { landed, _ := p.Swallowed(); return landed == 2 })
		rb := claim(1, b, 50) // a's write [200, 300) landed; b takes [300, 350)
		ra := <-done
		if rb != (generator.Range{Start: 300, End: 350}) {
			t.Errorf("b got %+v, want [300, 350)", rb)
		}
		if ra != (generator.Range{Start: 350, End: 450}) {
			t.Errorf("a got %+v, want [350, 450): [200, 300) must be burnt, not reused", ra)
		}
		if s := a.Stats(); s.LostReplies != 2 || s.LostRepliesBurnt != 1 {
			t.Errorf("stats %+v, want a second lost reply resolved as burnt", s)
		}
	})

	t.Run("random losses", func(t *testing.T) {
		const proxied, direct, claims = 3, 2, 25
		var wg sync.WaitGroup
		proxies := make([]*zkproxy.Proxy, proxied)
		as := make([]*Allocator, proxied)
		for i := range proxied {
			proxies[i] = zkproxy.StartT(t, zkAddrs(t)[0])
			proxies[i].SetDropProbability(0.15)
			as[i] = openT(t, Config{Servers: []string{proxies[i].ConnectString()}, Root: root, SessionTimeout: 6 * time.Second})
		}
		run := func(who int, al *Allocator) {
			for range claims {
				cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
				r, err := al.ClaimRange(cctx, 1+rand.Uint64N(500))
				ccancel()
				if err != nil {
					t.Errorf("allocator %d: %v", who, err)
					return
				}
				l.add(who, r)
			}
		}
		for i, al := range as {
			wg.Go(func() { run(10+i, al) })
		}
		for i := range direct {
			al := openT(t, Config{Servers: zkAddrs(t), Root: root})
			wg.Go(func() { run(20+i, al) })
		}
		wg.Wait()
		var swallowed, ours uint64
		for i, al := range as {
			s := al.Stats()
			landed, refused := proxies[i].Swallowed()
			n := uint64(landed + refused)
			swallowed += n
			ours += s.LostRepliesOurs
			if s.LostReplies != n {
				t.Errorf("allocator %d: %d lost replies, proxy swallowed %d", i, s.LostReplies, n)
			}
			if s.LostRepliesOurs+s.LostRepliesBurnt != s.LostReplies {
				t.Errorf("allocator %d: lost replies not all resolved: %+v", i, s)
			}
			if s.LostRepliesOurs > uint64(landed) {
				t.Errorf("allocator %d: %d lost replies used, only %d landed", i, s.LostRepliesOurs, landed)
			}
		}
		if swallowed == 0 {
			t.Errorf("no reply was swallowed; the test proved nothing")
		}
		t.Logf("%d replies swallowed, %d resolved as ours", swallowed, ours)
	})

	total, top := l.check(t)
	next := counterNext(t, conn, root, 0)
	if next < top {
		t.Errorf("counter %d below the top range end %d", next, top)
	}
	t.Logf("%d ranges, %d counters used, counter at %d (%d burnt)", l.len(), total, next, next-total)
}
