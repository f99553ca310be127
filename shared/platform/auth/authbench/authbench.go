// Package authbench holds the benchmarks of shared/platform/auth's Verifier, so that
// `go test -bench Verify ./shared/auth/` and `make bench`
// (tests/cmd/idgen-bench, through testing.Benchmark) measure the same code.
//
// Every case verifies one token with a key loaded once, as the service
// does: "first use" is the signature and claims check of a token the
// verified-token cache does not hold (a new caller, or a cache disabled),
// "cached" is every later request with the same token, serial and on
// GOMAXPROCS goroutines, and "unverified" is the baseline: decoding the
// token's claims without any check, the floor of any JWT scheme.
package authbench

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/idgen/idgen/shared/platform/auth"
)

// Case is one algorithm: a token and two verifiers of it.
type Case struct {
	Name     string
	Token    string
	Cached   *auth.Verifier // the service's configuration
	Uncached *auth.Verifier // CacheSize < 0: every Verify checks the signature
}

// Scope is the scope claim of the benchmark tokens.
const Scope = auth.ScopeGenerate + " " + auth.ScopeRead

// Cases writes key files to dir and returns HS256, RS256, ES256, EdDSA and
// ES256 selected by kid from a JWKS of three keys.
func Cases(dir string) ([]Case, error) {
	secret := filepath.Join(dir, "hs256.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		return nil, err
	}
	var cases []Case
	add := func(name string, vc auth.Config, mc auth.MintConfig) error {
		mc.Subject, mc.Scope = "svc", Scope
		tok, err := auth.Mint(mc)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		c := Case{Name: name, Token: tok}
		if c.Cached, err = auth.NewVerifier(vc); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		vc.CacheSize = -1
		if c.Uncached, err = auth.NewVerifier(vc); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		cases = append(cases, c)
		return nil
	}
	if err := add("HS256", auth.Config{HS256SecretFile: secret}, auth.MintConfig{HS256SecretFile: secret}); err != nil {
		return nil, err
	}
	var jwks jose.JSONWebKeySet
	var jwksPriv string
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		priv, pub, pubKey, err := writePair(dir, alg)
		if err != nil {
			return nil, err
		}
		if err := add(alg, auth.Config{PublicKeyFile: pub}, auth.MintConfig{PrivateKeyFile: priv}); err != nil {
			return nil, err
		}
		jwks.Keys = append(jwks.Keys, jose.JSONWebKey{Key: pubKey, KeyID: "kid-" + alg, Use: "sig"})
		if alg == "ES256" {
			jwksPriv = priv
		}
	}
	b, err := json.Marshal(jwks)
	if err != nil {
		return nil, err
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, b, 0o600); err != nil {
		return nil, err
	}
	if err := add("ES256 (JWKS, 3 keys)", auth.Config{PublicKeyFile: jwksFile}, auth.MintConfig{PrivateKeyFile: jwksPriv, KeyID: "kid-ES256"}); err != nil {
		return nil, err
	}
	return cases, nil
}

// writePair writes a private and a public key PEM file for alg.
func writePair(dir, alg string) (priv, pub string, pubKey any, err error) {
	var der []byte
	typ := "PRIVATE KEY"
	switch alg {
	case "RS256":
		k, e := rsa.GenerateKey(rand.Reader, 2048)
		if e != nil {
			return "", "", nil, e
		}
		der, typ, pubKey = x509.MarshalPKCS1PrivateKey(k), "RSA PRIVATE KEY", &k.PublicKey
	case "ES256":
		k, e := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if e != nil {
			return "", "", nil, e
		}
		if der, err = x509.MarshalECPrivateKey(k); err != nil {
			return "", "", nil, err
		}
		typ, pubKey = "EC PRIVATE KEY", &k.PublicKey
	case "EdDSA":
		p, k, e := ed25519.GenerateKey(rand.Reader)
		if e != nil {
			return "", "", nil, e
		}
		if der, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			return "", "", nil, err
		}
		pubKey = p
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pubKey)
	if err != nil {
		return "", "", nil, err
	}
	priv, pub = filepath.Join(dir, alg+".key"), filepath.Join(dir, alg+".pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return "", "", nil, err
	}
	return priv, pub, pubKey, nil
}

// FirstUse measures a full verification: signature, claims, principal.
func FirstUse(c Case) func(*testing.B) { return serial(c.Uncached, c.Token) }

// Cached measures a request whose token was verified before.
func Cached(c Case) func(*testing.B) { return serial(c.Cached, c.Token) }

// CachedParallel is Cached on GOMAXPROCS goroutines sharing one token (the
// cache's lock is the contended part).
func CachedParallel(c Case) func(*testing.B) {
	return func(b *testing.B) {
		if _, err := c.Cached.Verify(c.Token); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Cached.Verify(c.Token); err != nil {
					panic(err) // b.Fatal must not be called off the benchmark goroutine
				}
			}
		})
	}
}

// Unverified is the baseline: the claims of the token decoded without any
// check (never do this in a service).
func Unverified(c Case) func(*testing.B) {
	p := jwt.NewParser()
	return func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var cl jwt.MapClaims
			if _, _, err := p.ParseUnverified(c.Token, &cl); err != nil {
				b.Fatal(err)
			}
			if s, _ := cl["scope"].(string); s != Scope {
				b.Fatalf("scope %q", s)
			}
		}
	}
}

func serial(v *auth.Verifier, token string) func(*testing.B) {
	return func(b *testing.B) {
		if _, err := v.Verify(token); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			p, err := v.Verify(token)
			if err != nil || !p.Has(auth.ScopeGenerate) {
				b.Fatalf("Verify = %+v, %v", p, err)
			}
		}
	}
}
