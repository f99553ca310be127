package registry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testOp is an operation of the Committer tests: its answer depends on its
// value.
type testOp struct {
	v    int
	err  error
	done chan struct{}
}

func newTestOp(v int) *testOp { return &testOp{v: v, done: make(chan struct{})} }

// do runs o through c and returns its answer.
func do(ctx context.Context, c *Committer[*testOp], o *testOp) error {
	if err := c.Do(ctx, o, o.done); err != nil {
		return err
	}
	return o.err
}

// answer answers every op of batch: nil, or errOdd for odd values.
var errOdd = errors.New("odd")

func answer(batch []*testOp) {
	for _, o := range batch {
		if o.v%2 == 1 {
			o.err = errOdd
		}
		close(o.done)
	}
}

// TestCommitterCloseDrains: operations racing with Close are either
// answered by a commit or refused with ErrClosed, never lost; after Close
// every call is refused.
func TestCommitterCloseDrains(t *testing.T) {
	c := NewCommitter(Gatherer[*testOp]{MaxBatch: 16}, nil)
	var committed atomic.Int64
	go c.Run(func(batch []*testOp) {
		committed.Add(int64(len(batch)))
		answer(batch)
	})
	ctx := context.Background()
	var (
		wg             sync.WaitGroup
		acked, refused atomic.Int64
	)
	for i := range 200 {
		wg.Go(func() {
			o := newTestOp(2 * i)
			switch err := do(ctx, c, o); {
			case err == nil:
				acked.Add(1)
			case errors.Is(err, ErrClosed):
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := c.Close(0); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if acked.Load()+refused.Load() != 200 || committed.Load() != acked.Load() {
		t.Fatalf("acked %d, refused %d, committed %d", acked.Load(), refused.Load(), committed.Load())
	}
	if err := do(ctx, c, newTestOp(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v", err)
	}
	if err := c.WhileOpen(func() error { return nil }); !errors.Is(err, ErrClosed) || !c.Closed() {
		t.Fatalf("WhileOpen after Close: %v, Closed %v", err, c.Closed())
	}
	if err := c.Close(0); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCommitterDo: Do answers what the commit answers, gives up at the end
// of its ctx (waiting for the answer, queued, or before a full queue), and
// refuses what admit refuses.
func TestCommitterDo(t *testing.T) {
	refuse := errors.New("refusing")
	var refusing atomic.Bool
	c := NewCommitter(Gatherer[*testOp]{MaxBatch: 1}, func() error {
		if refusing.Load() {
			return refuse
		}
		return nil
	})
	release := make(chan struct{})
	go c.Run(func(batch []*testOp) {
		<-release
		answer(batch)
	})
	defer func() { _ = c.Close(0) }()
	ctx := context.Background()
	timeout := func() context.Context {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	// The flusher holds the first op, the queue (1) the second: the third
	// cannot be queued before its ctx ends.
	first, second := newTestOp(1), newTestOp(2)
	if err := do(timeout(), c, first); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for the answer: %v", err)
	}
	if err := do(timeout(), c, second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("queued, waiting: %v", err)
	}
	if err := do(timeout(), c, newTestOp(3)); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queue full: %v", err)
	}
	refusing.Store(true)
	if err := do(ctx, c, newTestOp(4)); !errors.Is(err, refuse) {
		t.Fatalf("admit refusing: %v", err)
	}
	refusing.Store(false)
	close(release)
	<-first.done
	<-second.done
	if !errors.Is(first.err, errOdd) || second.err != nil {
		t.Fatalf("answers of ops whose ctx ended: %v, %v", first.err, second.err)
	}
	o := newTestOp(5)
	if err := do(ctx, c, o); !errors.Is(err, errOdd) {
		t.Fatalf("the commit's answer: %v", err)
	}
}

// TestCommitterCloseTimeout: a commit that does not return makes Close fail
// after its timeout instead of hanging.
func TestCommitterCloseTimeout(t *testing.T) {
	c := NewCommitter(Gatherer[*testOp]{MaxBatch: 4}, nil)
	stuck, release := make(chan struct{}), make(chan struct{})
	go c.Run(func(batch []*testOp) {
		close(stuck)
		<-release
		answer(batch)
	})
	o := newTestOp(0)
	go func() { _ = do(context.Background(), c, o) }()
	<-stuck
	if err := c.Close(50 * time.Millisecond); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Close with a stuck commit: %v", err)
	}
	close(release)
	<-c.flushed
}
