package sealer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrErased means the subject's data key was deleted: its metadata is gone
// for good (crypto-shredding) while the ID records stay.
var ErrErased = errors.New("sealer: the subject's data key was erased")

// KeyStore keeps wrapped per-subject data keys next to the records (the
// registry backend). GetKey answers nil, nil for an absent key.
type KeyStore interface {
	GetKey(ctx context.Context, name string) ([]byte, error)
	// PutKeyIfAbsent stores v unless a value exists, and returns the stored one.
	PutKeyIfAbsent(ctx context.Context, name string, v []byte) ([]byte, error)
	DeleteKey(ctx context.Context, name string) error
}

// sealCacheTTL bounds how long a data key is reused for sealing without
// asking the store; opening always asks, so an erasure made by another
// instance takes effect at once for reads.
const sealCacheTTL = 10 * time.Second

// Vault seals metadata with a per-subject data key (AES-256-GCM), itself
// sealed by the master Ring (envelope encryption): rotating the master key
// rewraps nothing old, and erasing one subject's data key makes all of its
// metadata unreadable without touching the ID records. Safe for concurrent
// use.
type Vault struct {
	ring  *Ring
	store KeyStore
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKey
}

type cachedKey struct {
	ring *Ring
	at   time.Time
}

// NewVault returns a vault over ring (the master keys) and store.
func NewVault(ring *Ring, store KeyStore) *Vault {
	return &Vault{ring: ring, store: store, now: time.Now, cache: map[string]cachedKey{}}
}

func dekName(subject string) string { return "dek:" + subject }

// dataKey returns the subject's data key as a one-key Ring; create makes it
// when absent (sealing), otherwise absence is ErrErased (opening).
func (v *Vault) dataKey(ctx context.Context, subject string, create bool) (*Ring, error) {
	if create {
		v.mu.Lock()
		c, ok := v.cache[subject]
		v.mu.Unlock()
		if ok && v.now().Sub(c.at) < sealCacheTTL {
			return c.ring, nil
		}
	}
	wrapped, err := v.store.GetKey(ctx, dekName(subject))
	if err != nil {
		return nil, fmt.Errorf("sealer: data key of %q: %w", subject, err)
	}
	if wrapped == nil {
		if !create {
			return nil, ErrErased
		}
		dek := make([]byte, 32)
		if _, err := rand.Read(dek); err != nil {
			return nil, err
		}
		mine, err := v.ring.Seal([]byte(dekName(subject)), dek)
		if err != nil {
			return nil, err
		}
		// Two instances may race to create it: the stored one wins.
		if wrapped, err = v.store.PutKeyIfAbsent(ctx, dekName(subject), mine); err != nil {
			return nil, fmt.Errorf("sealer: store data key of %q: %w", subject, err)
		}
	}
	dek, err := v.ring.Open([]byte(dekName(subject)), wrapped)
	if err != nil {
		return nil, fmt.Errorf("sealer: unwrap data key of %q: %w", subject, err)
	}
	r, err := NewRing("dek", map[string][]byte{"dek": dek})
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.cache[subject] = cachedKey{ring: r, at: v.now()}
	v.mu.Unlock()
	return r, nil
}

// Seal encrypts plain for the record id of subject.
func (v *Vault) Seal(ctx context.Context, subject string, id, plain []byte) ([]byte, error) {
	r, err := v.dataKey(ctx, subject, true)
	if err != nil {
		return nil, err
	}
	return r.Seal(id, plain)
}

// Open decrypts what Seal wrote; ErrErased after Erase.
func (v *Vault) Open(ctx context.Context, subject string, id, sealed []byte) ([]byte, error) {
	r, err := v.dataKey(ctx, subject, false)
	if err != nil {
		return nil, err
	}
	return r.Open(id, sealed)
}

// Erase deletes the subject's data key: its metadata becomes unreadable
// everywhere (crypto-shredding). Erasing twice is fine.
func (v *Vault) Erase(ctx context.Context, subject string) error {
	if err := v.store.DeleteKey(ctx, dekName(subject)); err != nil {
		return fmt.Errorf("sealer: erase %q: %w", subject, err)
	}
	v.mu.Lock()
	delete(v.cache, subject)
	v.mu.Unlock()
	return nil
}
