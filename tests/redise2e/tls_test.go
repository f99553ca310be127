package redise2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/testpki"
)

// TestTLSAndACL: Redis speaks TLS only and knows an ACL user (the default
// user has a password of its own). idgen connects with the CA, a client
// certificate and the ACL user, its password from a file (one instance) or
// IDGEN_REDIS_PASSWORD (the other). A wrong password or a wrong CA makes
// idgen exit non-zero at start with a message that says why, without
// printing the password.
func TestTLSAndACL(t *testing.T) {
	const (
		user     = "idgen-svc"
		password = "acl-Pa55word-for-idgen"
		wrong    = "not-the-Pa55word"
	)
	srv := redisharness.StartStandaloneT(t, redisharness.Options{TLS: true, ACLUser: user, ACLPassword: password, Password: "default-user-secret"})
	caPEM, certPEM, keyPEM := srv.TLSFiles()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "redis.password")
	wrongFile := filepath.Join(dir, "wrong.password")
	for p, v := range map[string]string{pwFile: password + "\n", wrongFile: wrong + "\n"} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsArgs := []string{"--redis-addr", srv.Addr(), "--redis-tls-ca", caPEM, "--redis-tls-cert", certPEM, "--redis-tls-key", keyPEM, "--redis-username", user}
	d := newDeployment(t, tlsArgs...)
	a := d.start("idgen-a", nil, "--redis-password-file", pwFile)
	b := d.start("idgen-b", []string{"IDGEN_REDIS_PASSWORD=" + password})
	insts := []*instance{a, b}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	l := newLedger()
	for i := range 20 {
		count := 0
		if i%5 == 0 {
			count = 100
		}
		if r := generate(ctx, d.client, insts[i%2], i%2, count, genOpts{}); !l.add(r) {
			t.Fatalf("over TLS + ACL: %s", r.String())
		}
	}
	l.checkUnique(t)
	ids, from, _ := l.snapshot()
	for _, j := range sampleIdx(len(ids), 50) {
		if status, v, err := getID(ctx, d.client, insts[1-from[j]], ids[j]); err != nil || status != http.StatusOK || v.State != "pending" {
			t.Fatalf("GET /ids/%s on the other instance: %d %+v %v", ids[j], status, v, err)
		}
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	admin := rawClient(t, srv.Addr(), redisOpts{username: user, password: password, tls: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	checkRegistered(t, admin, ids, "IDs issued over TLS")
	t.Logf("%d IDs over TLS with ACL user %s (password file and IDGEN_REDIS_PASSWORD)", len(ids), user)

	// Wrong password: exit non-zero, saying authentication failed.
	t0 := time.Now()
	code, stderr := d.runToExit("idgen-wrong-password", nil, 60*time.Second, "--redis-password-file", wrongFile)
	last := lastLine(stderr)
	t.Logf("wrong password: exit %d after %v: %s", code, time.Since(t0).Round(time.Millisecond), last)
	if code == 0 {
		t.Errorf("wrong Redis password: exit code 0")
	}
	if !strings.Contains(last, "WRONGPASS") && !strings.Contains(strings.ToLower(last), "auth") {
		t.Errorf("wrong Redis password: last line %q does not mention WRONGPASS or auth", last)
	}
	if strings.Contains(stderr, wrong) || strings.Contains(stderr, password) {
		t.Errorf("stderr shows a Redis password")
	}

	// Wrong CA: exit non-zero, saying the certificate is not trusted.
	otherCA := writeOtherCA(t, dir)
	d2 := newDeployment(t, "--redis-addr", srv.Addr(), "--redis-tls-ca", otherCA, "--redis-tls-cert", certPEM, "--redis-tls-key", keyPEM, "--redis-username", user)
	t0 = time.Now()
	code, stderr = d2.runToExit("idgen-wrong-ca", nil, 60*time.Second, "--redis-password-file", pwFile)
	last = lastLine(stderr)
	t.Logf("wrong CA: exit %d after %v: %s", code, time.Since(t0).Round(time.Millisecond), last)
	if code == 0 {
		t.Errorf("wrong Redis CA: exit code 0")
	}
	if !strings.Contains(strings.ToLower(last), "certificate") {
		t.Errorf("wrong Redis CA: last line %q does not mention the certificate", last)
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// writeOtherCA writes a CA certificate (testpki) that signed nothing the
// server presents.
func writeOtherCA(t testing.TB, dir string) string {
	t.Helper()
	ca, err := testpki.NewCA("redise2e unrelated CA")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "other-ca.pem")
	if err := ca.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}
