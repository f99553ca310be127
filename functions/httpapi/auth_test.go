package httpapi_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/platform/auth"
)

// authHarness serves the API with HS256 bearer auth (not dev mode) and mints
// tokens for it.
func authHarness(t *testing.T) (*harness, func(sub, scope string, ttl time.Duration) string) {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("k", 48)), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{HS256SecretFile: secret, Issuer: "test-iss", Audience: "idgen"})
	if err != nil {
		t.Fatal(err)
	}
	h := serveStack(t, newStackWith(t, newTestCore(t), httpapi.Config{}, v))
	mint := func(sub, scope string, ttl time.Duration) string {
		tok, err := auth.Mint(auth.MintConfig{HS256SecretFile: secret, Subject: sub, Scope: scope, Issuer: "test-iss", Audience: "idgen", TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	return h, mint
}

func TestAuthStatuses(t *testing.T) {
	h, mint := authHarness(t)
	all := "ids:generate ids:read ids:commit ids:compensate ops:read"
	tests := []struct {
		name, method, path, body, authz string
		status                          int
		code, challenge                 string
	}{
		{"no token", "POST", "/generate", "", "", 401, "unauthorized", `Bearer realm="idgen"`},
		{"not bearer", "POST", "/generate", "", "Basic Zm9vOmJhcg==", 401, "unauthorized", `Bearer realm="idgen"`},
		{"garbage token", "POST", "/generate", "", "Bearer x.y.z", 401, "unauthorized", `error="invalid_token"`},
		{"expired token", "POST", "/generate", "", "Bearer " + mint("a", all, -time.Hour), 401, "unauthorized", `error="invalid_token"`},
		{"missing scope generate", "POST", "/generate", "", "Bearer " + mint("a", "ids:read", time.Hour), 403, "forbidden", `scope="ids:generate"`},
		{"missing scope commit", "POST", "/commit", `{"id":"019ab697-e800-8007-8200-0000000003e9"}`, "Bearer " + mint("a", "ids:generate", time.Hour), 403, "forbidden", `scope="ids:commit"`},
		{"missing scope metrics", "GET", "/metrics", "", "Bearer " + mint("a", "ids:generate", time.Hour), 403, "forbidden", `scope="ops:read"`},
		{"missing scope logs", "GET", "/logs", "", "Bearer " + mint("a", "ids:read", time.Hour), 403, "forbidden", `scope="ops:read"`},
		{"health open", "GET", "/health", "", "", 200, "", ""},
		{"ready open", "GET", "/health/ready", "", "", 200, "", ""},
		{"good token", "POST", "/generate", "", "Bearer " + mint("a", all, time.Hour), 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.issuedTotal(t)
			hdr := map[string]string{}
			if tt.authz != "" {
				hdr["Authorization"] = tt.authz
			}
			r := h.do(t, call{method: tt.method, path: tt.path, body: tt.body, header: hdr})
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.code != "" {
				if !strings.Contains(string(r.body), `"code":"`+tt.code+`"`) {
					t.Fatalf("body %s, want code %s", r.body, tt.code)
				}
				if got := r.h("WWW-Authenticate"); !strings.Contains(got, tt.challenge) {
					t.Fatalf("WWW-Authenticate %q, want it to contain %q", got, tt.challenge)
				}
				if after := h.issuedTotal(t); after != before {
					t.Fatalf("a refused request issued IDs: %v -> %v", before, after)
				}
			}
		})
	}
}

// TestMetadataOnlyForItsSubject: a record's metadata goes to the subject that
// issued it or an admin; others see the public fields only.
func TestMetadataOnlyForItsSubject(t *testing.T) {
	h, mint := authHarness(t)
	alice := map[string]string{"Authorization": "Bearer " + mint("alice", "ids:generate ids:read", time.Hour)}
	r := h.do(t, call{method: "POST", path: "/generate", body: `{"metadata":{"card_last4":"4242"}}`, header: alice})
	if r.status != 200 {
		t.Fatalf("generate: %s", r)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(string(r.body), `{"id":"`), `"}`)
	for _, tc := range []struct {
		who, scope string
		sees       bool
	}{{"alice", "ids:read", true}, {"bob", "ids:read", false}, {"ops", "ids:read ids:admin", true}} {
		got := h.do(t, call{method: "GET", path: "/ids/" + id, header: map[string]string{"Authorization": "Bearer " + mint(tc.who, tc.scope, time.Hour)}})
		if got.status != 200 {
			t.Fatalf("%s: %s", tc.who, got)
		}
		if has := strings.Contains(string(got.body), "4242"); has != tc.sees {
			t.Fatalf("%s sees metadata = %v, want %v: %s", tc.who, has, tc.sees, got.body)
		}
	}
}

// TestEraseSubject: erasing a subject's data key makes its metadata
// unreadable (crypto-shredding) while the record stays; only ids:admin may.
func TestEraseSubject(t *testing.T) {
	h, mint := authHarness(t)
	alice := map[string]string{"Authorization": "Bearer " + mint("alice", "ids:generate ids:read", time.Hour)}
	r := h.do(t, call{method: "POST", path: "/generate", body: `{"metadata":{"iban":"DE89370400440532013000"}}`, header: alice})
	id := strings.TrimSuffix(strings.TrimPrefix(string(r.body), `{"id":"`), `"}`)
	bob := h.do(t, call{method: "POST", path: "/generate", body: `{"metadata":{"n":1}}`, header: map[string]string{"Authorization": "Bearer " + mint("bob", "ids:generate", time.Hour)}})
	bobID := strings.TrimSuffix(strings.TrimPrefix(string(bob.body), `{"id":"`), `"}`)

	if r := h.do(t, call{method: "DELETE", path: "/subjects/alice/key", header: alice}); r.status != 403 {
		t.Fatalf("erase without ids:admin: %s", r)
	}
	admin := map[string]string{"Authorization": "Bearer " + mint("dpo", "ids:admin ids:read", time.Hour)}
	for i := 0; i < 2; i++ { // erasing twice is fine
		if r := h.do(t, call{method: "DELETE", path: "/subjects/alice/key", header: admin}); r.status != 200 {
			t.Fatalf("erase: %s", r)
		}
	}
	got := h.do(t, call{method: "GET", path: "/ids/" + id, header: alice})
	if got.status != 200 || strings.Contains(string(got.body), "DE89") || !strings.Contains(string(got.body), `"metadata_erased":true`) || !strings.Contains(string(got.body), `"state":"pending"`) {
		t.Fatalf("after erasure: %s", got)
	}
	if got := h.do(t, call{method: "GET", path: "/ids/" + bobID, header: admin}); !strings.Contains(string(got.body), `"metadata":{"n":1}`) {
		t.Fatalf("bob's metadata lost with alice's key: %s", got)
	}
	if countAction(auditLines(t, h.auditPath), "subject.erase", "alice") != 2 {
		t.Fatal("erasures not audited")
	}
	if r := h.do(t, call{method: "GET", path: "/subjects/alice/key", header: admin}); r.status != 405 {
		t.Fatalf("GET on the erase route: %s", r)
	}
}

// TestRateLimitPerSubject: over its budget a subject gets 429 with
// Retry-After; another subject is not affected.
func TestRateLimitPerSubject(t *testing.T) {
	h := serveStack(t, newStackWith(t, newTestCore(t), httpapi.Config{Dev: true, RateLimit: 1, RateBurst: 3}, nil))
	codes := map[int]int{}
	var retry string
	for i := 0; i < 6; i++ {
		r := h.post(t, "/generate", "")
		codes[r.status]++
		if r.status == 429 {
			retry = r.h("Retry-After")
			if !strings.Contains(string(r.body), `"code":"rate_limited"`) {
				t.Fatalf("429 body: %s", r.body)
			}
		}
	}
	if codes[200] != 3 || codes[429] != 3 || retry != "1" {
		t.Fatalf("answers %v, Retry-After %q; want 3 × 200 then 429 with Retry-After 1", codes, retry)
	}
	// /health is open and never limited.
	if r := h.get(t, "/health/live"); r.status != 200 {
		t.Fatalf("health limited: %s", r)
	}
}
