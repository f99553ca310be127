// Package sealer encrypts ID metadata at rest with AES-256-GCM before it
// leaves the process for a store (bbolt file, Redis).
//
// Invariants: a sealed value names the key that sealed it (key ID), so keys
// can rotate: new values use the primary key, old values open with any key
// still in the ring. The ID is the additional data, so a sealed value moved
// to another ID's record does not open. Nonces are random (96 bits); at the
// volumes of one key's life (far below 2^32 seals) collisions are negligible.
package sealer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Sentinel errors.
var (
	ErrUnknownKey = errors.New("sealer: sealed with a key that is not in the ring")
	ErrOpen       = errors.New("sealer: cannot open sealed value (wrong key, wrong ID or tampered)")
	ErrFormat     = errors.New("sealer: not a sealed value")
	ErrKey        = errors.New("sealer: bad key")
)

const format = 1

// Ring holds the keys: the primary seals, all open. Safe for concurrent use
// after construction.
type Ring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

// NewRing builds a ring from key ID → 32-byte key; primary must be among them.
func NewRing(primary string, keys map[string][]byte) (*Ring, error) {
	r := &Ring{primary: primary, aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, k := range keys {
		if id == "" || len(id) > 64 {
			return nil, fmt.Errorf("%w: key ID %q must be 1..64 bytes", ErrKey, id)
		}
		if len(k) != 32 {
			return nil, fmt.Errorf("%w: key %q is %d bytes, want 32 (AES-256)", ErrKey, id, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		r.aeads[id] = aead
	}
	if _, ok := r.aeads[primary]; !ok {
		return nil, fmt.Errorf("%w: primary key %q not in the ring", ErrKey, primary)
	}
	return r, nil
}

// Seal encrypts plain for the record of id (its 16 bytes as additional data).
func (r *Ring) Seal(id, plain []byte) ([]byte, error) {
	aead := r.aeads[r.primary]
	out := make([]byte, 0, 2+len(r.primary)+aead.NonceSize()+len(plain)+aead.Overhead())
	out = append(out, format, byte(len(r.primary)))
	out = append(out, r.primary...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("sealer: nonce: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, id), nil
}

// Open decrypts what Seal wrote for the same id.
func (r *Ring) Open(id, sealed []byte) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != format || len(sealed) < 2+int(sealed[1]) {
		return nil, ErrFormat
	}
	kid := string(sealed[2 : 2+int(sealed[1])])
	aead, ok := r.aeads[kid]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	}
	rest := sealed[2+len(kid):]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrFormat
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], id)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// LoadKeyFile reads a key file: one key per line, "<key-id> <64 hex digits>";
// the first line is the primary. With create set and no file, it writes a
// fresh random key (mode 0600) — the embedded mode's default.
func LoadKeyFile(path string, create bool) (*Ring, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		line := "k1 " + hex.EncodeToString(k) + "\n"
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			return nil, fmt.Errorf("sealer: write %s: %w", path, err)
		}
		b = []byte(line)
	} else if err != nil {
		return nil, fmt.Errorf("sealer: %w", err)
	}
	keys := map[string][]byte{}
	primary := ""
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: %s line %d: want \"<key-id> <hex key>\"", ErrKey, path, n+1)
		}
		k, err := hex.DecodeString(f[1])
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: key is not hex", ErrKey, path, n+1)
		}
		if primary == "" {
			primary = f[0]
		}
		keys[f[0]] = k
	}
	if primary == "" {
		return nil, fmt.Errorf("%w: %s holds no key", ErrKey, path)
	}
	return NewRing(primary, keys)
}
