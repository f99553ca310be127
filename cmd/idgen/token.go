package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/idgen/idgen/shared/platform/auth"
)

// token mints a bearer token for local use from a key file; it refuses
// without one (no built-in secret exists).
func token(args []string, stdout, stderr io.Writer) error {
	var c auth.MintConfig
	fs := flag.NewFlagSet("idgen token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.HS256SecretFile, "hs256-secret-file", "", "sign HS256 with the secret in this file (the server's --jwt-hs256-secret-file)")
	fs.StringVar(&c.PrivateKeyFile, "private-key", "", "sign with this PEM private key (RSA, ECDSA, Ed25519)")
	fs.StringVar(&c.KeyID, "kid", "", "key ID header (JWKS selection)")
	fs.StringVar(&c.Subject, "sub", "", "subject (the caller's identity)")
	fs.StringVar(&c.Scope, "scope", "ids:generate ids:read ids:commit ids:compensate", "space-separated scopes")
	fs.StringVar(&c.Issuer, "iss", "", "issuer claim")
	fs.StringVar(&c.Audience, "aud", "", "audience claim")
	fs.DurationVar(&c.TTL, "ttl", time.Hour, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tok, err := auth.Mint(c)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
