package allocator

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/shared/generator"
)

type rangeFunc func(ctx context.Context, n uint64) (generator.Range, error)

func (f rangeFunc) ClaimRange(ctx context.Context, n uint64) (generator.Range, error) {
	return f(ctx, n)
}

type marks struct {
	hw  uint64
	err error
}

func (m *marks) HighWater(context.Context) (uint64, error) { return m.hw, m.err }
func (m *marks) RaiseHighWater(_ context.Context, v uint64) error {
	if m.err != nil {
		return m.err
	}
	m.hw = max(m.hw, v)
	return nil
}

// TestMarked: each claimed range raises the mark to its end; a mark that
// cannot be written does not fail the claim; a failed claim marks nothing.
func TestMarked(t *testing.T) {
	next := uint64(0)
	src := rangeFunc(func(_ context.Context, n uint64) (generator.Range, error) {
		if n == 0 {
			return generator.Range{}, errors.New("no range")
		}
		r := generator.Range{Start: next, End: next + n}
		next += n
		return r, nil
	})
	m := &marks{}
	s := Marked(src, m, zaptest.NewLogger(t))
	for _, n := range []uint64{10, 5} {
		if _, err := s.ClaimRange(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	if m.hw != 15 {
		t.Fatalf("high water %d after ranges [0,10) and [10,15), want 15", m.hw)
	}
	if _, err := s.ClaimRange(context.Background(), 0); err == nil || m.hw != 15 {
		t.Fatalf("failed claim: %v, high water %d", err, m.hw)
	}
	m.err = errors.New("registry down")
	if r, err := s.ClaimRange(context.Background(), 3); err != nil || r.End != 18 {
		t.Fatalf("claim with the mark failing: %+v %v, want the range", r, err)
	}
}
