// Package sealertest holds an in-memory key store for tests of sealer.Vault
// and of what seals with one: the KeyStore methods and nothing else.
package sealertest

import (
	"context"
	"maps"
	"slices"
	"sync"
)

// Keys is an in-memory sealer.KeyStore (GetKey, PutKeyIfAbsent,
// DeleteKey), safe for concurrent use. Its zero value is an empty store.
type Keys struct {
	mu sync.Mutex
	m  map[string][]byte
}

// GetKey is the value stored under name, nil when there is none.
func (k *Keys) GetKey(_ context.Context, name string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[name], nil
}

// PutKeyIfAbsent stores v under name unless a value exists, and returns
// the stored one.
func (k *Keys) PutKeyIfAbsent(_ context.Context, name string, v []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.m[name]; ok {
		return old, nil
	}
	if k.m == nil {
		k.m = map[string][]byte{}
	}
	k.m[name] = v
	return v, nil
}

// DeleteKey removes the value stored under name, if any.
func (k *Keys) DeleteKey(_ context.Context, name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, name)
	return nil
}

// Values is every value stored, in no particular order.
func (k *Keys) Values() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Collect(maps.Values(k.m))
}
