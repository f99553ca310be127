package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
	"github.com/idgen/idgen/shared/platform/sealer"
)

func TestKeygenCreatesOnceAndKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	var out bytes.Buffer
	if err := keygen([]string{"--dir", dir}, &out, &out); err != nil {
		t.Fatal(err)
	}
	first := map[string]string{}
	for _, f := range keygenFiles {
		p := filepath.Join(dir, f.name)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f.name, st.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		if len(strings.TrimSpace(string(b))) < 32 {
			t.Errorf("%s: %q is too short for a secret", f.name, b)
		}
		first[f.name] = string(b)
	}
	if _, err := sealer.LoadKeyFile(filepath.Join(dir, "metadata.key"), false); err != nil {
		t.Fatalf("metadata key does not load: %v", err)
	}
	if first["redis.password"] == first["zookeeper.password"] {
		t.Fatal("two secrets are equal")
	}
	out.Reset()
	if err := keygen([]string{"--dir", dir}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "created") {
		t.Fatalf("second run created files:\n%s", out.String())
	}
	for name, v := range first {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if string(b) != v {
			t.Errorf("%s changed on the second run", name)
		}
	}
	// The scraper's token verifies against the generated secret with only
	// the ops:read scope.
	tok, err := os.ReadFile(filepath.Join(dir, metricsTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{HS256SecretFile: filepath.Join(dir, "jwt-hs256.secret")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatalf("metrics token does not verify: %v", err)
	}
	if !p.Has("ops:read") || p.Has("ids:generate") {
		t.Fatalf("metrics token scopes: %+v", p)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".keygen-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestKeygenRejectsBrokenKeyFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "metadata.key"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := keygen([]string{"--dir", dir}, &out, &out); err == nil {
		t.Fatal("keygen accepted a broken metadata.key")
	}
	if err := keygen([]string{"--dir", dir, "extra"}, &out, &out); err == nil {
		t.Fatal("keygen accepted an extra argument")
	}
}

// TestKeygenAuditSigningKey: keygen creates the audit signing key (mode
// 0600) and its public half once, keeps both on later runs, and writes the
// public half again from the key when it is missing.
func TestKeygenAuditSigningKey(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := keygen([]string{"--dir", dir}, &out, &out); err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath := filepath.Join(dir, auditKeyFile), filepath.Join(dir, auditPubKeyFile)
	key, err := audit.LoadSigningKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v: want 0600", auditKeyFile, err, st.Mode().Perm())
	}
	pub, err := audit.LoadPublicKey(pubPath)
	if err != nil || !pub.Equal(key.Public()) {
		t.Fatalf("%s: %v, or not the key's public half", auditPubKeyFile, err)
	}
	before, _ := os.ReadFile(keyPath)
	if err := os.Remove(pubPath); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := keygen([]string{"--dir", dir}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(keyPath); !bytes.Equal(before, after) || !strings.Contains(out.String(), "kept    "+keyPath) {
		t.Fatalf("second run changed the signing key:\n%s", out.String())
	}
	if pub2, err := audit.LoadPublicKey(pubPath); err != nil || !pub2.Equal(pub) {
		t.Fatalf("public half written again: %v, or another key", err)
	}
	// A file that is not an Ed25519 key is refused, not kept silently.
	if err := os.WriteFile(keyPath, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := keygen([]string{"--dir", dir}, &out, &out); err == nil {
		t.Fatal("keygen accepted a broken audit signing key")
	}
}
