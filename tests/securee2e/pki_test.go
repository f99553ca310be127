package securee2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/idgen/idgen/shared/platform/auth"
)

// The JWT claims every idgen of these tests requires.
const (
	jwtIssuer   = "https://idp.securee2e.test"
	jwtAudience = "idgen-securee2e"
)

// ca is a certificate authority made by the test.
type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
	file string // PEM of cert
}

var serial atomic.Int64

func writePEM(t testing.TB, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newCA makes a self-signed CA and writes its certificate to dir/<name>.pem.
func newCA(t testing.TB, dir, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key, file: writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)}
}

func (c *ca) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// issue signs a leaf certificate for 127.0.0.1 (server, or client when
// client) and writes dir/<name>.crt and dir/<name>.key.
func (c *ca) issue(t testing.TB, dir, name string, client bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der), writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", keyDER)
}

// clientTLS is a client configuration trusting root, with the client
// certificate when certFile is set.
func clientTLS(t testing.TB, root *ca, certFile, keyFile string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: root.pool(), MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// signer is a JWT signing key: its private key file (for auth.Mint) and
// public key.
type signer struct {
	kid  string
	priv string
	pub  any
}

// newSigner makes an ES256 (ec) or RS256 key pair in dir.
func newSigner(t testing.TB, dir, kid string, ec bool) *signer {
	t.Helper()
	s := &signer{kid: kid, priv: filepath.Join(dir, "jwt-"+kid+".key")}
	if ec {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, s.priv, "EC PRIVATE KEY", der)
		s.pub = &k.PublicKey
	} else {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, s.priv, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
		s.pub = &k.PublicKey
	}
	return s
}

// writePublic writes the public key as PEM (--jwt-public-key).
func (s *signer) writePublic(t testing.TB, dir string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(s.pub)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, filepath.Join(dir, "jwt-"+s.kid+".pub"), "PUBLIC KEY", der)
}

// tokenOpts are the claims of a test token; zero values mean the good ones.
type tokenOpts struct {
	sub, scope, iss, aud string
	now                  time.Time
	ttl                  time.Duration
	noKid                bool
}

// token signs a token with s.
func (s *signer) token(t testing.TB, o tokenOpts) string {
	t.Helper()
	c := auth.MintConfig{PrivateKeyFile: s.priv, KeyID: s.kid, Subject: o.sub, Scope: o.scope, Issuer: o.iss, Audience: o.aud, Now: o.now, TTL: o.ttl}
	if c.Issuer == "" {
		c.Issuer = jwtIssuer
	}
	if c.Audience == "" {
		c.Audience = jwtAudience
	}
	if c.TTL == 0 {
		c.TTL = time.Hour
	}
	if o.noKid {
		c.KeyID = ""
	}
	tok, err := auth.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// writeJWKS replaces path with a JWKS of the signers' public keys, by
// rename (what a ConfigMap update or a deploy tool does).
func writeJWKS(t testing.TB, path string, signers ...*signer) {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, s := range signers {
		alg := "ES256"
		if _, ok := s.pub.(*rsa.PublicKey); ok {
			alg = "RS256"
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: s.pub, KeyID: s.kid, Algorithm: alg, Use: "sig"})
	}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, path, b)
}

func writeFileAtomic(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
