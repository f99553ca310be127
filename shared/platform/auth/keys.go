package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// keySet is one generation of verification keys, immutable once built: a
// reload builds a new one and swaps it in whole, so a Verify sees either the
// old keys or the new ones, never a mix.
type keySet struct {
	keys    map[string]any // kid → key; "" for the single-key case
	methods []string       // algorithms the keys accept (the parser's allow-list)
	parser  *jwt.Parser
	gen     uint64 // generation: cached verifications of an older one are void
}

// kids returns the key IDs of s, sorted ("" for a single PEM key or secret).
func (s *keySet) kids() []string {
	out := make([]string, 0, len(s.keys))
	for k := range s.keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// parseKeys builds the keys of one key file: an HS256 secret when hs256,
// else a PEM public key or certificate, or a JWKS. It never returns an
// empty key set without an error.
func parseKeys(b []byte, hs256 bool) (map[string]any, []string, error) {
	keys := map[string]any{}
	if hs256 {
		secret := []byte(strings.TrimSpace(string(b)))
		if len(secret) < 32 {
			return nil, nil, fmt.Errorf("HS256 secret is %d bytes, want at least 32", len(secret))
		}
		keys[""] = secret
		return keys, []string{"HS256"}, nil
	}
	if strings.HasPrefix(strings.TrimSpace(string(b)), "{") {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil {
			return nil, nil, fmt.Errorf("JWKS: %w", err)
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
				continue
			}
			keys[k.KeyID] = k.Key
		}
		if len(keys) == 0 {
			return nil, nil, errors.New("JWKS holds no public signing key")
		}
	} else {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, nil, errors.New("no PEM block")
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
			return nil, nil, err
		}
		keys[""] = key
	}
	var methods []string
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		ms, err := methodsFor(keys[kid])
		if err != nil {
			if kid != "" {
				return nil, nil, fmt.Errorf("key %q: %w", kid, err)
			}
			return nil, nil, err
		}
		for _, m := range ms {
			if !slices.Contains(methods, m) {
				methods = append(methods, m)
			}
		}
	}
	return keys, methods, nil
}

// methodsFor pins the algorithms a key may verify.
func methodsFor(k any) ([]string, error) {
	switch k := k.(type) {
	case []byte:
		return []string{"HS256"}, nil
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
