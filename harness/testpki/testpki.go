// Package testpki makes the TLS material of tests and test servers: a
// certificate authority, leaf certificates it signs, and the PEM files
// servers and clients read.
//
// Invariants:
//   - Every key is ECDSA P-256, written as an unencrypted PKCS#8 "PRIVATE
//     KEY" block: crypto/tls, OpenSSL (Redis) and ZooKeeper's PemReader all
//     read that form.
//   - Every leaf is valid for localhost, 127.0.0.1 and ::1, so any loopback
//     server presents a certificate a client accepts by name or address.
//   - Certificates are valid from an hour ago (clock skew, a JVM's clock
//     included) for Lifetime, and carry random 128-bit serials, so the
//     certificates of different runs never collide.
//   - Files are written with mode 0600; nothing is ever read back from a
//     path the caller did not name.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Lifetime is how long a certificate stays valid: long enough for any chaos
// run; the files never outlive the directory of the run that made them.
const Lifetime = 30 * 24 * time.Hour

// CA is a self-signed certificate authority.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key signs the leaves.
	Key *ecdsa.PrivateKey
}

// NewCA makes a CA whose subject is cn.
func NewCA(cn string) (*CA, error) {
	cert, key, err := create(cn, nil, func(tmpl *x509.Certificate) {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		tmpl.BasicConstraintsValid = true
		tmpl.IsCA = true
	})
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// PEM is the CA certificate as a PEM "CERTIFICATE" block.
func (ca *CA) PEM() []byte { return certPEM(ca.Cert) }

// Pool is a certificate pool holding the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// WriteFile writes the CA certificate (PEM) to path.
func (ca *CA) WriteFile(path string) error { return writeFile(path, ca.PEM()) }

// Leaf is a key and the certificate a CA signed for it.
type Leaf struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Issue makes a key and a certificate for cn signed by ca, for the loopback
// names, with the extended key usages given (none: any usage).
func (ca *CA) Issue(cn string, usage ...x509.ExtKeyUsage) (*Leaf, error) {
	cert, key, err := create(cn, ca, func(tmpl *x509.Certificate) {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = usage
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	})
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key}, nil
}

// IssueFiles is Issue writing the leaf to dir (Leaf.WriteFiles); it
// returns the two paths.
func (ca *CA) IssueFiles(dir, name, cn string, usage ...x509.ExtKeyUsage) (certFile, keyFile string, err error) {
	l, err := ca.Issue(cn, usage...)
	if err != nil {
		return "", "", err
	}
	return l.WriteFiles(dir, name)
}

// WriteFiles writes the leaf to dir as <name>.pem (certificate) and
// <name>-key.pem (key) and returns the two paths.
func (l *Leaf) WriteFiles(dir, name string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := writeFile(certFile, l.CertPEM()); err != nil {
		return "", "", err
	}
	if err := writeFile(keyFile, l.KeyPEM()); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// CertPEM is the certificate as a PEM "CERTIFICATE" block.
func (l *Leaf) CertPEM() []byte { return certPEM(l.Cert) }

// KeyPEM is the key as a PEM "PRIVATE KEY" block (PKCS#8).
func (l *Leaf) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		// An ECDSA P-256 key always marshals.
		panic(fmt.Sprintf("testpki: marshal key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TLSCertificate is the leaf as crypto/tls presents it.
func (l *Leaf) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
}

// create makes a key and a certificate for cn, valid from an hour ago for
// Lifetime with a random 128-bit serial, filled in by fill and signed by
// parent (nil: self-signed).
func create(cn string, parent *CA, fill func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: key for %s: %w", cn, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: serial: %w", err)
	}
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: now, NotAfter: now.Add(Lifetime)}
	fill(tmpl)
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: sign %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: parse %s: %w", cn, err)
	}
	return cert, key, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("testpki: write %s: %w", path, err)
	}
	return nil
}
