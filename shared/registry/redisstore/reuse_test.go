package redisstore

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// TestRegisterReusesArrays: Register's pooled arrays (the values' first
// bytes in the op, the keys, fields and values of a batch kept with it)
// and the flusher's kept call never mix one registration's records with
// another's. Goroutines register batches of every kind at once: one
// record, a few, more than a pooled op keeps; values that fit the op's
// buffer and values that outgrow it; values shared by a batch and values
// of their own. Every record then reads back exactly, and the kept call
// holds nothing of a finished flush.
func TestRegisterReusesArrays(t *testing.T) {
	s := open(t, Config{})
	ctx := context.Background()
	sizes := []int{2, 1, 7, maxKeptRecords + 100, 300, 1}
	const workers, rounds = 4, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	issued := make([][]registry.Record, workers)
	for w := range workers {
		wg.Go(func() {
			next := uint64(w) * 1_000_000
			for r := range rounds {
				n := sizes[(w+r)%len(sizes)]
				ids := make([]idcodec.ID, n)
				for i := range ids {
					ids[i] = id(next)
					next++
				}
				iss := pending(ids...)
				for i := range iss.Records {
					rec := &iss.Records[i]
					switch (r + i) % 4 {
					case 1: // a value of its own that fits the op's buffer
						rec.Subject = "s" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
						rec.History[0].Actor = rec.Subject
					case 2: // a value longer than the op's buffer
						rec.Metadata = []byte("metadata of record " + strconv.Itoa(i) + " of worker " + strconv.Itoa(w) + ", round " + strconv.Itoa(r) + ": past 64 bytes")
					}
				}
				if _, err := s.Register(ctx, iss, 60_000, testMS); err != nil {
					errs <- err
					return
				}
				issued[w] = append(issued[w], iss.Records...)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checked := 0
	for _, recs := range issued {
		for _, want := range recs {
			got, err := s.Get(ctx, want.ID)
			if err != nil {
				t.Fatalf("Get %s: %v", want.ID, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Get %s:\n got %+v\nwant %+v", want.ID, got, want)
			}
			checked++
		}
	}
	if want := workers * rounds; checked < want {
		t.Fatalf("checked %d records, want at least %d", checked, want)
	}
	// Every Register has returned, so the flusher is idle and its last
	// flush happened before the last answer.
	c := s.single
	if c == nil {
		t.Fatal("the flusher keeps no call")
	}
	if len(c.args) != 3 || len(c.keys) != 0 || len(c.parts) != 0 || len(c.marks) != 0 || len(c.index) != 0 || c.sealed {
		t.Fatalf("the kept call holds a finished flush: %d args, %d keys, %d parts, %d marks, %d index entries, sealed %v",
			len(c.args), len(c.keys), len(c.parts), len(c.marks), len(c.index), c.sealed)
	}
	for i, a := range c.args[:cap(c.args)] {
		if i >= 3 && a != nil {
			t.Fatalf("the kept call's argument %d still refers to %T", i, a)
		}
	}
}
