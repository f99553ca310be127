package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/harness/testpki"
)

// newCA makes a test CA (testpki) or fails t.
func newCA(t *testing.T) *testpki.CA {
	t.Helper()
	ca, err := testpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// leaf writes a certificate signed by ca with the given CN into dir.
func leaf(t *testing.T, ca *testpki.CA, dir, name, cn string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := ca.IssueFiles(dir, name, cn, usage)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// newReloader opens a Reloader on a server leaf with CN cn, signed by a new
// CA, in a temporary directory; it returns the CA and the leaf's files too.
func newReloader(t *testing.T, cn string) (r *Reloader, authority *testpki.CA, cert, key string) {
	t.Helper()
	authority = newCA(t)
	cert, key = leaf(t, authority, t.TempDir(), "server", cn, x509.ExtKeyUsageServerAuth)
	r, err := New(Config{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	return r, authority, cert, key
}

// rotate writes a new leaf of authority with CN cn over cert and key, as a
// certificate rotation rewrites the files in place.
func rotate(t *testing.T, authority *testpki.CA, cert, key, cn string) {
	t.Helper()
	c2, k2 := leaf(t, authority, t.TempDir(), "rotated", cn, x509.ExtKeyUsageServerAuth)
	for src, dst := range map[string]string{c2: cert, k2: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
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
	r, authority, cert, key := newReloader(t, "first")
	cfg, err := r.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(authority.PEM())
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
	rotate(t, authority, cert, key, "second")
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
	cert, key := leaf(t, authority, dir, "server", "srv", x509.ExtKeyUsageServerAuth)
	caFile := filepath.Join(dir, "ca.pem")
	_ = os.WriteFile(caFile, authority.PEM(), 0o600)
	r, err := New(Config{CertFile: cert, KeyFile: key, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := r.ServerConfig()
	addr := serve(t, cfg)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(authority.PEM())
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
	cc, ck := leaf(t, authority, dir, "client", "lb", x509.ExtKeyUsageClientAuth)
	pair, _ := tls.LoadX509KeyPair(cc, ck)
	if err := try([]tls.Certificate{pair}); err != nil {
		t.Fatalf("valid client certificate refused: %v", err)
	}
	other := newCA(t)
	oc, ok := leaf(t, other, dir, "intruder", "x", x509.ExtKeyUsageClientAuth)
	bad, _ := tls.LoadX509KeyPair(oc, ok)
	if err := try([]tls.Certificate{bad}); err == nil {
		t.Fatal("client certificate of an unknown CA accepted")
	}
}

// TestWatchReloadsOnSIGHUP: a SIGHUP makes the watch load the rewritten
// files (the ticker is too slow to be the cause), and stop ends the watch
// goroutine (goleak in TestMain).
func TestWatchReloadsOnSIGHUP(t *testing.T) {
	r, authority, cert, key := newReloader(t, "first")
	stop := r.Watch(time.Hour, zaptest.NewLogger(t))
	defer stop()
	rotate(t, authority, cert, key, "second")
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
