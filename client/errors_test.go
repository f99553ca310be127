package client

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/functions/httpapi"
)

func TestCodesMatchTheServer(t *testing.T) {
	server := serverCodes(t)
	if len(server) < 10 {
		t.Fatalf("found %d codes in the server's table: the parse is wrong", len(server))
	}
	for _, code := range server {
		c, ok := codes[code]
		if !ok {
			t.Errorf("the server's code %q has no sentinel here", code)
			continue
		}
		if want := httpapi.Errorf(code, "x").Status(); c.status != want {
			t.Errorf("code %q: status %d here, %d on the server", code, c.status, want)
		}
	}
	for code := range codes {
		if !strings.Contains(strings.Join(server, " "), code) {
			t.Errorf("code %q is not the server's", code)
		}
	}
}

// serverCodes reads the string constants named Code* of the server's error
// table.
func serverCodes(t *testing.T) []string {
	f, err := parser.ParseFile(token.NewFileSet(), "../functions/httpapi/errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(name.Name, "Code") && lit.Kind == token.STRING {
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, s)
			}
		}
		return true
	})
	return out
}

func TestErrorIs(t *testing.T) {
	for code, c := range codes {
		e := &Error{Status: c.status, Code: code, Message: "m"}
		wrapped := fmt.Errorf("client: op: giving up after 3 attempts: %w", e)
		for other, o := range codes {
			if got := errors.Is(wrapped, o.sentinel); got != (other == code) {
				t.Errorf("errors.Is(%s error, sentinel of %s) = %v", code, other, got)
			}
		}
	}
	unknown := &Error{Status: 418, Code: "teapot"}
	for code, c := range codes {
		if errors.Is(unknown, c.sentinel) {
			t.Errorf("an unknown code matches %s", code)
		}
	}
}

func TestAsError(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   Error
	}{
		{"API body", 409, http.Header{"X-Request-Id": {"r1"}}, `{"error":{"code":"expired","message":"too late"}}`,
			Error{Status: 409, Code: CodeExpired, Message: "too late", RequestID: "r1"}},
		{"503 with Retry-After seconds", 503, http.Header{"Retry-After": {"3"}}, `{"error":{"code":"unavailable","message":"m"}}`,
			Error{Status: 503, Code: CodeUnavailable, Message: "m", RetryAfter: 3 * time.Second}},
		{"429 with Retry-After date", 429, http.Header{"Retry-After": {now.Add(2 * time.Second).Format(http.TimeFormat)}}, ``,
			Error{Status: 429, Code: CodeRateLimited, Message: "Too Many Requests", RetryAfter: 2 * time.Second}},
		{"a proxy's page", 502, nil, "<html>gateway</html>",
			Error{Status: 502, Code: CodeInternal, Message: "Bad Gateway: <html>gateway</html>"}},
		{"a bare 409 names no code", 409, nil, "",
			Error{Status: 409, Message: "Conflict"}},
		{"garbage Retry-After", 503, http.Header{"Retry-After": {"soon"}}, ``,
			Error{Status: 503, Code: CodeUnavailable, Message: "Service Unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h[http.CanonicalHeaderKey(k)] = v
			}
			got := (&answer{status: tt.status, header: h, body: []byte(tt.body)}).asError(now)
			if *got != tt.want {
				t.Fatalf("asError = %+v, want %+v", *got, tt.want)
			}
		})
	}
}
