// Package auth verifies bearer JWTs and carries the caller's identity and
// scopes to the handlers of every deployable (HTTP server, Lambda).
//
// Invariants: the accepted algorithms are pinned by the configured key type
// (an RSA key accepts only RS*, an EC key only its curve's ES*, Ed25519 only
// EdDSA, an HS256 secret only HS256), so "none" and algorithm confusion are
// refused; exp is required; nbf and iat are honoured with a small leeway; iss
// and aud are checked when configured. A token that fails any check yields
// ErrInvalidToken and no Principal.
package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// Scopes of CONTRACT.md.
const (
	ScopeGenerate   = "ids:generate"
	ScopeRead       = "ids:read"
	ScopeCommit     = "ids:commit"
	ScopeCompensate = "ids:compensate"
	ScopeOpsRead    = "ops:read"
	ScopeAdmin      = "ids:admin"
)

// Sentinel errors.
var (
	ErrNoToken      = errors.New("auth: no bearer token")
	ErrInvalidToken = errors.New("auth: invalid token")
	ErrConfig       = errors.New("auth: bad configuration")
)

// Principal is an authenticated caller.
type Principal struct {
	Subject string
	Scopes  map[string]bool
}

// Has reports whether p holds scope.
func (p Principal) Has(scope string) bool { return p.Scopes[scope] }

// Config of a Verifier; exactly one of PublicKeyFile and HS256SecretFile.
type Config struct {
	PublicKeyFile   string        // PEM public key or certificate (RSA, ECDSA, Ed25519), or a JWKS JSON file
	HS256SecretFile string        // HS256 shared secret (development and tests)
	Issuer          string        // required iss when set
	Audience        string        // required aud when set
	Leeway          time.Duration // clock skew allowed on exp/nbf/iat; default 30s
}

// Verifier checks tokens. Safe for concurrent use.
type Verifier struct {
	keys    map[string]any // kid → key; "" for the single-key case
	methods []string
	parser  *jwt.Parser
	leeway  time.Duration
	now     func() time.Time

	// Verified tokens, by hash, until their exp: services reuse one token
	// for many requests, and a signature check costs 30-250 µs.
	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	p   Principal
	exp time.Time
}

// cacheMax bounds the verified-token cache; when full it is emptied (the
// cost is re-verifying the live tokens once).
const cacheMax = 10000

// NewVerifier loads the key material of cfg.
func NewVerifier(cfg Config) (*Verifier, error) {
	if (cfg.PublicKeyFile == "") == (cfg.HS256SecretFile == "") {
		return nil, fmt.Errorf("%w: set exactly one of a public key file and an HS256 secret file", ErrConfig)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	v := &Verifier{keys: map[string]any{}, leeway: cfg.Leeway, now: time.Now, cache: map[[32]byte]cached{}}
	if cfg.HS256SecretFile != "" {
		secret, err := readSecret(cfg.HS256SecretFile)
		if err != nil {
			return nil, err
		}
		v.keys[""] = secret
		v.methods = []string{"HS256"}
	} else {
		b, err := os.ReadFile(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if err := v.loadPublic(b); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, cfg.PublicKeyFile, err)
		}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() })}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// readSecret reads an HS256 secret; it must be at least 32 bytes.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < 32 {
		return nil, fmt.Errorf("%w: HS256 secret in %s is %d bytes, want at least 32", ErrConfig, path, len(secret))
	}
	return secret, nil
}

func (v *Verifier) loadPublic(b []byte) error {
	if strings.HasPrefix(strings.TrimSpace(string(b)), "{") {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil {
			return fmt.Errorf("JWKS: %w", err)
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
				continue
			}
			v.keys[k.KeyID] = k.Key
		}
		if len(v.keys) == 0 {
			return errors.New("JWKS holds no public signing key")
		}
	} else {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return errors.New("no PEM block")
		}
		var key any
		var err error
		if blk.Type == "CERTIFICATE" {
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(blk.Bytes); err == nil {
				key = cert.PublicKey
			}
		} else {
			key, err = x509.ParsePKIXPublicKey(blk.Bytes)
		}
		if err != nil {
			return err
		}
		v.keys[""] = key
	}
	seen := map[string]bool{}
	for _, k := range v.keys {
		ms, err := methodsFor(k)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if !seen[m] {
				seen[m] = true
				v.methods = append(v.methods, m)
			}
		}
	}
	return nil
}

// methodsFor pins the algorithms a key may verify.
func methodsFor(k any) ([]string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		return []string{"RS256", "RS384", "RS512"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}, nil
		case elliptic.P384():
			return []string{"ES384"}, nil
		case elliptic.P521():
			return []string{"ES512"}, nil
		}
		return nil, errors.New("unsupported EC curve")
	case ed25519.PublicKey:
		return []string{"EdDSA"}, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}

type claims struct {
	jwt.RegisteredClaims
	Scope string `json:"scope"`
}

// Verify checks a compact JWS and returns its principal.
func (v *Verifier) Verify(token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrNoToken
	}
	h := sha256.Sum256([]byte(token))
	now := v.now()
	v.mu.Lock()
	e, ok := v.cache[h]
	v.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e.p, nil
	}
	p, exp, err := v.verify(token)
	if err != nil {
		return Principal{}, err
	}
	v.mu.Lock()
	if len(v.cache) >= cacheMax {
		clear(v.cache)
	}
	v.cache[h] = cached{p: p, exp: exp.Add(v.leeway)}
	v.mu.Unlock()
	return p, nil
}

// verify checks the signature and claims of token.
func (v *Verifier) verify(token string) (Principal, time.Time, error) {
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := v.keys[kid]; ok {
			if ms, _ := methodsFor(k); t.Method.Alg() != "HS256" && !contains(ms, t.Method.Alg()) {
				return nil, fmt.Errorf("algorithm %s does not fit key %q", t.Method.Alg(), kid)
			}
			return k, nil
		}
		if k, ok := v.keys[""]; ok && len(v.keys) == 1 {
			return k, nil
		}
		return nil, fmt.Errorf("unknown key id %q", kid)
	})
	if err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return Principal{}, time.Time{}, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	p := Principal{Subject: c.Subject, Scopes: map[string]bool{}}
	for _, s := range strings.Fields(c.Scope) {
		p.Scopes[s] = true
	}
	return p, c.ExpiresAt.Time, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
