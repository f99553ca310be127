package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/idgen/idgen/shared/sealer"
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
	_, err := sealer.LoadKeyFile(filepath.Join(*dir, "metadata.key"), false)
	return err
}

// writeNew writes a file that must not exist yet, through a temporary file
// and a rename, so a crash never leaves a half-written secret.
func writeNew(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keygen-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Link fails when another keygen won the race: its file is kept.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
