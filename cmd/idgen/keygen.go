package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
	"github.com/idgen/idgen/shared/platform/sealer"
)

// Files `idgen keygen` writes into its directory: the development
// credentials of a container stack (docker-compose), generated on first start
// so no secret is ever committed.
var keygenFiles = []struct {
	name string
	gen  func() (string, error)
}{
	{"redis.password", func() (string, error) { return randomHex(24) }},
	{"zookeeper.password", func() (string, error) { return randomHex(24) }},
	{"jwt-hs256.secret", func() (string, error) { return randomHex(32) }},
	{"metadata.key", func() (string, error) {
		k, err := randomHex(32)
		return "k1 " + k, err
	}},
}

// keygen creates each missing credential file (mode 0600) and keeps the ones
// present: running it again, or on every `docker-compose up`, changes nothing.
func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("idgen keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "/secrets", "directory for the credential files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	for _, f := range keygenFiles {
		path := filepath.Join(*dir, f.name)
		if _, err := os.Stat(path); err == nil {
			fmt.Fprintf(stdout, "kept    %s\n", path)
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		v, err := f.gen()
		if err != nil {
			return err
		}
		if err := writeNew(path, v+"\n"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s\n", path)
	}
	// The key file must load as the service loads it.
	if _, err := sealer.LoadKeyFile(filepath.Join(*dir, "metadata.key"), false); err != nil {
		return err
	}
	if err := auditSigningKey(*dir, stdout); err != nil {
		return err
	}
	// A read-only token for the Prometheus scraper (ops:read is the only
	// scope), minted afresh on every run so it never expires on a stack that
	// is restarted now and then; readable by the scraper's own user.
	tok, err := auth.Mint(auth.MintConfig{
		HS256SecretFile: filepath.Join(*dir, "jwt-hs256.secret"),
		Subject:         "prometheus", Scope: "ops:read", TTL: 90 * 24 * time.Hour,
	})
	if err != nil {
		return err
	}
	path := filepath.Join(*dir, metricsTokenFile)
	if err := writeReplace(path, tok+"\n", 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "minted  %s (scope ops:read, 90 days)\n", path)
	return nil
}

// Files of the audit log's checkpoint key: the private key the service
// signs with (--audit-signing-key) and its public half, which
// `idgen audit verify --public-key` reads.
const (
	auditKeyFile    = "audit-signing.key"
	auditPubKeyFile = "audit-signing.pub"
)

// auditSigningKey creates the audit signing key (PEM PKCS#8 Ed25519, mode
// 0600) when it is missing and keeps it otherwise, and writes its public
// half (PEM, mode 0644) when that is missing or not the key's.
func auditSigningKey(dir string, stdout io.Writer) error {
	path := filepath.Join(dir, auditKeyFile)
	switch _, err := os.Stat(path); {
	case err == nil:
		fmt.Fprintf(stdout, "kept    %s\n", path)
	case errors.Is(err, os.ErrNotExist):
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		b, err := audit.MarshalSigningKey(key)
		if err != nil {
			return err
		}
		if err := writeNew(path, string(b)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s\n", path)
	default:
		return err
	}
	// Read back: the file kept, or the one another keygen won the race with.
	key, err := audit.LoadSigningKey(path)
	if err != nil {
		return err
	}
	pub, err := audit.MarshalPublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	pubPath := filepath.Join(dir, auditPubKeyFile)
	if b, err := os.ReadFile(pubPath); err == nil && bytes.Equal(b, pub) {
		fmt.Fprintf(stdout, "kept    %s\n", pubPath)
		return nil
	}
	if err := writeReplace(pubPath, string(pub), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s\n", pubPath)
	return nil
}

// metricsTokenFile is where Prometheus reads its bearer token
// (infra/monitoring/prometheus.yml: secrets/idgen-metrics.token).
const metricsTokenFile = "idgen-metrics.token"

// writeReplace writes a file through a temporary file and a rename.
func writeReplace(path, content string, mode os.FileMode) error {
	tmp, err := writeTemp(path, content, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	return os.Rename(tmp, path)
}

// writeNew writes a file that must not exist yet, through a temporary file
// and a rename, so a crash never leaves a half-written secret.
func writeNew(path, content string) error {
	tmp, err := writeTemp(path, content, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// Link fails when another keygen won the race: its file is kept.
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// writeTemp writes content, synced, to a new temporary file beside path.
func writeTemp(path, content string, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".keygen-*")
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
