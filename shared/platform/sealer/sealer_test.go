package sealer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestSealOpenRotate(t *testing.T) {
	old, err := NewRing("k1", map[string][]byte{"k1": key(1)})
	if err != nil {
		t.Fatal(err)
	}
	id := []byte("0123456789abcdef")
	plain := []byte(`{"order":"A-17"}`)
	s1, err := old.Seal(id, plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s1, plain) {
		t.Fatal("plaintext visible in sealed value")
	}
	// Rotation: k2 is primary, k1 still opens old values.
	rotated, err := NewRing("k2", map[string][]byte{"k1": key(1), "k2": key(2)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := rotated.Open(id, s1)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open old value: %q %v", got, err)
	}
	s2, _ := rotated.Seal(id, plain)
	if _, err := old.Open(id, s2); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old ring opened a k2 value: %v", err)
	}
	// Bound to its ID; tampering detected.
	if _, err := rotated.Open([]byte("fedcba9876543210"), s1); !errors.Is(err, ErrOpen) {
		t.Fatalf("opened under another ID: %v", err)
	}
	s1[len(s1)-1] ^= 1
	if _, err := rotated.Open(id, s1); !errors.Is(err, ErrOpen) {
		t.Fatalf("tampered value opened: %v", err)
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0}, {1, 40, 'k'}} {
		if _, err := rotated.Open(id, bad); !errors.Is(err, ErrFormat) {
			t.Fatalf("Open(%v) = %v", bad, err)
		}
	}
}

func TestNewRingRejects(t *testing.T) {
	if _, err := NewRing("k1", map[string][]byte{"k1": key(1)[:16]}); !errors.Is(err, ErrKey) {
		t.Fatalf("short key: %v", err)
	}
	if _, err := NewRing("k9", map[string][]byte{"k1": key(1)}); !errors.Is(err, ErrKey) {
		t.Fatalf("missing primary: %v", err)
	}
}

func TestLoadKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metadata.key")
	if _, err := LoadKeyFile(path, false); err == nil {
		t.Fatal("missing file without create must fail")
	}
	r1, err := LoadKeyFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	r2, err := LoadKeyFile(path, true) // same key again, not a new one
	if err != nil {
		t.Fatal(err)
	}
	s, _ := r1.Seal([]byte("id"), []byte("x"))
	if got, err := r2.Open([]byte("id"), s); err != nil || string(got) != "x" {
		t.Fatalf("reloaded ring: %q %v", got, err)
	}
	if err := os.WriteFile(path, []byte("k1 nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path, false); !errors.Is(err, ErrKey) {
		t.Fatalf("bad hex: %v", err)
	}
}
