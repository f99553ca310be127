package apicheck_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idgen/idgen/api/apitest"
	"github.com/idgen/idgen/tests/internal/apicheck"
)

// TestVerify: a client through apitest.Transport passes, over HTTP and
// HTTPS; a client that checks nothing, or only a sample of the 2xx
// answers, does not.
func TestVerify(t *testing.T) {
	tests := []struct {
		name string
		wrap func(base http.RoundTripper, tb apitest.TB) http.RoundTripper
		want string // "" passes, else a part of the error
	}{
		{"every answer", apitest.Transport, ""},
		{"a sample", func(base http.RoundTripper, tb apitest.TB) http.RoundTripper { return apitest.Sampled(base, tb, 200) }, "want exactly those two"},
		{"none", func(base http.RoundTripper, _ apitest.TB) http.RoundTripper { return base }, "want exactly those two"},
	}
	for _, tt := range tests {
		for _, tls := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				err := apicheck.Verify(tls, func(tb apitest.TB, srv *httptest.Server) *http.Client {
					return &http.Client{Transport: tt.wrap(srv.Client().Transport, tb)}
				})
				if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
					t.Errorf("TLS %v: Verify = %v, want %q", tls, err, tt.want)
				}
			})
		}
	}
}
