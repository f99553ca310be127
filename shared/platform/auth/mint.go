package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MintConfig describes a token to sign for local use and tests.
type MintConfig struct {
	HS256SecretFile string // sign HS256 with this secret, or
	PrivateKeyFile  string // sign with this PEM private key (RSA → RS256, EC → ES*, Ed25519 → EdDSA)
	KeyID           string // kid header (JWKS selection)
	Subject         string
	Scope           string // space-separated scopes
	Issuer          string
	Audience        string
	TTL             time.Duration // default 1h
	Now             time.Time     // default time.Now
}

// Mint signs a token. It refuses without a key file.
func Mint(c MintConfig) (string, error) {
	if (c.HS256SecretFile == "") == (c.PrivateKeyFile == "") {
		return "", fmt.Errorf("%w: give exactly one of an HS256 secret file and a private key file", ErrConfig)
	}
	if c.Subject == "" {
		return "", fmt.Errorf("%w: a subject is required", ErrConfig)
	}
	if c.TTL == 0 {
		c.TTL = time.Hour
	}
	if c.Now.IsZero() {
		c.Now = time.Now()
	}
	var (
		method jwt.SigningMethod
		key    any
	)
	if c.HS256SecretFile != "" {
		secret, err := readSecret(c.HS256SecretFile)
		if err != nil {
			return "", err
		}
		method, key = jwt.SigningMethodHS256, secret
	} else {
		b, err := os.ReadFile(c.PrivateKeyFile)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if method, key, err = parsePrivate(b); err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrConfig, c.PrivateKeyFile, err)
		}
	}
	cl := claims{Scope: c.Scope, RegisteredClaims: jwt.RegisteredClaims{
		Subject: c.Subject, Issuer: c.Issuer,
		IssuedAt: jwt.NewNumericDate(c.Now), NotBefore: jwt.NewNumericDate(c.Now), ExpiresAt: jwt.NewNumericDate(c.Now.Add(c.TTL)),
	}}
	if c.Audience != "" {
		cl.Audience = jwt.ClaimStrings{c.Audience}
	}
	t := jwt.NewWithClaims(method, cl)
	if c.KeyID != "" {
		t.Header["kid"] = c.KeyID
	}
	return t.SignedString(key)
}

func parsePrivate(b []byte) (jwt.SigningMethod, any, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, nil, errors.New("no PEM block")
	}
	var (
		k   any
		err error
	)
	switch blk.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, nil, err
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return jwt.SigningMethodRS256, k, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jwt.SigningMethodES256, k, nil
		case elliptic.P384():
			return jwt.SigningMethodES384, k, nil
		case elliptic.P521():
			return jwt.SigningMethodES512, k, nil
		}
	case ed25519.PrivateKey:
		return jwt.SigningMethodEdDSA, k, nil
	}
	return nil, nil, fmt.Errorf("unsupported private key %T", k)
}
