package securee2e

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
)

// TestJWKSRotation rewrites the JWKS file of a running idgen (embedded
// mode, HTTPS listener): a kid added is accepted, a kid removed is refused
// (its token had been accepted, so cached, before) within the reload
// interval, and broken files (not JSON, an empty key set, an empty file)
// never take the keys in use away. Timing is waited for with a generous
// deadline and logged; what is asserted is the order of the facts.
func TestJWKSRotation(t *testing.T) {
	dir := t.TempDir()
	httpCA := newCA(t, dir, "securee2e-jwks-ca")
	srvCert, srvKey := httpCA.issue(t, dir, "idgen-jwks", false)
	k1, k2, k3 := newSigner(t, dir, "k1-es256", true), newSigner(t, dir, "k2-rs256", false), newSigner(t, dir, "k3-es256", true)
	jwks := filepath.Join(dir, "jwks.json")
	writeJWKS(t, jwks, k1)
	client := httpsClient(t, clientTLS(t, httpCA, "", ""))
	defer client.CloseIdleConnections()
	in := startInstance(t, "idgen-jwks", client, func(listen, dataDir string) []string {
		return []string{"serve", "--listen", listen, "--data-dir", dataDir, "--audit-log", filepath.Join(dataDir, "audit.log"),
			"--tls-cert", srvCert, "--tls-key", srvKey,
			"--jwt-public-key", jwks, "--jwt-issuer", jwtIssuer, "--jwt-audience", jwtAudience}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tok := map[string]string{}
	for _, s := range []*signer{k1, k2, k3} {
		tok[s.kid] = s.token(t, tokenOpts{sub: "svc-" + s.kid, scope: auth.ScopeGenerate})
	}
	l := newLedger()
	// try is one POST /generate with kid's token: true for an ID, false
	// for a 401; anything else fails the test.
	try := func(kid string) bool {
		t.Helper()
		ans := call(ctx, client, http.MethodPost, in.url+"/generate", tok[kid], "{}")
		switch ans.status {
		case http.StatusOK:
			l.add(t, in, parseIDs(t, in, ans, 0))
			return true
		case http.StatusUnauthorized:
			if uuidRE.Match(ans.body) {
				t.Fatalf("401 carrying an ID: %s", ans)
			}
			return false
		}
		t.Fatalf("kid %s: %s", kid, ans)
		return false
	}
	// until polls try(kid) until it answers want, and returns how long that took.
	until := func(kid string, want bool, what string) time.Duration {
		t.Helper()
		t0 := time.Now()
		for try(kid) != want {
			if time.Since(t0) > 60*time.Second {
				t.Fatalf("%s: kid %s still accepted=%v after 60s", what, kid, !want)
			}
			time.Sleep(200 * time.Millisecond)
		}
		return time.Since(t0)
	}
	interval := auth.DefaultReloadInterval

	if !try(k1.kid) || !try(k1.kid) || try(k2.kid) {
		t.Fatal("start: want k1 accepted (twice: the second from the cache), k2 refused")
	}

	writeJWKS(t, jwks, k1, k2)
	d := until(k2.kid, true, "k2 added")
	t.Logf("k2 added: accepted after %v (reload interval %v)", d.Round(time.Millisecond), interval)
	if !try(k1.kid) {
		t.Fatal("k1 refused while still published")
	}

	writeJWKS(t, jwks, k2)
	d = until(k1.kid, false, "k1 removed")
	t.Logf("k1 removed: its (cached) token refused after %v", d.Round(time.Millisecond))
	if d > interval+20*time.Second {
		t.Errorf("k1 refused only %v after its removal; reload interval %v", d, interval)
	}
	for range 5 {
		if try(k1.kid) {
			t.Fatal("k1 accepted again after its removal")
		}
	}
	if !try(k2.kid) {
		t.Fatal("k2 refused after k1's removal")
	}

	// Broken files: k2 keeps working through at least one full reload
	// interval after each write (so the file has been examined), k1 and k3
	// stay out.
	for _, bad := range []struct{ name, content string }{
		{"not JSON", `{"keys": [ {"kty": "EC"`}, {"empty key set", `{"keys": []}`}, {"empty file", ``},
	} {
		writeFileAtomic(t, jwks, []byte(bad.content))
		for t0 := time.Now(); time.Since(t0) < interval+1500*time.Millisecond; time.Sleep(250 * time.Millisecond) {
			if !try(k2.kid) {
				t.Fatalf("%s: k2 refused: a broken JWKS replaced the keys in use", bad.name)
			}
		}
		if try(k1.kid) || try(k3.kid) {
			t.Fatalf("%s: a kid that is not in use was accepted", bad.name)
		}
	}

	writeJWKS(t, jwks, k2, k3)
	d = until(k3.kid, true, "k3 added after the broken files")
	t.Logf("k3 added after the broken files: accepted after %v", d.Round(time.Millisecond))
	if !try(k2.kid) || try(k1.kid) {
		t.Fatal("after the last rotation: want k2 accepted, k1 refused")
	}

	failures := auditEvents(t, []string{audit.ActionAuthFailure}, in.audit)
	if len(failures) == 0 {
		t.Error("no auth failure audited for the refused tokens")
	}
	t.Logf("%d IDs issued across the rotations, all unique; %d refusals audited", len(l.ids), len(failures))
}
