package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestRawPathRouting: the route and its path parameter are read from the
// path as sent (the request line, or the event's rawPath), never from
// fasthttp's decoded and normalised one: an empty segment, a dot segment, a
// backslash, percent-encoding (an encoded separator above all) or a byte
// outside printable ASCII is 400 invalid_request on every route, and
// nothing is erased, issued or audited for it.
func TestRawPathRouting(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"fasthttp server", "API Gateway v2 event"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			h, mint := authHarness(t)
			ids := map[string]string{}
			for _, sub := range []string{"key", "alice", "bob"} {
				r := h.do(t, call{method: "POST", path: "/generate", body: `{"metadata":{"owner":"` + sub + `"}}`, header: map[string]string{"Authorization": "Bearer " + mint(sub, "ids:generate", time.Hour)}})
				if r.status != 200 {
					t.Fatalf("generate for %s: %s", sub, r)
				}
				ids[sub] = strings.TrimSuffix(strings.TrimPrefix(string(r.body), `{"id":"`), `"}`)
			}
			admin := "Bearer " + mint("dpo", "ids:admin ids:read ids:generate ids:commit ops:read", time.Hour)
			send := func(method, target string) *reply {
				t.Helper()
				if transport == "API Gateway v2 event" {
					r, _ := invoke(t, h.stack, v2Event(method, target, "", map[string]string{"Authorization": admin}))
					return r
				}
				return h.wire(t, method+" "+target+" HTTP/1.1\r\nHost: idgen.test\r\nAuthorization: "+admin+"\r\nContent-Length: 0\r\n\r\n")
			}
			// erased reports whether sub's metadata can no longer be read.
			erased := func(sub string) bool {
				t.Helper()
				r := h.do(t, call{method: "GET", path: "/ids/" + ids[sub], header: map[string]string{"Authorization": admin}})
				var v struct {
					Metadata       json.RawMessage `json:"metadata"`
					MetadataErased bool            `json:"metadata_erased"`
				}
				if r.status != 200 || json.Unmarshal(r.body, &v) != nil {
					t.Fatalf("GET /ids/%s: %s", ids[sub], r)
				}
				return v.MetadataErased || !strings.Contains(string(v.Metadata), sub)
			}
			for _, tc := range []struct{ method, target string }{
				{"DELETE", "/subjects//key"},
				{"DELETE", "/subjects/%2f/key"},
				{"DELETE", "/subjects/%2F/key"},
				{"DELETE", "/subjects/key%2fkey"},
				{"DELETE", "/subjects/key%2Fkey/key"},
				{"DELETE", "/subjects/alice%5ckey/key"},
				{"DELETE", "/subjects/alice%5Ckey/key"},
				{"DELETE", `/subjects/alice\key/key`},
				{"DELETE", "/subjects/al%69ce/key"},
				{"DELETE", "/subjects/./alice/key"},
				{"DELETE", "/subjects/bob/../alice/key"},
				{"DELETE", "/subjects/%2e%2e/alice/key"},
				{"DELETE", "/subjects/alice/./key"},
				{"DELETE", "/subjects/alice/key/"},
				{"DELETE", "//subjects/alice/key"},
				{"DELETE", "/generate/../subjects/alice/key"},
				{"DELETE", "/subjects/alice/key/."},
				{"DELETE", "/subjects/\xc3\xa9/key"},
				{"GET", "/ids//" + ids["alice"]},
				{"GET", "/ids/%30" + ids["alice"][1:]},
				{"GET", "/ids/./" + ids["alice"]},
				{"GET", "/./ids/" + ids["alice"]},
				{"GET", "/ids/"},
				{"POST", "/health/../generate"},
				{"POST", "/generate/"},
				{"POST", "/gen%65rate"},
				{"GET", "/health/live/.."},
			} {
				t.Run(tc.method+" "+tc.target, func(t *testing.T) {
					before := h.issuedTotal(t)
					assertError(t, send(tc.method, tc.target), 400, "invalid_request")
					for _, sub := range []string{"key", "alice", "bob"} {
						if erased(sub) {
							t.Fatalf("%s %s erased the data key of %q", tc.method, tc.target, sub)
						}
					}
					if n := countAction(auditLines(t, h.auditPath), "subject.erase", ""); n != 0 {
						t.Fatalf("%d subject.erase entries", n)
					}
					if after := h.issuedTotal(t); after != before {
						t.Fatalf("%s %s issued IDs: %v -> %v", tc.method, tc.target, before, after)
					}
				})
			}
			// The plain path erases exactly its subject.
			if r := send("DELETE", "/subjects/alice/key"); r.status != 200 {
				t.Fatalf("DELETE /subjects/alice/key: %s", r)
			}
			if !erased("alice") || erased("key") || erased("bob") {
				t.Fatalf("erased alice %v, key %v, bob %v; want alice only", erased("alice"), erased("key"), erased("bob"))
			}
			if n := countAction(auditLines(t, h.auditPath), "subject.erase", "alice"); n != 1 {
				t.Fatalf("%d subject.erase entries for alice, want 1", n)
			}
		})
	}
}
