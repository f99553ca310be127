package client_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/idgen/idgen/client"
	"github.com/idgen/idgen/harness/testpki"
	"github.com/idgen/idgen/shared/platform/auth"
)

// TestAuth runs the client against an instance with JWT authentication
// and mTLS: scopes are enforced (a token without ids:commit gets
// ErrForbidden), a missing or foreign token gets ErrUnauthorized, and the
// TokenSource is asked before every request.
func TestAuth(t *testing.T) {
	idgenBinary(t)
	dir := t.TempDir()
	pki, err := testpki.WriteFiles(filepath.Join(dir, "pki"), "client")
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "jwt.secret")
	other := filepath.Join(dir, "other.secret")
	for _, f := range []string{secret, other} {
		if err := os.WriteFile(f, []byte(randomSecret(t)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	in := startIdgen(t, serveOpts{auth: true, tls: pki.ClientConfig(), args: []string{
		"--jwt-hs256-secret-file", secret,
		"--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey, "--tls-client-ca", pki.CAFile,
	}})
	mint := func(secretFile, scope string) client.StaticToken {
		tok, err := auth.Mint(auth.MintConfig{HS256SecretFile: secretFile, Subject: "payments", Scope: scope})
		if err != nil {
			t.Fatal(err)
		}
		return client.StaticToken(tok)
	}
	ctx := testContext(t)
	withToken := func(ts client.TokenSource) *client.Client {
		return newClient(t, client.Config{Endpoints: []string{in.URL}, TLS: pki.ClientConfig(), Token: ts})
	}

	issuer := &countingSource{next: mint(secret, "ids:generate ids:read")}
	c := withToken(issuer)
	g, err := c.Generate(ctx, client.GenerateRequest{Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(ctx, g.ID)
	if err != nil || r.Subject != "payments" || string(r.Metadata) != `{"k":"v"}` {
		t.Fatalf("Get = %+v, %v", r, err)
	}
	if n := issuer.n.Load(); n != 2 {
		t.Fatalf("the TokenSource was asked %d times for 2 requests", n)
	}

	tests := []struct {
		name string
		c    *client.Client
		want error
	}{
		{"token without the scope", c, client.ErrForbidden},
		{"no token", withToken(nil), client.ErrUnauthorized},
		{"token of another key", withToken(mint(other, "ids:commit")), client.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Commit(ctx, g.ID)
			var e *client.Error
			if !errors.Is(err, tt.want) || !errors.As(err, &e) || e.RequestID == "" {
				t.Fatalf("Commit = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("commit with the scope", func(t *testing.T) {
		if tr, err := withToken(mint(secret, "ids:commit")).Commit(ctx, g.ID); err != nil || tr.Outcome != client.OutcomeApplied {
			t.Fatalf("Commit = %+v, %v", tr, err)
		}
	})
	t.Run("a failing TokenSource ends the call", func(t *testing.T) {
		boom := errors.New("vault sealed")
		src := &countingSource{err: boom}
		if _, err := withToken(src).Generate(ctx, client.GenerateRequest{}); !errors.Is(err, boom) || src.n.Load() != 1 {
			t.Fatalf("Generate = %v after %d token requests, want %v after 1", err, src.n.Load(), boom)
		}
	})
	t.Run("a server certificate of another CA is refused unretried", func(t *testing.T) {
		cfg := pki.ClientConfig()
		cfg.RootCAs = x509.NewCertPool()
		c := newClient(t, client.Config{Endpoints: []string{in.URL}, TLS: cfg, Token: mint(secret, "ids:generate")})
		_, err := c.Generate(ctx, client.GenerateRequest{})
		var cerr *tls.CertificateVerificationError
		if !errors.As(err, &cerr) {
			t.Fatalf("Generate = %v, want a certificate verification error", err)
		}
	})
}

// countingSource counts the tokens asked of it.
type countingSource struct {
	next client.TokenSource
	err  error
	n    atomic.Int32
}

func (s *countingSource) Token(ctx context.Context) (string, error) {
	s.n.Add(1)
	if s.err != nil {
		return "", s.err
	}
	return s.next.Token(ctx)
}

func randomSecret(t *testing.T) string {
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}
