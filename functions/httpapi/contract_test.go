package httpapi_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/functions/httpapi"
)

// documentedRoutes reads the operations of an OpenAPI document as routes:
// path, method, and the one scope of its bearer security requirement (""
// for an operation with none).
func documentedRoutes(doc []byte) ([]httpapi.Route, error) {
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, err
	}
	var out []httpapi.Route
	for path, item := range d.Paths {
		for method, raw := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace", "query":
			default:
				continue // summary, parameters, servers...
			}
			var op struct {
				Security *[]map[string][]string `json:"security"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("%s %s: %w", method, path, err)
			}
			if op.Security == nil {
				return nil, fmt.Errorf("%s %s: no security requirement (an open operation says \"security\": [])", method, path)
			}
			r := httpapi.Route{Path: path, Method: strings.ToUpper(method)}
			switch reqs := *op.Security; {
			case len(reqs) == 0:
			case len(reqs) == 1 && len(reqs[0]) == 1 && len(reqs[0]["bearer"]) == 1:
				r.Scope = reqs[0]["bearer"][0]
			default:
				return nil, fmt.Errorf("%s %s: security %v, want one bearer scope", method, path, reqs)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// routeDrift lists the differences between the routes served and the
// routes a document describes.
func routeDrift(served []httpapi.Route, doc []byte) []string {
	documented, err := documentedRoutes(doc)
	if err != nil {
		return []string{"the document: " + err.Error()}
	}
	key := func(r httpapi.Route) string { return r.Method + " " + r.Path }
	byKey := func(rs []httpapi.Route) map[string]httpapi.Route {
		m := map[string]httpapi.Route{}
		for _, r := range rs {
			m[key(r)] = r
		}
		return m
	}
	s, d := byKey(served), byKey(documented)
	var drift []string
	for _, k := range slices.Sorted(maps.Keys(s)) {
		switch dr, ok := d[k]; {
		case !ok:
			drift = append(drift, fmt.Sprintf("%s is served but api/openapi.json has no operation for it", k))
		case dr.Scope != s[k].Scope:
			drift = append(drift, fmt.Sprintf("%s needs scope %q, api/openapi.json says %q", k, s[k].Scope, dr.Scope))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d)) {
		if _, ok := s[k]; !ok {
			drift = append(drift, fmt.Sprintf("%s is in api/openapi.json but not served", k))
		}
	}
	return drift
}

// TestRoutesAreDocumented: the routes the router dispatches on
// (httpapi.Routes, its table) are exactly the operations of api/openapi.json,
// with the same scopes.
func TestRoutesAreDocumented(t *testing.T) {
	for _, d := range routeDrift(httpapi.Routes(), api.Document()) {
		t.Error(d)
	}
}

// TestRouteDriftIsCaught breaks the document and the route table on
// purpose: each break is reported.
func TestRouteDriftIsCaught(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(api.Document(), &doc); err != nil {
		t.Fatal(err)
	}
	paths := doc["paths"].(map[string]any)
	delete(paths, "/instances")
	paths["/ids/{id}"].(map[string]any)["get"].(map[string]any)["security"] = []any{map[string]any{"bearer": []any{"ids:admin"}}}
	broken, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	served := append(httpapi.Routes(), httpapi.Route{Path: "/undocumented", Method: "GET"})
	got := strings.Join(routeDrift(served, broken), "\n")
	for _, want := range []string{
		"GET /instances is served but api/openapi.json has no operation",
		`GET /ids/{id} needs scope "ids:read", api/openapi.json says "ids:admin"`,
		"GET /undocumented is served but",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("drift report lacks %q:\n%s", want, got)
		}
	}
	served = slices.DeleteFunc(httpapi.Routes(), func(r httpapi.Route) bool { return r.Path == "/metrics" })
	if got := routeDrift(served, api.Document()); len(got) != 1 || !strings.Contains(got[0], "GET /metrics is in api/openapi.json but not served") {
		t.Errorf("a documented route that is not served: %q", got)
	}
}

// samplePath fills a route's parameters with a value of one segment.
func samplePath(r httpapi.Route) string {
	var b strings.Builder
	for seg := range strings.SplitSeq(r.Path[1:], "/") {
		b.WriteByte('/')
		if strings.HasPrefix(seg, "{") {
			seg = "sample"
		}
		b.WriteString(seg)
	}
	return b.String()
}

// TestRoutesServeWhatTheyDeclare probes every route outside development
// mode: its method without a token answers 401 when it has a scope and
// not otherwise; with a token holding every scope but its own, 403 naming
// it; another method, 405 with Allow naming its own. So Routes describes
// what the service does, not only what the table holds.
func TestRoutesServeWhatTheyDeclare(t *testing.T) {
	h, mint := authHarness(t)
	scopes := map[string]bool{}
	for _, r := range httpapi.Routes() {
		if r.Scope != "" {
			scopes[r.Scope] = true
		}
	}
	for _, r := range httpapi.Routes() {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			path := samplePath(r)
			if res := h.do(t, call{method: r.Method, path: path}); (res.status == 401) != (r.Scope != "") {
				t.Errorf("%s %s without a token: %s (scope %q)", r.Method, path, res, r.Scope)
			}
			if r.Scope != "" {
				others := slices.DeleteFunc(slices.Sorted(maps.Keys(scopes)), func(s string) bool { return s == r.Scope })
				res := h.do(t, call{method: r.Method, path: path, header: map[string]string{"Authorization": "Bearer " + mint("probe", strings.Join(others, " "), time.Hour)}})
				if res.status != 403 || !strings.Contains(res.h("WWW-Authenticate"), `scope="`+r.Scope+`"`) {
					t.Errorf("%s %s without scope %s: %s, WWW-Authenticate %q", r.Method, path, r.Scope, res, res.h("WWW-Authenticate"))
				}
			}
			other := "PATCH"
			if res := h.do(t, call{method: other, path: path}); res.status != 405 || res.h("Allow") != r.Method {
				t.Errorf("%s %s: %s, Allow %q; want 405, Allow %s", other, path, res, res.h("Allow"), r.Method)
			}
		})
	}
}

// TestOpenAPIDocument: GET /openapi.json serves api.Document, open (no
// token outside development mode), as application/json.
func TestOpenAPIDocument(t *testing.T) {
	h, _ := authHarness(t)
	r := h.get(t, "/openapi.json")
	if r.status != 200 || r.h("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d, Content-Type %q", r.status, r.h("Content-Type"))
	}
	if string(r.body) != string(api.Document()) {
		t.Errorf("GET /openapi.json serves %d bytes that are not api.Document (%d bytes)", len(r.body), len(api.Document()))
	}
	assertError(t, h.post(t, "/openapi.json", "{}"), 405, "method_not_allowed")
}
