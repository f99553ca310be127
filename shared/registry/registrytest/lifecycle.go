package registrytest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// highWater: the mark starts at 0, is raised exactly (also above 2^53,
// where a double rounds) and is never lowered.
func highWater(t *testing.T, s Store) {
	ctx := context.Background()
	if hw, err := s.HighWater(ctx); err != nil || hw != 0 {
		t.Fatalf("fresh: %d, %v", hw, err)
	}
	for _, tt := range []struct{ raise, want uint64 }{
		{1 << 40, 1 << 40},
		{1<<53 + 1, 1<<53 + 1},
		{1<<53 + 3, 1<<53 + 3},
		{1 << 41, 1<<53 + 3}, // never lowered
		{idcodec.MaxCounter, idcodec.MaxCounter},
	} {
		if err := s.RaiseHighWater(ctx, tt.raise); err != nil {
			t.Fatal(err)
		}
		if hw, err := s.HighWater(ctx); err != nil || hw != tt.want {
			t.Fatalf("after raising to %d: %d, %v; want %d", tt.raise, hw, err, tt.want)
		}
	}
}

// KeyStore: a data key is absent (nil), then created once whatever the
// number of racing writers, spread over stores (instances of one
// registry): all get the winner's value; then it is deleted. Backends with
// several instances per registry call it with several.
func KeyStore(t *testing.T, stores ...Store) {
	ctx := context.Background()
	if v, err := stores[0].GetKey(ctx, "dek:a"); err != nil || v != nil {
		t.Fatalf("absent key: %q, %v", v, err)
	}
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() {
			v, err := stores[i%len(stores)].PutKeyIfAbsent(ctx, "dek:a", []byte{byte('a' + i)})
			if err != nil {
				t.Error(err)
			}
			got[i] = string(v)
		})
	}
	wg.Wait()
	for _, v := range got {
		if v != got[0] || v == "" {
			t.Fatalf("racing puts: %q, want one value for all", got)
		}
	}
	last := stores[len(stores)-1]
	if v, err := last.GetKey(ctx, "dek:a"); err != nil || string(v) != got[0] {
		t.Fatalf("read back: %q, %v; want %q", v, err, got[0])
	}
	if err := last.DeleteKey(ctx, "dek:a"); err != nil {
		t.Fatal(err)
	}
	if v, err := stores[0].GetKey(ctx, "dek:a"); err != nil || v != nil {
		t.Fatalf("deleted key: %q, %v", v, err)
	}
}

// closeFlushesAndRefuses: registrations racing with Close are either
// acknowledged or refused with ErrClosed; after Close every method
// refuses with ErrClosed and a second Close returns nil; a store opened on
// the same directory holds every acknowledged registration.
func closeFlushesAndRefuses(t *testing.T, open opener) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	var wg sync.WaitGroup
	acked := make(chan idcodec.ID, 200)
	for i := range uint64(200) {
		wg.Go(func() {
			if _, err := s.Register(ctx, Pending(ID(i)), idemTTL, NowMS); err == nil {
				acked <- ID(i)
			} else if !errors.Is(err, registry.ErrClosed) {
				t.Error(err)
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(acked)
	calls := []struct {
		name string
		call func() error
	}{
		{"Register", func() error { _, err := s.Register(ctx, Pending(ID(9999)), idemTTL, NowMS); return err }},
		{"Get", func() error { _, err := s.Get(ctx, ID(0)); return err }},
		{"Transition", func() error {
			_, _, err := s.Transition(ctx, ID(0), registry.Change{To: registry.Committed, NowMS: NowMS})
			return err
		}},
		{"Expired", func() error { _, err := s.Expired(ctx, NowMS, 1); return err }},
		{"PurgeIdempotency", func() error { _, err := s.PurgeIdempotency(ctx, NowMS, 1); return err }},
		{"RaiseHighWater", func() error { return s.RaiseHighWater(ctx, 1) }},
		{"HighWater", func() error { _, err := s.HighWater(ctx); return err }},
		{"GetKey", func() error { _, err := s.GetKey(ctx, "k"); return err }},
		{"PutKeyIfAbsent", func() error { _, err := s.PutKeyIfAbsent(ctx, "k", []byte("v")); return err }},
		{"DeleteKey", func() error { return s.DeleteKey(ctx, "k") }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, registry.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", c.name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s2 := open(t, dir)
	if err := s2.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for x := range acked {
		n++
		if _, err := s2.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s lost: %v", x, err)
		}
	}
	t.Logf("%d of 200 registrations acknowledged before Close", n)
}

// Ranges is what a backend that hands out counter ranges has beyond Store
// (the embedded backends; Redis mode takes its ranges from ZooKeeper).
type Ranges interface {
	generator.RangeSource
	Counter() (uint64, error)
}

// rangesSurviveReopen, for a backend that is a Ranges: ranges claimed
// concurrently never overlap, within one open or across a close and
// reopen, and Counter is the end of the last one.
func rangesSurviveReopen(t *testing.T, open opener) {
	dir := t.TempDir()
	probe := open(t, dir)
	_, ok := probe.(Ranges)
	if err := probe.Close(); err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skip("the backend hands out no ranges")
	}
	ctx := context.Background()
	var (
		mu  sync.Mutex
		all []generator.Range
		end uint64
	)
	for range 3 {
		s := open(t, dir)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for range 10 {
					r, err := s.(Ranges).ClaimRange(ctx, uint64(100+g))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					all, end = append(all, r), max(end, r.End)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if a, b := all[i], all[j]; a.Start < b.End && b.Start < a.End {
				t.Fatalf("ranges overlap: %+v %+v", a, b)
			}
		}
	}
	if len(all) != 240 {
		t.Fatalf("%d ranges, want 240", len(all))
	}
	if c, err := open(t, dir).(Ranges).Counter(); err != nil || c != end {
		t.Fatalf("Counter = %d, %v; want %d", c, err, end)
	}
}
