package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

func write(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemFile(t *testing.T, typ string, der []byte) string {
	return write(t, "k.pem", pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

type keyPair struct {
	priv, pub string // files
	pubKey    any
}

func rsaPair(t *testing.T) keyPair {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return keyPair{pemFile(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)), pemFile(t, "PUBLIC KEY", pub), &k.PublicKey}
}

func ecPair(t *testing.T) keyPair {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k)
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return keyPair{pemFile(t, "EC PRIVATE KEY", der), pemFile(t, "PUBLIC KEY", pub), &k.PublicKey}
}

func edPair(t *testing.T) keyPair {
	pubK, k, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pub, _ := x509.MarshalPKIXPublicKey(pubK)
	return keyPair{pemFile(t, "PRIVATE KEY", der), pemFile(t, "PUBLIC KEY", pub), pubK}
}

func TestVerifyTable(t *testing.T) {
	secret := write(t, "secret", []byte(strings.Repeat("s", 40)))
	otherSecret := write(t, "secret2", []byte(strings.Repeat("x", 40)))
	rsaK := rsaPair(t)
	now := time.Now()
	mint := func(c MintConfig) string {
		t.Helper()
		if c.Subject == "" {
			c.Subject = "svc-a"
		}
		if c.Scope == "" {
			c.Scope = "ids:generate ids:read"
		}
		tok, err := Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	hsV, err := NewVerifier(Config{HS256SecretFile: secret, Issuer: "iss-1", Audience: "idgen"})
	if err != nil {
		t.Fatal(err)
	}
	rsaV, err := NewVerifier(Config{PublicKeyFile: rsaK.pub})
	if err != nil {
		t.Fatal(err)
	}
	good := MintConfig{HS256SecretFile: secret, Issuer: "iss-1", Audience: "idgen"}
	with := func(f func(*MintConfig)) MintConfig { c := good; f(&c); return c }
	// "none" algorithm and HS256 signed with the RSA public key (algorithm
	// confusion) must both be refused by the RSA verifier.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "exp": now.Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	pubPEM, _ := os.ReadFile(rsaK.pub)
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": now.Add(time.Hour).Unix()}).SignedString(pubPEM)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "iss": "iss-1", "aud": "idgen"}).SignedString([]byte(strings.Repeat("s", 40)))
	noSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "iss": "iss-1", "aud": "idgen"}).SignedString([]byte(strings.Repeat("s", 40)))

	tests := []struct {
		name  string
		v     *Verifier
		token string
		want  error
	}{
		{"valid", hsV, mint(good), nil},
		{"none", hsV, "", ErrNoToken},
		{"expired", hsV, mint(with(func(c *MintConfig) { c.Now = now.Add(-2 * time.Hour) })), ErrInvalidToken},
		{"not yet valid", hsV, mint(with(func(c *MintConfig) { c.Now = now.Add(time.Hour) })), ErrInvalidToken},
		{"within leeway", hsV, mint(with(func(c *MintConfig) { c.Now = now.Add(10 * time.Second) })), nil},
		{"wrong aud", hsV, mint(with(func(c *MintConfig) { c.Audience = "other" })), ErrInvalidToken},
		{"wrong iss", hsV, mint(with(func(c *MintConfig) { c.Issuer = "evil" })), ErrInvalidToken},
		{"bad signature", hsV, mint(with(func(c *MintConfig) { c.HS256SecretFile = otherSecret })), ErrInvalidToken},
		{"garbage", hsV, "a.b.c", ErrInvalidToken},
		{"no exp", hsV, noExp, ErrInvalidToken},
		{"no sub", hsV, noSub, ErrInvalidToken},
		{"alg none", rsaV, none, ErrInvalidToken},
		{"alg confusion HS256 with RSA public key", rsaV, confused, ErrInvalidToken},
		{"RSA valid", rsaV, mint(MintConfig{PrivateKeyFile: rsaK.priv}), nil},
		{"HS256 against RSA verifier", rsaV, mint(good), ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.v.Verify(tt.token)
			if tt.want == nil {
				if err != nil || p.Subject != "svc-a" || !p.Has(ScopeGenerate) || p.Has(ScopeCommit) {
					t.Fatalf("Verify = %+v, %v", p, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || p.Subject != "" {
				t.Fatalf("Verify = %+v, %v; want %v", p, err, tt.want)
			}
		})
	}
}

func TestKeyTypes(t *testing.T) {
	for name, kp := range map[string]keyPair{"ecdsa": ecPair(t), "ed25519": edPair(t)} {
		t.Run(name, func(t *testing.T) {
			v, err := NewVerifier(Config{PublicKeyFile: kp.pub})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := Mint(MintConfig{PrivateKeyFile: kp.priv, Subject: "s", Scope: "ops:read"})
			if err != nil {
				t.Fatal(err)
			}
			if p, err := v.Verify(tok); err != nil || !p.Has(ScopeOpsRead) {
				t.Fatalf("%+v %v", p, err)
			}
		})
	}
}

func TestJWKS(t *testing.T) {
	a, b := rsaPair(t), ecPair(t)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: a.pubKey, KeyID: "a", Algorithm: "RS256", Use: "sig"},
		{Key: b.pubKey, KeyID: "b", Algorithm: "ES256", Use: "sig"},
	}}
	raw, _ := json.Marshal(set)
	v, err := NewVerifier(Config{PublicKeyFile: write(t, "jwks.json", raw)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kid, priv string
		ok        bool
	}{{"a", a.priv, true}, {"b", b.priv, true}, {"b", a.priv, false}, {"zzz", a.priv, false}, {"", a.priv, false}} {
		tok, err := Mint(MintConfig{PrivateKeyFile: tc.priv, KeyID: tc.kid, Subject: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); (err == nil) != tc.ok {
			t.Errorf("kid %q: err = %v, want ok=%v", tc.kid, err, tc.ok)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	short := write(t, "short", []byte("tooshort"))
	if _, err := NewVerifier(Config{HS256SecretFile: short}); !errors.Is(err, ErrConfig) {
		t.Fatalf("short secret: %v", err)
	}
	if _, err := NewVerifier(Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no key: %v", err)
	}
	if _, err := Mint(MintConfig{Subject: "x"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("mint without key: %v", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	if _, err := NewVerifier(Config{PublicKeyFile: pemFile(t, "PUBLIC KEY", der)}); !errors.Is(err, ErrConfig) {
		t.Fatalf("1024-bit RSA accepted: %v", err)
	}
}

// FuzzVerify: arbitrary token text never panics and never authenticates.
func FuzzVerify(f *testing.F) {
	secret := filepath.Join(f.TempDir(), "s")
	_ = os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600)
	v, err := NewVerifier(Config{HS256SecretFile: secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		if p, err := v.Verify(tok); err == nil {
			t.Fatalf("random token accepted: %+v", p)
		}
	})
}

// TestCacheHonoursExpiry: a cached verification ends with the token's exp
// (plus leeway); a token never verified is never served from the cache.
func TestCacheHonoursExpiry(t *testing.T) {
	secret := write(t, "s", []byte(strings.Repeat("s", 40)))
	v, err := NewVerifier(Config{HS256SecretFile: secret, Leeway: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v.now = func() time.Time { return now }
	tok, _ := Mint(MintConfig{HS256SecretFile: secret, Subject: "a", TTL: time.Minute, Now: now})
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("cached, still valid: %v", err)
	}
	now = now.Add(32 * time.Second) // past exp + leeway
	if _, err := v.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token served from the cache: %v", err)
	}
	// A tampered token (other signature, same claims) is not a cache hit.
	if _, err := v.Verify(tok[:len(tok)-2] + "xx"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("tampered: %v", err)
	}
}
