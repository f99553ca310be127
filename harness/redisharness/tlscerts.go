package redisharness

import (
	"bytes"
	"crypto"
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

// certLifetime is long enough for any chaos run; the files never outlive
// the working directory by design.
const certLifetime = 30 * 24 * time.Hour

// tlsFiles are the PEM files of a topology with TLS.
type tlsFiles struct {
	caPEM      string // CA certificate; the servers' trust store too
	serverCert string // server certificate, also the client certificate of replication links
	serverKey  string // server key, PKCS#8
	clientCert string // client certificate
	clientKey  string // client key, PKCS#8

	roots  *x509.CertPool
	client tls.Certificate
}

// paths returns the files a client needs; all empty for nil.
func (f *tlsFiles) paths() (caPEM, clientCertPEM, clientKeyPEM string) {
	if f == nil {
		return "", "", ""
	}
	return f.caPEM, f.clientCert, f.clientKey
}

// clientConfig is the harness's own TLS client config: trusts the CA and
// presents the client certificate.
func (f *tlsFiles) clientConfig() *tls.Config {
	return &tls.Config{
		RootCAs:      f.roots,
		Certificates: []tls.Certificate{f.client},
		ServerName:   "127.0.0.1", // every process listens there; the certificate has it as an IP SAN
		MinVersion:   tls.VersionTLS12,
	}
}

// writeTLSFiles generates a CA, a server certificate for the loopback
// addresses and a client certificate, all ECDSA P-256, and writes them to
// dir. Keys are unencrypted PKCS#8 "PRIVATE KEY" blocks, which OpenSSL
// (Redis) and crypto/tls both read.
func writeTLSFiles(dir string) (*tlsFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("redisharness: tls dir: %w", err)
	}
	now := time.Now().Add(-time.Hour) // tolerate clock skew
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("redisharness: ca key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "redisharness test CA"},
		NotBefore:             now,
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, caCert, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	leaf := func(cn string, usage ...x509.ExtKeyUsage) *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn},
			NotBefore:   now,
			NotAfter:    now.Add(certLifetime),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: usage,
			DNSNames:    []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
	}
	serverKey, serverDER, err := issue(leaf("redisharness server", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth), caCert, caKey)
	if err != nil {
		return nil, err
	}
	clientKey, clientDER, err := issue(leaf("redisharness client", x509.ExtKeyUsageClientAuth), caCert, caKey)
	if err != nil {
		return nil, err
	}

	f := &tlsFiles{
		caPEM:      filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client-key.pem"),
	}
	files := []struct {
		path   string
		blocks []*pem.Block
	}{
		{f.caPEM, []*pem.Block{{Type: "CERTIFICATE", Bytes: caDER}}},
		{f.serverCert, []*pem.Block{{Type: "CERTIFICATE", Bytes: serverDER}}},
		{f.serverKey, []*pem.Block{{Type: "PRIVATE KEY", Bytes: serverKey}}},
		{f.clientCert, []*pem.Block{{Type: "CERTIFICATE", Bytes: clientDER}}},
		{f.clientKey, []*pem.Block{{Type: "PRIVATE KEY", Bytes: clientKey}}},
	}
	for _, file := range files {
		var b bytes.Buffer
		for _, blk := range file.blocks {
			if err := pem.Encode(&b, blk); err != nil {
				return nil, fmt.Errorf("redisharness: encode %s: %w", file.path, err)
			}
		}
		if err := os.WriteFile(file.path, b.Bytes(), 0o600); err != nil {
			return nil, fmt.Errorf("redisharness: write %s: %w", file.path, err)
		}
	}
	f.roots = x509.NewCertPool()
	f.roots.AddCert(caCert)
	if f.client, err = tls.LoadX509KeyPair(f.clientCert, f.clientKey); err != nil {
		return nil, fmt.Errorf("redisharness: load client certificate: %w", err)
	}
	return f, nil
}

// issue makes a key for tmpl and has the CA sign it; it returns the PKCS#8
// key and the certificate, both DER.
func issue(tmpl, ca *x509.Certificate, caKey crypto.Signer) (keyDER, certDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("redisharness: key for %s: %w", tmpl.Subject.CommonName, err)
	}
	if keyDER, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
		return nil, nil, fmt.Errorf("redisharness: key for %s: %w", tmpl.Subject.CommonName, err)
	}
	certDER, _, err = sign(tmpl, ca, &key.PublicKey, caKey)
	return keyDER, certDER, err
}

// sign creates the certificate tmpl for pub signed by parent's key, with a
// random 128-bit serial so certificates of different runs never collide.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("redisharness: serial: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("redisharness: sign %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("redisharness: parse %s: %w", tmpl.Subject.CommonName, err)
	}
	return der, cert, nil
}
