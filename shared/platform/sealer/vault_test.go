package sealer

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/idgen/idgen/shared/platform/sealer/sealertest"
)

var _ KeyStore = (*sealertest.Keys)(nil)

func TestVaultPerSubjectErase(t *testing.T) {
	ctx := context.Background()
	ring, _ := NewRing("k1", map[string][]byte{"k1": key(1)})
	store := &sealertest.Keys{}
	a, b := NewVault(ring, store), NewVault(ring, store) // two instances
	id := []byte("0123456789abcdef")
	sa, err := a.Seal(ctx, "alice", id, []byte("alice-secret"))
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := a.Seal(ctx, "bob", id, []byte("bob-secret"))
	if got, err := b.Open(ctx, "alice", id, sa); err != nil || string(got) != "alice-secret" {
		t.Fatalf("other instance opens: %q %v", got, err)
	}
	if _, err := b.Open(ctx, "bob", id, sa); err == nil {
		t.Fatal("alice's metadata opened with bob's key")
	}
	for _, v := range store.Values() {
		if bytes.Contains(v, []byte("secret")) {
			t.Fatal("plaintext in the key store")
		}
	}
	if err := b.Erase(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// Erased everywhere at once for reads, including the instance that
	// sealed it (it must not answer from a cache).
	for _, v := range []*Vault{a, b} {
		if _, err := v.Open(ctx, "alice", id, sa); !errors.Is(err, ErrErased) {
			t.Fatalf("after erase: %v", err)
		}
	}
	if got, err := a.Open(ctx, "bob", id, sb); err != nil || string(got) != "bob-secret" {
		t.Fatalf("bob affected by alice's erasure: %q %v", got, err)
	}
}

func TestVaultConcurrentCreateOneKey(t *testing.T) {
	ctx := context.Background()
	ring, _ := NewRing("k1", map[string][]byte{"k1": key(1)})
	store := &sealertest.Keys{}
	id := []byte("id")
	var wg sync.WaitGroup
	sealed := make([][]byte, 16)
	for i := range sealed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := NewVault(ring, store).Seal(ctx, "carol", id, []byte("x"))
			if err != nil {
				t.Error(err)
			}
			sealed[i] = s
		}()
	}
	wg.Wait()
	v := NewVault(ring, store)
	for i, s := range sealed {
		if _, err := v.Open(ctx, "carol", id, s); err != nil {
			t.Fatalf("value %d sealed under a losing key: %v", i, err)
		}
	}
}
