package apitest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/idgen/idgen/api/apitest"
)

// TestCheckAgreesWithKin: Check, with its schemas compiled once, gives
// every answer of checkCases the verdict of kin-openapi's own response
// check.
func TestCheckAgreesWithKin(t *testing.T) {
	v, err := apitest.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range checkCases() {
		t.Run(tt.name, func(t *testing.T) { agree(t, v, tt.x) })
	}
}

func agree(t *testing.T, v *apitest.Validator, x apitest.Exchange) {
	t.Helper()
	got, want := v.Check(x), v.ReferenceCheck(x)
	if (got == nil) != (want == nil) {
		t.Errorf("%s %s %d %q %q: Check says %v, kin-openapi says %v", x.Method, x.Target, x.Status, x.Header, x.Body, got, want)
	}
}

// FuzzCheckAgreesWithKin: on any answer, Check and kin-openapi's response
// check agree whether the document describes it.
func FuzzCheckAgreesWithKin(f *testing.F) {
	for _, c := range checkCases() {
		h := c.x.Header
		f.Add(c.x.Method, c.x.Target, c.x.Status, h.Get("Content-Type"), h.Get("Retry-After"), h.Get("Idgen-Outcome"), h.Get("X-Request-Id"), string(c.x.Body))
	}
	v, err := apitest.Default()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, target string, status int, ctype, retryAfter, outcome, requestID, body string) {
		if status < 100 || status > 599 || !strings.HasPrefix(target, "/") {
			return
		}
		h := http.Header{}
		for k, v := range map[string]string{"Content-Type": ctype, "Retry-After": retryAfter, "Idgen-Outcome": outcome, "X-Request-Id": requestID} {
			if v != "" {
				h.Set(k, v)
			}
		}
		agree(t, v, apitest.Exchange{Method: method, Target: target, Status: status, Header: h, Body: []byte(body)})
	})
}
