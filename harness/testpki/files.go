package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
)

// Files are the PEM files of a test topology: a CA, one server leaf and one
// client leaf, all in one directory.
type Files struct {
	// CA is the authority that signed both leaves.
	CA *CA
	// Server is the servers' leaf, usable for server and client auth (a
	// replication link presents it as a client).
	Server *Leaf
	// Client is the client leaf (client auth only).
	Client *Leaf

	// CAFile is ca.pem, the CA certificate: the servers' trust store too.
	CAFile string
	// ServerCert and ServerKey are server.pem and server-key.pem.
	ServerCert, ServerKey string
	// ClientCert and ClientKey are client.pem and client-key.pem.
	ClientCert, ClientKey string
}

// WriteFiles makes a CA and the server and client leaves, with subjects
// "<name> test CA", "<name> server" and "<name> client", and writes them to
// dir, which it creates (mode 0700) if missing.
func WriteFiles(dir, name string) (*Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	ca, err := NewCA(name + " test CA")
	if err != nil {
		return nil, err
	}
	f := &Files{CA: ca, CAFile: filepath.Join(dir, "ca.pem")}
	if err := ca.WriteFile(f.CAFile); err != nil {
		return nil, err
	}
	if f.Server, err = ca.Issue(name+" server", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	if f.ServerCert, f.ServerKey, err = f.Server.WriteFiles(dir, "server"); err != nil {
		return nil, err
	}
	if f.Client, err = ca.Issue(name+" client", x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	if f.ClientCert, f.ClientKey, err = f.Client.WriteFiles(dir, "client"); err != nil {
		return nil, err
	}
	return f, nil
}

// ClientConfig trusts the CA, presents the client leaf and expects a
// server at 127.0.0.1 (an IP SAN of every leaf), TLS 1.2 or newer.
func (f *Files) ClientConfig() *tls.Config {
	return &tls.Config{
		RootCAs:      f.CA.Pool(),
		Certificates: []tls.Certificate{f.Client.TLSCertificate()},
		ServerName:   "127.0.0.1",
		MinVersion:   tls.VersionTLS12,
	}
}

// LoadClientConfig reads the files a harness's TLSFiles names, as a client
// of that harness would: caFile as its only trusted authority and, when
// certFile is not "", certFile and keyFile as its certificate; TLS 1.2 or
// newer. The server name comes from the address dialed. Errors: a file
// that cannot be read, a caFile with no PEM certificate, a key pair that
// does not load.
func LoadClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("testpki: read CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("testpki: no certificate in %s", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("testpki: load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
