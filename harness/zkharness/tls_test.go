package zkharness

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/idgen/idgen/harness/testpki"
)

// tlsDialer returns a zk.Dialer for the ensemble's secure ports, with the
// client certificate when withCert.
func tlsDialer(t *testing.T, e *Ensemble, withCert bool) func(network, addr string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	caFile, certFile, keyFile := e.TLSFiles()
	if !withCert {
		certFile, keyFile = "", ""
	}
	cfg, err := testpki.LoadClientConfig(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return func(network, addr string, timeout time.Duration) (net.Conn, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
		return d.Dial(network, addr)
	}
}

func TestTLS(t *testing.T) {
	e := StartT(t, Options{TLS: true})
	if len(e.TLSAddrs()) != 1 || e.TLSAddrs()[0] == e.Addrs()[0] {
		t.Fatalf("TLSAddrs = %v, Addrs = %v", e.TLSAddrs(), e.Addrs())
	}
	for _, tc := range []struct {
		name     string
		withCert bool
	}{{"client-cert", true}, {"no-client-cert", false}} {
		t.Run(tc.name, func(t *testing.T) {
			conn := connect(t, e.TLSAddrs(), tlsDialer(t, e, tc.withCert))
			path := "/tls-" + tc.name
			mustCreate(t, conn, path, "secret")
			mustGet(t, conn, path, "secret")
		})
	}
	// The certificate authenticates the session (x509 scheme): a node only
	// its subject may read is readable with it and refused without it.
	certConn := connect(t, e.TLSAddrs(), tlsDialer(t, e, true))
	acl := zk.ACL{Perms: zk.PermAll, Scheme: "x509", ID: "CN=zkharness client"}
	if _, err := certConn.Create("/x509-only", []byte("mine"), 0, []zk.ACL{acl}); err != nil {
		t.Fatalf("create with x509 ACL: %v", err)
	}
	mustGet(t, certConn, "/x509-only", "mine")
	anon := connect(t, e.TLSAddrs(), tlsDialer(t, e, false))
	if _, _, err := anon.Get("/x509-only"); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("get x509-only node without a certificate: %v, want ErrNoAuth", err)
	}

	// The plain port of the same server sees the data too.
	mustGet(t, connect(t, e.Addrs(), nil), "/tls-client-cert", "secret")

	// A client that does not trust the CA is refused by the handshake.
	conn, err := tls.Dial("tcp", e.TLSAddrs()[0], &tls.Config{MinVersion: tls.VersionTLS12})
	if err == nil {
		conn.Close()
		t.Fatalf("TLS handshake without the CA succeeded")
	}
}

func TestTLSFilesEmptyWithoutTLS(t *testing.T) {
	e := &Ensemble{}
	if ca, cert, key := e.TLSFiles(); ca != "" || cert != "" || key != "" || e.TLSAddrs() != nil {
		t.Fatalf("TLS files without TLS: %q %q %q %v", ca, cert, key, e.TLSAddrs())
	}
}
