package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFilesHandshake: the written files load with crypto/tls and make
// a mutual-TLS handshake on loopback, the server checking the client leaf
// against ca.pem as a server's trust store does; the client side is
// ClientConfig and, read back from the files, LoadClientConfig.
func TestWriteFilesHandshake(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	f, err := WriteFiles(dir, "testpki")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.CAFile, f.ServerCert, f.ServerKey, f.ClientCert, f.ClientKey} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || filepath.Dir(p) != dir {
			t.Errorf("%s: mode %v, want 0600 in %s", p, fi.Mode().Perm(), dir)
		}
	}
	key, err := os.ReadFile(f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(key); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("server key is not a PKCS#8 PRIVATE KEY block: %q", key)
	}
	srv, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(f.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	trust := x509.NewCertPool()
	if !trust.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: trust})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				peer <- err.Error()
			} else {
				peer <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
			}
			c.Close()
		}
	}()
	loaded, err := LoadClientConfig(f.CAFile, f.ClientCert, f.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{{"ClientConfig", f.ClientConfig()}, {"LoadClientConfig", loaded}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", ln.Addr().String(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Handshake(); err != nil {
				t.Fatal(err)
			}
			if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "testpki server" {
				t.Errorf("server presented %q", cn)
			}
			if cn := <-peer; cn != "testpki client" {
				t.Errorf("server saw client %q", cn)
			}
		})
	}
}

// TestLoadClientConfig: without a certificate file the config presents
// none; unreadable or empty files are errors.
func TestLoadClientConfig(t *testing.T) {
	f, err := WriteFiles(t.TempDir(), "load")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadClientConfig(f.CAFile, "", "")
	if err != nil || len(cfg.Certificates) != 0 || cfg.RootCAs == nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("CA only: %+v, %v", cfg, err)
	}
	for _, tc := range []struct {
		name, ca, cert, key, want string
	}{
		{"no CA file", filepath.Join(t.TempDir(), "none.pem"), "", "", "read CA"},
		{"CA file without a certificate", f.ClientKey, "", "", "no certificate"},
		{"key not matching", f.CAFile, f.ClientCert, f.ServerKey, "load client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadClientConfig(tc.ca, tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestLeafNamesAndUsage: a leaf verifies for every loopback name and only
// for the usages it was issued with; a leaf of another CA does not verify.
func TestLeafNamesAndUsage(t *testing.T) {
	ca, err := NewCA("names CA")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue("c", x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := client.Cert.VerifyHostname(name); err != nil {
			t.Errorf("VerifyHostname(%s): %v", name, err)
		}
	}
	verify := func(l *Leaf, roots *CA, usage x509.ExtKeyUsage) error {
		_, err := l.Cert.Verify(x509.VerifyOptions{Roots: roots.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	if err := verify(client, ca, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("client leaf for client auth: %v", err)
	}
	var invalid x509.CertificateInvalidError
	if err := verify(client, ca, x509.ExtKeyUsageServerAuth); !errors.As(err, &invalid) {
		t.Errorf("client leaf for server auth: %v, want CertificateInvalidError", err)
	}
	other, err := NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	if err := verify(client, other, x509.ExtKeyUsageClientAuth); !errors.As(err, &unknown) {
		t.Errorf("leaf against another CA: %v, want UnknownAuthorityError", err)
	}
	if client.Cert.SerialNumber.Cmp(ca.Cert.SerialNumber) == 0 {
		t.Error("the CA and its leaf share a serial")
	}
	dir := t.TempDir()
	cert, key, err := ca.IssueFiles(dir, "srv", "s", x509.ExtKeyUsageServerAuth)
	if err != nil {
		t.Fatal(err)
	}
	if cert != filepath.Join(dir, "srv.pem") || key != filepath.Join(dir, "srv-key.pem") {
		t.Errorf("IssueFiles wrote %s and %s", cert, key)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf == nil || pair.Leaf.Subject.CommonName != "s" {
		t.Errorf("IssueFiles' pair holds %+v", pair.Leaf)
	}
}
