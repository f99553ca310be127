package zkharness

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/idgen/idgen/harness/testpki"
)

// tlsFiles are the PEM files of an Ensemble with TLS.
type tlsFiles struct {
	*testpki.Files
	// keyStore is the server key (PKCS#8) followed by its certificate: a
	// ZooKeeper "PEM" key store, which its PemReader wants in one file.
	keyStore string
}

// writeTLSFiles writes a CA, a server leaf, a client leaf (testpki) and the
// servers' key store to dir.
func writeTLSFiles(dir string) (*tlsFiles, error) {
	f, err := testpki.WriteFiles(dir, "zkharness")
	if err != nil {
		return nil, fmt.Errorf("zkharness: %w", err)
	}
	ks := filepath.Join(dir, "server-keystore.pem")
	if err := os.WriteFile(ks, append(f.Server.KeyPEM(), f.Server.CertPEM()...), 0o600); err != nil {
		return nil, fmt.Errorf("zkharness: write %s: %w", ks, err)
	}
	return &tlsFiles{Files: f, keyStore: ks}, nil
}
