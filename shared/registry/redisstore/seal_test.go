package redisstore

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSealRuns holds seal's 'M' runs to the plain reading of the marks:
// every marked field once, in order of bucket index and offset, each run
// as long as the marked fields are consecutive (across the two words of a
// bucket's set too), the first 'M' at ARGV[3].
func TestSealRuns(t *testing.T) {
	type mk struct{ b, off int }
	cases := [][]mk{
		{{1, 0}},
		{{1, 127}},
		{{1, 63}, {1, 64}},
		{{1, 62}, {1, 63}, {1, 64}, {1, 65}, {1, 0}},
		{{3, 5}, {1, 5}, {3, 5}, {1, 6}},
	}
	all := make([]mk, 0, 128)
	for off := range 128 {
		all = append(all, mk{5, off})
	}
	cases = append(cases, all)
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var ms []mk
		for range r.IntN(300) {
			ms = append(ms, mk{1 + 2*r.IntN(4), r.IntN(128)})
		}
		cases = append(cases, ms)
	}
	for i, ms := range cases {
		c := newCall(false, 1000)
		c.args = append(c.args, "S", 1, "0", []byte("v"))
		for _, m := range ms {
			c.mark(m.b, m.off)
		}
		c.seal()
		// the reference: sorted unique marks, cut where not consecutive
		want := []any{}
		sorted := slices.Clone(ms)
		slices.SortFunc(sorted, func(x, y mk) int {
			if x.b != y.b {
				return x.b - y.b
			}
			return x.off - y.off
		})
		sorted = slices.Compact(sorted)
		for j := 0; j < len(sorted); {
			k := j + 1
			for k < len(sorted) && sorted[k].b == sorted[j].b && sorted[k].off == sorted[k-1].off+1 {
				k++
			}
			want = append(want, "M", sorted[j].b, sorted[j].off, k-j)
			j = k
		}
		got := c.args[7:]
		if !slices.Equal(got, want) {
			t.Fatalf("case %d (%v): runs %v, want %v", i, ms, got, want)
		}
		wantStart := 0
		if len(want) > 0 {
			wantStart = 8
		}
		if c.args[2] != wantStart {
			t.Fatalf("case %d: ARGV[3] = %v, want %d", i, c.args[2], wantStart)
		}
		c.reset()
		if len(c.marks) != 0 || c.args[2] != 0 {
			t.Fatalf("case %d: reset left marks %v, ARGV[3] %v", i, c.marks, c.args[2])
		}
	}
}
