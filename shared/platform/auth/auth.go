// Package auth verifies bearer JWTs and carries the caller's identity and
// scopes to the handlers of every deployable (HTTP server, Lambda).
//
// Invariants: the accepted algorithms are pinned by the configured key type
// (an RSA key accepts only RS*, an EC key only its curve's ES*, Ed25519 only
// EdDSA, an HS256 secret only HS256), so "none" and algorithm confusion are
// refused; a "crit" header is refused (no extension is processed, RFC 7515
// §4.1.11); exp is required; nbf and iat are honoured with a small leeway; iss
// and aud are checked when configured. A token that fails any check yields
// ErrInvalidToken and no Principal.
//
// The key file is re-read while the Verifier is in use (key rotation, see
// reload.go): a key removed from the file stops verifying tokens at the
// latest ReloadInterval after the change, including tokens verified (and
// cached) before; a file that does not parse, or holds no usable key, never
// replaces the keys in use.
package auth

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Scopes a token's scope claim grants; docs/security.md#scopes lists the
// routes each one opens.
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

// Defaults of Config.
const (
	DefaultLeeway         = 30 * time.Second
	DefaultReloadInterval = 5 * time.Second
	DefaultCacheSize      = 10000
)

// Principal is an authenticated caller.
type Principal struct {
	Subject string
	Scopes  map[string]bool
}

// Has reports whether p holds scope.
func (p Principal) Has(scope string) bool { return p.Scopes[scope] }

// Config of a Verifier; exactly one of PublicKeyFile and HS256SecretFile.
// Zero values mean the documented defaults.
type Config struct {
	PublicKeyFile   string        // PEM public key or certificate (RSA, ECDSA, Ed25519), or a JWKS JSON file
	HS256SecretFile string        // HS256 shared secret (development and tests)
	Issuer          string        // required iss when set
	Audience        string        // required aud when set
	Leeway          time.Duration // clock skew allowed on exp/nbf/iat; default DefaultLeeway

	// ReloadInterval is how often the key file is checked for a change:
	// the first Verify after the interval re-reads it (no goroutine; a
	// Verifier nobody calls reads nothing). Default DefaultReloadInterval;
	// negative: the file is read only by NewVerifier and Reload.
	ReloadInterval time.Duration
	// OnReload, if set, is called once for every new content of the key
	// file that a check found: with the key IDs now in use, or with the
	// error that kept the previous keys. It runs on the goroutine of the
	// Verify or Reload that found the change, after the swap; it must not
	// block for long. Default: none (see ReloadStatus).
	OnReload func(ReloadEvent)
	// CacheSize bounds the verified-token cache; when full it is emptied
	// (the cost is re-verifying the live tokens once). Default
	// DefaultCacheSize; negative disables the cache.
	CacheSize int
}

// Verifier checks tokens. Safe for concurrent use.
type Verifier struct {
	cfg    Config
	path   string // the key file
	hs256  bool   // path holds an HS256 secret
	leeway time.Duration
	now    func() time.Time

	set       atomic.Pointer[keySet]
	nextCheck atomic.Int64 // unix ns of the next key file check
	reload    reloadState

	// Verified tokens, by hash, until their exp, for the key set generation
	// that verified them: services reuse one token for many requests, and
	// a signature check costs 30-250 µs.
	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	p   Principal
	exp time.Time
	gen uint64
}

// NewVerifier loads the key material of cfg. It fails with ErrConfig when
// the file cannot be read or holds no usable key.
func NewVerifier(cfg Config) (*Verifier, error) {
	if (cfg.PublicKeyFile == "") == (cfg.HS256SecretFile == "") {
		return nil, fmt.Errorf("%w: set exactly one of a public key file and an HS256 secret file", ErrConfig)
	}
	cfg.Leeway = cmp.Or(cfg.Leeway, DefaultLeeway)
	cfg.ReloadInterval = cmp.Or(cfg.ReloadInterval, DefaultReloadInterval)
	cfg.CacheSize = cmp.Or(cfg.CacheSize, DefaultCacheSize)
	v := &Verifier{cfg: cfg, path: cfg.PublicKeyFile, leeway: cfg.Leeway, now: time.Now, cache: map[[32]byte]cached{}}
	if cfg.HS256SecretFile != "" {
		v.path, v.hs256 = cfg.HS256SecretFile, true
	}
	b, err := os.ReadFile(v.path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	set, err := v.newKeySet(b, 1)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, v.path, err)
	}
	v.set.Store(set)
	v.reload.init(b, v.now())
	v.scheduleCheck(v.now())
	return v, nil
}

// newKeySet parses the key file's content b into generation gen.
func (v *Verifier) newKeySet(b []byte, gen uint64) (*keySet, error) {
	keys, methods, err := parseKeys(b, v.hs256)
	if err != nil {
		return nil, err
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() })}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	return &keySet{keys: keys, methods: methods, parser: jwt.NewParser(opts...), gen: gen}, nil
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

type claims struct {
	jwt.RegisteredClaims
	Scope string `json:"scope"`
}

// Verify checks a compact JWS and returns its principal: ErrNoToken for an
// empty token, ErrInvalidToken (wrapping the reason) for any failed check.
func (v *Verifier) Verify(token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrNoToken
	}
	now := v.now()
	set := v.keys(now)
	useCache := v.cfg.CacheSize > 0
	var h [32]byte
	if useCache {
		h = sha256.Sum256([]byte(token))
		v.mu.Lock()
		e, ok := v.cache[h]
		v.mu.Unlock()
		if ok && e.gen == set.gen && now.Before(e.exp) {
			return e.p, nil
		}
	}
	p, exp, err := v.verify(set, token)
	if err != nil {
		return Principal{}, err
	}
	if useCache {
		v.mu.Lock()
		if len(v.cache) >= v.cfg.CacheSize {
			clear(v.cache)
		}
		// An entry of an older generation (a Verify that overlapped a
		// reload) is stored too, but never served: lookups compare gen.
		v.cache[h] = cached{p: p, exp: exp.Add(v.leeway), gen: set.gen}
		v.mu.Unlock()
	}
	return p, nil
}

// verify checks the signature and claims of token against set.
func (v *Verifier) verify(set *keySet, token string) (Principal, time.Time, error) {
	var c claims
	_, err := set.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// golang-jwt does not process "crit": refused here, before any key
		// is chosen or signature checked.
		if err := checkCrit(t.Header); err != nil {
			return nil, err
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := set.keys[kid]
		if !ok {
			if k, ok = set.keys[""]; !ok || len(set.keys) != 1 {
				return nil, fmt.Errorf("unknown key id %q", kid)
			}
		}
		if ms, err := methodsFor(k); err != nil || !slices.Contains(ms, t.Method.Alg()) {
			return nil, fmt.Errorf("algorithm %s does not fit key %q", t.Method.Alg(), kid)
		}
		return k, nil
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
