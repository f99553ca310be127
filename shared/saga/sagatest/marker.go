package sagatest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/saga"
)

// MarkerEnv is one saga.Marker under test, fresh for each case.
type MarkerEnv struct {
	Marks saga.Marker
	// Expire makes whatever the marker holds for id (a lease or a done
	// mark) run out, as its TTL would.
	Expire func(t testing.TB, id idcodec.ID)
}

// TestMarker runs the behaviour every saga.Marker shares against
// the markers newEnv returns, one per subtest. saga.RedisMarks is
// its reference: a claim is a lease of one token, busy for every other
// token until it is released by its token, runs out or is marked done; a
// done mark is claimed by no token until it runs out.
func TestMarker(t *testing.T, newEnv func(t *testing.T) MarkerEnv) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e MarkerEnv, c checker, id idcodec.ID)
	}{
		{"lease", func(t *testing.T, e MarkerEnv, c checker, id idcodec.ID) {
			a, b := saga.NewToken(), saga.NewToken()
			c.won("first claim", a)
			c.won("the same token again (a lost reply)", a)
			c.busy("another token", b)
			c.release(b)
			c.busy("after another token's release", b)
			c.release(a)
			c.won("claim after release", b)
			e.Expire(t, id) // b died holding it
			c.won("claim after the lease ran out", a)
			c.mark(a)
			c.release(a)
			c.done("a done mark, its own token", a)
			c.done("a done mark, another token", b)
		}},
		{"done mark runs out", func(t *testing.T, e MarkerEnv, c checker, id idcodec.ID) {
			a := saga.NewToken()
			c.won("claim", a)
			c.mark(a)
			c.done("marked", saga.NewToken())
			e.Expire(t, id)
			c.won("claim after the done mark ran out", saga.NewToken())
		}},
		{"mark without a claim", func(t *testing.T, e MarkerEnv, c checker, id idcodec.ID) {
			c.mark("")
			c.done("marked without a claim", saga.NewToken())
		}},
		{"mark replaces another token's lease", func(t *testing.T, e MarkerEnv, c checker, id idcodec.ID) {
			a, b := saga.NewToken(), saga.NewToken()
			c.won("claim", a)
			c.mark(b)
			c.release(a)
			c.done("marked over a's lease", a)
		}},
		{"IDs apart", func(t *testing.T, e MarkerEnv, c checker, id idcodec.ID) {
			a := saga.NewToken()
			c.won("claim", a)
			c.mark(a)
			other := checker{t: t, ctx: ctx, m: e.Marks, id: NewIDs(1)[0]}
			other.won("another ID", saga.NewToken())
		}},
		{"one of concurrent claims wins", func(t *testing.T, e MarkerEnv, c checker, id idcodec.ID) {
			const n = 16
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				won  int
				errs []error
			)
			for range n {
				wg.Go(func() {
					ok, err := e.Marks.Claim(ctx, id, saga.NewToken())
					mu.Lock()
					defer mu.Unlock()
					if ok {
						won++
					}
					if err != nil && !errors.Is(err, saga.ErrAuditBusy) {
						errs = append(errs, err)
					}
				})
			}
			wg.Wait()
			if won != 1 || len(errs) > 0 {
				t.Fatalf("%d of %d concurrent claims won (errors %v), want exactly 1 and the others busy", won, n, errs)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id := NewIDs(1)[0]
			tc.run(t, e, checker{t: t, ctx: ctx, m: e.Marks, id: id}, id)
		})
	}
}

// checker asserts the answers of one marker about one ID.
type checker struct {
	t   *testing.T
	ctx context.Context
	m   saga.Marker
	id  idcodec.ID
}

func (c checker) won(what, token string) {
	c.t.Helper()
	if won, err := c.m.Claim(c.ctx, c.id, token); err != nil || !won {
		c.t.Fatalf("%s: %v, %v; want won", what, won, err)
	}
}

func (c checker) busy(what, token string) {
	c.t.Helper()
	won, err := c.m.Claim(c.ctx, c.id, token)
	if won || !errors.Is(err, saga.ErrAuditBusy) || !errors.Is(err, saga.ErrAudit) || saga.Permanent(err) {
		c.t.Fatalf("%s: %v, %v; want transient ErrAuditBusy", what, won, err)
	}
}

func (c checker) done(what, token string) {
	c.t.Helper()
	if won, err := c.m.Claim(c.ctx, c.id, token); err != nil || won {
		c.t.Fatalf("%s: %v, %v; want not won, no error (done)", what, won, err)
	}
}

func (c checker) mark(token string) {
	c.t.Helper()
	if err := c.m.Mark(c.ctx, c.id, token); err != nil {
		c.t.Fatalf("mark: %v", err)
	}
}

func (c checker) release(token string) {
	c.t.Helper()
	if err := c.m.Release(c.ctx, c.id, token); err != nil {
		c.t.Fatalf("release: %v", err)
	}
}
