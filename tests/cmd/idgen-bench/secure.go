package main

// The cost of security: the embedded instance served plain (--dev: no TLS,
// no authentication) against the same instance with the TLS listener and
// JWT verification, alternating in the same rounds; and the per-request
// cost of token verification from shared/platform/auth's own benchmarks
// (authbench), run here through testing.Benchmark.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/testpki"
	"github.com/idgen/idgen/shared/platform/auth"
	"github.com/idgen/idgen/shared/platform/auth/authbench"
)

// Keys of the plain and the secured embedded instance.
const (
	plainKey  = "pebble"
	secureKey = "pebble-tls-jwt"
	benchIss  = "idgen-bench"
	benchAud  = "idgen"
)

// secureFiles are the TLS and JWT material of the secured instance.
type secureFiles struct {
	cert, key string      // the listener's certificate (127.0.0.1) and key
	client    *tls.Config // trusts the CA that signed cert
	jwtPub    string      // ES256 public key (--jwt-public-key)
	token     string      // ES256 token with ids:generate, valid for a day
}

// writeSecureFiles writes a CA and a server certificate for 127.0.0.1
// (testpki) and an ES256 key pair to dir, and signs the token wrk sends.
func writeSecureFiles(dir string) (*secureFiles, error) {
	ca, err := testpki.NewCA("idgen-bench CA")
	if err != nil {
		return nil, err
	}
	f := &secureFiles{jwtPub: filepath.Join(dir, "jwt.pub")}
	if f.cert, f.key, err = ca.IssueFiles(dir, "tls", "127.0.0.1", x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jwtKeyDER, err := x509.MarshalECPrivateKey(jwtKey)
	if err != nil {
		return nil, err
	}
	jwtPubDER, err := x509.MarshalPKIXPublicKey(&jwtKey.PublicKey)
	if err != nil {
		return nil, err
	}
	jwtPriv := filepath.Join(dir, "jwt.key")
	for path, blk := range map[string]*pem.Block{
		f.jwtPub: {Type: "PUBLIC KEY", Bytes: jwtPubDER}, jwtPriv: {Type: "EC PRIVATE KEY", Bytes: jwtKeyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
			return nil, err
		}
	}
	f.client = &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	f.token, err = auth.Mint(auth.MintConfig{PrivateKeyFile: jwtPriv, Subject: "idgen-bench", Scope: auth.ScopeGenerate,
		Issuer: benchIss, Audience: benchAud, TTL: 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// secureInstance is `idgen serve` embedded (pebble) with the TLS listener
// and ES256 JWT verification: the plain embedded instance plus security.
func secureInstance(idgen string, f *secureFiles) *instance {
	return &instance{key: secureKey, name: "idgen embedded (pebble), TLS + JWT (ES256)", tls: f.client, bearer: f.token,
		argv: func(l, d string) []string {
			return []string{idgen, "serve", "--listen", l, "--data-dir", d, "--log-level", "warn", "--audit-log", d + ".audit.log",
				"--tls-cert", f.cert, "--tls-key", f.key, "--jwt-public-key", f.jwtPub, "--jwt-issuer", benchIss, "--jwt-audience", benchAud}
		}}
}

// authResult is one token algorithm's verification cost (medians).
type authResult struct {
	Name                       string
	BaselineNs, BaselineAllocs float64 // claims decoded, nothing checked
	FirstNs, FirstAllocs       float64 // signature + claims (token not cached)
	CachedNs, CachedAllocs     float64 // the same token again
	ParallelNs, ParallelAllocs float64 // cached, GOMAXPROCS goroutines
}

// authBench runs shared/platform/auth's verification benchmarks (authbench) rounds
// times, alternating the cases within each round; it returns the medians.
func authBench(rounds int, benchtime time.Duration) ([]authResult, error) {
	setBenchtime(benchtime)
	dir, err := os.MkdirTemp("", "idgen-bench-auth-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cases, err := authbench.Cases(dir)
	if err != nil {
		return nil, err
	}
	type acc struct{ bns, bal, fns, fal, cns, cal, pns, pal []float64 }
	accs := make([]acc, len(cases))
	for _, c := range cases { // warm-up
		testing.Benchmark(authbench.Cached(c))
	}
	for range rounds {
		for i, c := range cases {
			a := &accs[i]
			for _, m := range []struct {
				f       func(authbench.Case) func(*testing.B)
				ns, als *[]float64
			}{
				{authbench.Unverified, &a.bns, &a.bal}, {authbench.FirstUse, &a.fns, &a.fal},
				{authbench.Cached, &a.cns, &a.cal}, {authbench.CachedParallel, &a.pns, &a.pal},
			} {
				r := testing.Benchmark(m.f(c))
				if r.N == 0 {
					return nil, fmt.Errorf("auth benchmark %s failed", c.Name)
				}
				*m.ns = append(*m.ns, nsPerOp(r))
				*m.als = append(*m.als, float64(r.AllocsPerOp()))
			}
		}
	}
	out := make([]authResult, len(cases))
	for i, c := range cases {
		a := accs[i]
		out[i] = authResult{Name: c.Name,
			BaselineNs: median(a.bns), BaselineAllocs: median(a.bal), FirstNs: median(a.fns), FirstAllocs: median(a.fal),
			CachedNs: median(a.cns), CachedAllocs: median(a.cal), ParallelNs: median(a.pns), ParallelAllocs: median(a.pal)}
	}
	return out, nil
}

func (r *results) auth(name string) (authResult, bool) {
	for _, a := range r.Auth {
		if a.Name == name {
			return a, true
		}
	}
	return authResult{}, false
}

// writeSecurity renders the TLS + JWT comparison and the verification
// costs; nothing when neither was measured.
func writeSecurity(w io.Writer, r *results) {
	p, para := mdLines(w)
	plain, okP := r.http(plainKey)
	sec, okS := r.http(secureKey)
	if !(okP && okS) && len(r.Auth) == 0 {
		return
	}
	para("## Cost of TLS + JWT")
	if okP && okS {
		para("The embedded instance (pebble) plain (`--dev`: HTTP, no authentication) and with `--tls-cert`/`--tls-key` (TLS 1.2+, ECDSA P-256 certificate) " +
			"plus `--jwt-public-key` (ES256, `--jwt-issuer`, `--jwt-audience`), measured in the same rounds, alternating. wrk speaks HTTPS over keep-alive " +
			"connections (one handshake per connection) and sends one token on every request (`-H \"Authorization: Bearer …\"`), so each request pays " +
			"TLS record encryption and a verified-token cache hit, not a signature check.")
		p("| comparison | requests/s TLS + JWT | requests/s plain | ratio | p50 (TLS + JWT / plain) | p99 (TLS + JWT / plain) | server µs CPU per request (TLS + JWT / plain) |")
		p("|---|---:|---:|---:|---:|---:|---:|")
		para("| idgen embedded (pebble): TLS + JWT ÷ plain | %s | %s | **%s** | %s / %s | %s / %s | %.1f / %.1f |",
			fmtNum(sec.RPS), fmtNum(plain.RPS), ratioTo(sec.RPS, plain.RPS, true), fmtDur(sec.P50), fmtDur(plain.P50), fmtDur(sec.P99), fmtDur(plain.P99),
			sec.serverCPUPerReq(), plain.serverCPUPerReq())
		para("Requests/s per round: TLS + JWT %s; plain %s.%s", roundsList(sec.RoundsRPS), roundsList(plain.RoundsRPS), pairedRatios(sec.RoundsRPS, plain.RoundsRPS))
	}
	if len(r.Auth) > 0 {
		para("Verifying a token per request, key loaded once (shared/platform/auth `BenchmarkVerify`, the same functions via testing.Benchmark, %v each, median of %d rounds):", r.Benchtime, r.Rounds)
		p("| token | baseline: claims decoded unverified ns (allocs) | first use: signature + claims ns (allocs) | cached ns (allocs) | cached, %d goroutines ns (allocs) |", r.Machine.GOMAXPROCS)
		p("|---|---:|---:|---:|---:|")
		for _, a := range r.Auth {
			p("| %s | %.0f (%.0f) | %.0f (%.0f) | %.0f (%.0f) | %.0f (%.0f) |", mdEscape(a.Name), a.BaselineNs, a.BaselineAllocs, a.FirstNs, a.FirstAllocs,
				a.CachedNs, a.CachedAllocs, a.ParallelNs, a.ParallelAllocs)
		}
		p("")
		if es, ok := r.auth("ES256"); ok && okP && okS && sec.serverCPUPerReq() > 0 {
			para("A TLS + JWT request took %.1f µs of server CPU against %.1f µs plain (%+.1f µs). Of that, the token check (cached ES256) is %.2f µs (%.1f%% of the request); "+
				"the rest is TLS (record encryption, one handshake per connection) and the authenticated middleware. A caller's first request with a new token pays %.0f µs once.",
				sec.serverCPUPerReq(), plain.serverCPUPerReq(), sec.serverCPUPerReq()-plain.serverCPUPerReq(), es.CachedNs/1e3, 100*es.CachedNs/1e3/sec.serverCPUPerReq(), es.FirstNs/1e3)
		}
	}
	if r.Machine.LoadAvg != "" {
		para("Load average when the run started: %s (%d cores); other work on the machine shows in both columns alike, since the rounds alternate.", r.Machine.LoadAvg, r.Machine.Cores)
	}
}

// pairedRatios lists a/b round by round (the two ran back to back, so a
// change of the machine's load between rounds cancels out), or "".
func pairedRatios(a, b []float64) string {
	if len(a) != len(b) || len(a) == 0 {
		return ""
	}
	parts := make([]string, len(a))
	for i := range a {
		parts[i] = ratioTo(a[i], b[i], true)
	}
	return " Ratio round by round (each pair ran back to back): " + strings.Join(parts, " / ") + "."
}
