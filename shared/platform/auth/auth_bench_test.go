package auth_test

import (
	"testing"

	"github.com/idgen/idgen/shared/platform/auth/authbench"
)

// BenchmarkVerify: the cost of authenticating one request, per algorithm,
// with the key loaded once (as the service does): a token seen for the
// first time (signature check), a token verified before (the cache), the
// same on GOMAXPROCS goroutines, beside the baseline of decoding the claims
// without any check. make bench runs the same functions (authbench).
//
//	go test -run '^$' -bench Verify -benchmem ./shared/auth/
func BenchmarkVerify(b *testing.B) {
	cases, err := authbench.Cases(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		b.Run(c.Name+"/unverified-baseline", authbench.Unverified(c))
		b.Run(c.Name+"/first-use", authbench.FirstUse(c))
		b.Run(c.Name+"/cached", authbench.Cached(c))
		b.Run(c.Name+"/cached-parallel", authbench.CachedParallel(c))
	}
}
