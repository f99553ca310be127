package httpapi_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestRepeatedHeaders: a header the service reads once (Authorization,
// Idempotency-Key, Content-Type) given twice is 400 invalid_request, in
// whichever order the copies come, before anything is authenticated or
// stored; a repeated Authorization is audited as auth.failure with its
// reason.
func TestRepeatedHeaders(t *testing.T) {
	t.Parallel()
	h, mint := authHarness(t)
	good := "Bearer " + mint("alice", "ids:generate ids:commit ids:read", time.Hour)
	other := "Bearer " + mint("mallory", "ids:generate ids:commit ids:read", time.Hour)
	r := h.do(t, call{method: "POST", path: "/generate", header: map[string]string{"Authorization": good}})
	pending := strings.TrimSuffix(strings.TrimPrefix(string(r.body), `{"id":"`), `"}`)
	commit := `{"id":"` + pending + `"}`
	for _, tc := range []struct {
		name    string
		path    string
		headers []string // header lines, in order
		body    string
		audited bool // an auth.failure entry
	}{
		{"Authorization twice, valid first", "/generate", []string{"Authorization: " + good, "Authorization: Bearer x.y.z"}, "", true},
		{"Authorization twice, valid last", "/generate", []string{"Authorization: Bearer x.y.z", "Authorization: " + good}, "", true},
		{"Authorization twice, two subjects", "/generate", []string{"Authorization: " + good, "Authorization: " + other}, "", true},
		{"Authorization twice, same token", "/commit", []string{"Authorization: " + good, "authorization: " + good, "Content-Type: application/json"}, commit, true},
		{"Idempotency-Key twice", "/generate", []string{"Authorization: " + good, "Idempotency-Key: k1", "Idempotency-Key: k2"}, "", false},
		{"Idempotency-Key twice, same value", "/generate", []string{"Authorization: " + good, "Idempotency-Key: k1", "idempotency-key: k1"}, "", false},
		{"Content-Type twice", "/commit", []string{"Authorization: " + good, "Content-Type: text/plain", "Content-Type: application/json"}, commit, false},
		{"Content-Type twice, same value", "/commit", []string{"Authorization: " + good, "Content-Type: application/json", "CONTENT-TYPE: application/json"}, commit, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issued := h.issuedTotal(t)
			failures := countAction(auditLines(t, h.auditPath), "auth.failure", tc.path)
			req := "POST " + tc.path + " HTTP/1.1\r\nHost: idgen.test\r\n" + strings.Join(tc.headers, "\r\n") + "\r\nContent-Length: " + strconv.Itoa(len(tc.body)) + "\r\n\r\n" + tc.body
			assertError(t, h.wire(t, req), 400, "invalid_request")
			if n := h.issuedTotal(t); n != issued {
				t.Errorf("IDs issued: %v -> %v", issued, n)
			}
			if r := h.do(t, call{method: "GET", path: "/ids/" + pending, header: map[string]string{"Authorization": good}}); r.status != 200 || !strings.Contains(string(r.body), `"state":"pending"`) {
				t.Errorf("%s after a refused request: %s", pending, r)
			}
			lines := auditLines(t, h.auditPath)
			want := failures
			if tc.audited {
				want++
			}
			if n := countAction(lines, "auth.failure", tc.path); n != want {
				t.Fatalf("%d auth.failure entries for %s, want %d", n, tc.path, want)
			}
			if tc.audited {
				last := lines[len(lines)-1]
				if last["action"] != "auth.failure" || !strings.Contains(last["reason"], "Authorization") || last["outcome"] != "denied" {
					t.Errorf("last audit entry %v, want auth.failure denied for the repeated Authorization", last)
				}
			}
			if n := countAction(lines, "id.commit", pending); n != 0 {
				t.Errorf("%d commit entries", n)
			}
		})
	}
	// One of each is fine.
	req := "POST /commit HTTP/1.1\r\nHost: idgen.test\r\nAuthorization: " + good + "\r\nIdempotency-Key: k1\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(commit)) + "\r\n\r\n" + commit
	if r := h.wire(t, req); r.status != 200 {
		t.Fatalf("single headers: %s", r)
	}
}

// TestCritTokenRefused: a correctly signed token with a "crit" header is
// 401 invalid_token and audited, never served.
func TestCritTokenRefused(t *testing.T) {
	t.Parallel()
	h, _ := authHarness(t)
	for _, crit := range []any{[]string{"exp"}, []string{}, "exp", []string{"alg"}} {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "scope": "ids:generate", "iss": "test-iss", "aud": "idgen", "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["crit"], tok.Header["exp"] = crit, 1
		signed, err := tok.SignedString([]byte(strings.Repeat("k", 48)))
		if err != nil {
			t.Fatal(err)
		}
		issued := h.issuedTotal(t)
		failures := countAction(auditLines(t, h.auditPath), "auth.failure", "/generate")
		r := h.do(t, call{method: "POST", path: "/generate", header: map[string]string{"Authorization": "Bearer " + signed}})
		assertError(t, r, 401, "unauthorized")
		if !strings.Contains(r.h("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("crit %v: WWW-Authenticate %q", crit, r.h("WWW-Authenticate"))
		}
		if n := h.issuedTotal(t); n != issued {
			t.Errorf("crit %v: IDs issued", crit)
		}
		if n := countAction(auditLines(t, h.auditPath), "auth.failure", "/generate"); n != failures+1 {
			t.Errorf("crit %v: %d auth.failure entries, want %d", crit, n, failures+1)
		}
	}
}
