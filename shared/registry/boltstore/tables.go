package boltstore

import (
	"bytes"
	"context"

	"go.etcd.io/bbolt"

	"github.com/idgen/idgen/shared/registry/internal/kvregistry"
)

// buckets holds each table of the registry (kvregistry) in a bucket of
// its own, keys as kvregistry lays them out.
var buckets = [...][]byte{
	kvregistry.Meta:          []byte("meta"),
	kvregistry.Records:       []byte("ids"),
	kvregistry.Idem:          []byte("idem"),
	kvregistry.Deadlines:     []byte("deadlines"),
	kvregistry.IdemTime:      []byte("idemtime"),
	kvregistry.Keys:          []byte("keys"),
	kvregistry.AuditMarks:    []byte("auditmarks"),
	kvregistry.AuditMarkTime: []byte("auditmarktime"),
	kvregistry.Claims:        []byte("claims"),
	kvregistry.Releases:      []byte("releases"),
	kvregistry.StateMaps:     []byte("statemaps"),
}

// kv is a bbolt transaction as the registry's tables. bbolt keeps the key
// and value slices of a Put until the commit, as kvregistry.Tx allows.
type kv struct{ tx *bbolt.Tx }

var _ kvregistry.Tx = kv{}

func (k kv) Get(t kvregistry.Table, key []byte) ([]byte, error) {
	return k.tx.Bucket(buckets[t]).Get(key), nil
}

func (k kv) Has(t kvregistry.Table, key []byte) (bool, error) {
	return k.tx.Bucket(buckets[t]).Get(key) != nil, nil
}

func (k kv) Put(t kvregistry.Table, key, value []byte) error {
	return k.tx.Bucket(buckets[t]).Put(key, value)
}

func (k kv) Delete(t kvregistry.Table, key []byte) error {
	return k.tx.Bucket(buckets[t]).Delete(key)
}

func (k kv) Scan(t kvregistry.Table, end []byte, fn func(key []byte) bool) error {
	c := k.tx.Bucket(buckets[t]).Cursor()
	for key, _ := c.First(); key != nil && bytes.Compare(key, end) < 0; key, _ = c.Next() {
		if !fn(key) {
			break
		}
	}
	return nil
}

// write runs fn in the next group-committed write transaction (a lazy
// write too: bbolt has no commit without its fsyncs that survives a crash
// intact).
func (s *Store) write(ctx context.Context, _ bool, fn func(kvregistry.Tx) error) error {
	return kvregistry.Do(ctx, s.c, false, fn)
}

// read runs fn in a read transaction of the open file. Errors: ErrClosed.
func (s *Store) read(fn func(kvregistry.Reader) error) error {
	return s.view(func(tx *bbolt.Tx) error { return fn(kv{tx}) })
}
