package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) ca {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return ca{c, k, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf writes a certificate signed by c with the given CN into dir.
func (c ca) leaf(t *testing.T, dir, name, cn string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &k.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return
}

// serve accepts TLS connections and completes their handshakes until the
// listener closes.
func serve(t *testing.T, cfg *tls.Config) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func TestHandshakeVersionsAndReload(t *testing.T) {
	dir := t.TempDir()
	authority := newCA(t)
	cert, key := authority.leaf(t, dir, "server", "first", x509.ExtKeyUsageServerAuth)
	r, err := New(Config{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := r.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(authority.pem)
	dial := func(c *tls.Config) (*tls.ConnectionState, error) {
		c.RootCAs, c.ServerName = roots, "localhost"
		conn, err := tls.Dial("tcp", addr, c)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st, nil
	}
	if st, err := dial(&tls.Config{}); err != nil || st.Version != tls.VersionTLS13 || st.PeerCertificates[0].Subject.CommonName != "first" {
		t.Fatalf("TLS 1.3 handshake: %v %+v", err, st)
	}
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}); err == nil {
		t.Fatal("CBC suite accepted")
	}
	// Rotate the files: an unchanged mtime is not reloaded; new handshakes get
	// the new certificate after ReloadIfChanged.
	if changed, err := r.ReloadIfChanged(); changed || err != nil {
		t.Fatalf("unchanged files reloaded: %v %v", changed, err)
	}
	time.Sleep(10 * time.Millisecond)
	c2, k2 := authority.leaf(t, t.TempDir(), "server2", "second", x509.ExtKeyUsageServerAuth)
	b1, _ := os.ReadFile(c2)
	b2, _ := os.ReadFile(k2)
	_ = os.WriteFile(cert, b1, 0o600)
	_ = os.WriteFile(key, b2, 0o600)
	if changed, err := r.ReloadIfChanged(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if st, err := dial(&tls.Config{}); err != nil || st.PeerCertificates[0].Subject.CommonName != "second" {
		t.Fatalf("after reload: %v", err)
	}
	// A broken file keeps the certificate in use.
	_ = os.WriteFile(cert, []byte("garbage"), 0o600)
	if err := r.Reload(); !errors.Is(err, ErrConfig) {
		t.Fatalf("broken reload: %v", err)
	}
	if st, err := dial(&tls.Config{}); err != nil || st.PeerCertificates[0].Subject.CommonName != "second" {
		t.Fatalf("after failed reload: %v", err)
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	authority := newCA(t)
	cert, key := authority.leaf(t, dir, "server", "srv", x509.ExtKeyUsageServerAuth)
	caFile := filepath.Join(dir, "ca.pem")
	_ = os.WriteFile(caFile, authority.pem, 0o600)
	r, err := New(Config{CertFile: cert, KeyFile: key, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := r.ServerConfig()
	addr := serve(t, cfg)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(authority.pem)
	try := func(certs []tls.Certificate) error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: certs})
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3 reports a refused client certificate on the first read.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && err.Error() != "EOF" {
			return err
		}
		return nil
	}
	if err := try(nil); err == nil {
		t.Fatal("no client certificate accepted")
	}
	cc, ck := authority.leaf(t, dir, "client", "lb", x509.ExtKeyUsageClientAuth)
	pair, _ := tls.LoadX509KeyPair(cc, ck)
	if err := try([]tls.Certificate{pair}); err != nil {
		t.Fatalf("valid client certificate refused: %v", err)
	}
	other := newCA(t)
	oc, ok := other.leaf(t, dir, "intruder", "x", x509.ExtKeyUsageClientAuth)
	bad, _ := tls.LoadX509KeyPair(oc, ok)
	if err := try([]tls.Certificate{bad}); err == nil {
		t.Fatal("client certificate of an unknown CA accepted")
	}
}

// TestWatchReloadsOnSIGHUP: a SIGHUP makes the watch load the rewritten
// files (the ticker is too slow to be the cause), and stop ends the watch
// goroutine (goleak in TestMain).
func TestWatchReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	authority := newCA(t)
	cert, key := authority.leaf(t, dir, "server", "first", x509.ExtKeyUsageServerAuth)
	r, err := New(Config{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	stop := r.Watch(time.Hour, zaptest.NewLogger(t))
	defer stop()
	c2, k2 := authority.leaf(t, t.TempDir(), "server2", "second", x509.ExtKeyUsageServerAuth)
	for src, dst := range map[string]string{c2: cert, k2: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaf, err := x509.ParseCertificate(r.Certificate().Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if leaf.Subject.CommonName == "second" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate still %q 5 s after SIGHUP", leaf.Subject.CommonName)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
