package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestCritHeader: a correctly signed token whose protected header has a
// "crit" parameter is refused unless every name it lists is an extension
// this package implements (none): an unknown extension, an empty list, a
// value that is not a list of strings, a standard header name and a name
// absent from the header are all ErrInvalidToken, never a Principal.
func TestCritHeader(t *testing.T) {
	key := []byte(strings.Repeat("s", 40))
	v, err := NewVerifier(Config{HS256SecretFile: write(t, "secret", key)})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(header map[string]any) string {
		t.Helper()
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "svc-a", "scope": "ids:generate", "exp": time.Now().Add(time.Hour).Unix()})
		for k, val := range header {
			tok.Header[k] = val
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name   string
		header map[string]any
		ok     bool
	}{
		{"no crit", nil, true},
		{"unknown extension", map[string]any{"crit": []string{"exp"}, "exp": 1}, false},
		{"unknown extension with others", map[string]any{"crit": []string{"http://example.com/x", "b64"}, "http://example.com/x": true, "b64": false}, false},
		{"empty list", map[string]any{"crit": []string{}}, false},
		{"not a list", map[string]any{"crit": "exp", "exp": 1}, false},
		{"list of numbers", map[string]any{"crit": []int{1}}, false},
		{"null", map[string]any{"crit": nil}, false},
		{"standard name alg", map[string]any{"crit": []string{"alg"}}, false},
		{"standard name kid", map[string]any{"crit": []string{"kid"}, "kid": ""}, false},
		{"listed name absent", map[string]any{"crit": []string{"ext"}}, false},
		{"empty name", map[string]any{"crit": []string{""}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := sign(tt.header)
			for i := 0; i < 2; i++ { // the second call may come from the cache
				p, err := v.Verify(tok)
				if tt.ok {
					if err != nil || p.Subject != "svc-a" {
						t.Fatalf("Verify = %+v, %v; want svc-a", p, err)
					}
					continue
				}
				if !errors.Is(err, ErrInvalidToken) || p.Subject != "" || p.Scopes != nil {
					t.Fatalf("Verify = %+v, %v; want ErrInvalidToken and no principal", p, err)
				}
				if !strings.Contains(err.Error(), "crit") {
					t.Errorf("error %q does not name the crit header", err)
				}
			}
		})
	}
}
