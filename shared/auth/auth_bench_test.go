package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkVerify: the cost of authenticating one request, per algorithm,
// with the key loaded once (as the service does), beside the cost of
// reading the scopes of a token that is not verified at all (the floor of
// any JWT scheme: parse + claims).
//
//	go test -run '^$' -bench Verify -benchmem ./shared/auth/
func BenchmarkVerify(b *testing.B) {
	secret := filepath.Join(b.TempDir(), "s")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		b.Fatal(err)
	}
	t := &testing.T{}
	pairs := map[string]keyPair{"RS256": rsaPair(t), "ES256": ecPair(t), "EdDSA": edPair(t)}
	cases := []struct {
		name   string
		cfg    Config
		mintKF MintConfig
	}{
		{"HS256", Config{HS256SecretFile: secret}, MintConfig{HS256SecretFile: secret}},
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		p := pairs[alg]
		cases = append(cases, struct {
			name   string
			cfg    Config
			mintKF MintConfig
		}{alg, Config{PublicKeyFile: p.pub}, MintConfig{PrivateKeyFile: p.priv}})
	}
	for _, c := range cases {
		v, err := NewVerifier(c.cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.mintKF.Subject, c.mintKF.Scope = "svc", "ids:generate ids:read"
		tok, err := Mint(c.mintKF)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/first-use", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.mu.Lock()
				clear(v.cache)
				v.mu.Unlock()
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/cached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
