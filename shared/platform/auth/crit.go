package auth

import (
	"errors"
	"fmt"
)

// errCrit is the reason of every refusal by checkCrit; Verify wraps it in
// ErrInvalidToken.
var errCrit = errors.New(`"crit" header`)

// checkCrit applies RFC 7515 §4.1.11 to a token's decoded protected header.
// Without "crit" it passes. With one, the token is refused: "crit" must be
// a non-empty array of distinct strings, each the name of a parameter that
// is present in the header and is not one RFC 7515 or RFC 7518 defines; and
// a recipient must refuse a token that marks critical an extension it does
// not process. This package processes no header extension, so even a
// well-formed "crit" is refused: an extension Verify ignored could change
// what the token means to its issuer. The error says which rule failed.
func checkCrit(header map[string]any) error {
	raw, ok := header["crit"]
	if !ok {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		return fmt.Errorf("%w is not an array", errCrit)
	}
	if len(list) == 0 {
		return fmt.Errorf("%w is an empty array", errCrit)
	}
	seen := make(map[string]bool, len(list))
	for _, v := range list {
		name, ok := v.(string)
		switch {
		case !ok:
			return fmt.Errorf("%w lists a non-string", errCrit)
		case name == "" || registeredHeader(name):
			return fmt.Errorf("%w lists %q, a name it must not list", errCrit, name)
		case seen[name]:
			return fmt.Errorf("%w lists %q twice", errCrit, name)
		}
		seen[name] = true
		if _, present := header[name]; !present {
			return fmt.Errorf("%w lists %q, which the header lacks", errCrit, name)
		}
	}
	return fmt.Errorf("%w marks critical an extension this verifier does not process: %q", errCrit, list)
}

// registeredHeader reports whether name is a JOSE header parameter that
// RFC 7515 (JWS) or RFC 7518 (JWA) defines; "crit" must not list those.
func registeredHeader(name string) bool {
	switch name {
	case "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
		"enc", "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c":
		return true
	}
	return false
}
