package redisstore

import (
	"context"
	"sync"
	"testing"
)

// TestKeyStore: data keys are created once across stores (SET NX), read
// back, and deleted.
func TestKeyStore(t *testing.T) {
	cfg := Config{Prefix: prefix()} // two stores on one registry
	a, b := open(t, cfg), open(t, cfg)
	ctx := context.Background()
	if v, err := a.GetKey(ctx, "dek:x"); err != nil || v != nil {
		t.Fatalf("absent: %q %v", v, err)
	}
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			v, err := s.PutKeyIfAbsent(ctx, "dek:x", []byte{byte('a' + i)})
			if err != nil {
				t.Error(err)
			}
			got[i] = string(v)
		}()
	}
	wg.Wait()
	for _, v := range got {
		if v != got[0] {
			t.Fatalf("two different keys won: %q", got)
		}
	}
	if err := b.DeleteKey(ctx, "dek:x"); err != nil {
		t.Fatal(err)
	}
	if v, _ := a.GetKey(ctx, "dek:x"); v != nil {
		t.Fatalf("deleted key still there: %q", v)
	}
}
