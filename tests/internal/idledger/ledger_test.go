package idledger

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
)

func id(t testing.TB, f idcodec.Fields) idcodec.ID {
	t.Helper()
	v, err := idcodec.Compose(f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAddFindsDuplicatesByShardAndCounter(t *testing.T) {
	a := id(t, idcodec.Fields{TimestampMS: 1, Worker: 1, Shard: 0, Counter: 7})
	cases := []struct {
		name string
		next idcodec.ID
		dup  bool
	}{
		{"the same ID", a, true},
		{"other time and worker, same counter", id(t, idcodec.Fields{TimestampMS: 2, Worker: 2, Shard: 0, Counter: 7}), true},
		{"other shard", id(t, idcodec.Fields{TimestampMS: 1, Worker: 1, Shard: 1, Counter: 7}), false},
		{"other counter", id(t, idcodec.Fields{TimestampMS: 1, Worker: 1, Shard: 0, Counter: 8}), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := New[string](0)
			if d := l.Add("first", a); len(d) != 0 {
				t.Fatalf("first Add: duplicates %v", d)
			}
			d := l.Add("second", c.next)
			if got := len(d) == 1; got != c.dup {
				t.Fatalf("duplicate = %v, want %v", got, c.dup)
			}
			if c.dup {
				if d[0].First.ID != a || d[0].First.Meta != "first" || d[0].Meta != "second" {
					t.Errorf("duplicate %+v", d[0])
				}
				if l.Len() != 1 || l.Duplicates() != 1 {
					t.Errorf("Len %d Duplicates %d, want 1 1", l.Len(), l.Duplicates())
				}
			} else if l.Len() != 2 || l.Duplicates() != 0 {
				t.Errorf("Len %d Duplicates %d, want 2 0", l.Len(), l.Duplicates())
			}
		})
	}
}

func TestUpdateAndNewest(t *testing.T) {
	l := New[int](0)
	var ids []idcodec.ID
	for c := range uint64(5) {
		ids = append(ids, id(t, idcodec.Fields{TimestampMS: 1, Counter: c}))
	}
	l.Add(0, ids...)
	if !l.Update(ids[1], func(m *int) { *m = 1 }) || !l.Update(ids[3], func(m *int) { *m = 1 }) {
		t.Fatal("Update of a recorded ID reported false")
	}
	other := id(t, idcodec.Fields{TimestampMS: 9, Counter: 1}) // same (shard, counter) as ids[1]
	if l.Update(other, func(m *int) { *m = 2 }) {
		t.Error("Update of an ID never recorded reported true")
	}
	got := l.Newest(5, func(r Record[int]) bool { return r.Meta == 1 })
	if len(got) != 2 || got[0] != ids[3] || got[1] != ids[1] {
		t.Errorf("Newest = %v, want [%s %s]", got, ids[3], ids[1])
	}
	if all := l.IDs(); len(all) != 5 || all[0] != ids[0] || all[4] != ids[4] {
		t.Errorf("IDs = %v", all)
	}
}

func TestAddConcurrent(t *testing.T) {
	l := New[int](0)
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for c := range uint64(each) {
				// Every worker adds the same counters: all but one of each
				// are duplicates.
				l.Add(w, id(t, idcodec.Fields{TimestampMS: 1, Worker: uint16(w), Counter: c}))
			}
		})
	}
	wg.Wait()
	if l.Len() != each || l.Duplicates() != (workers-1)*each {
		t.Errorf("Len %d Duplicates %d, want %d %d", l.Len(), l.Duplicates(), each, (workers-1)*each)
	}
}

func TestParallelStopsFeedingWhenCtxEnds(t *testing.T) {
	var n atomic.Int64
	Parallel(context.Background(), 4, 100, func(int) { n.Add(1) })
	if n.Load() != 100 {
		t.Fatalf("%d calls, want 100", n.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.Store(0)
	Parallel(ctx, 1, 100, func(i int) {
		if i == 9 {
			cancel()
		}
		n.Add(1)
	})
	if got := n.Load(); got < 10 || got > 11 {
		t.Errorf("%d calls after the cancel at the 10th, want 10 or 11", got)
	}
}
