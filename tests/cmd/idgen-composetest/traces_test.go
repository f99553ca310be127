package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeJaeger answers the query API's routes with canned data.
func fakeJaeger(t *testing.T, services, generate, compensate string) *run {
	t.Helper()
	mux := http.NewServeMux()
	reply := func(data string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, `{"data":%s,"total":0,"errors":null}`, data)
		}
	}
	mux.HandleFunc("/api/services", reply(services))
	mux.HandleFunc("/api/services/idgen/operations", reply(`["POST /generate","registry.register","compensate"]`))
	mux.HandleFunc("/api/traces", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("operation") == "compensate" {
			reply(compensate)(w, r)
			return
		}
		reply(generate)(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	return &run{http: srv.Client(), jaegerPort: port}
}

// A trace of the query API: a server span and, when child is set, its
// registry.register child, from the process p1.
func generateTrace(child bool) string {
	spans := `{"spanID":"a1","operationName":"POST /generate","processID":"p1","references":[]}`
	if child {
		spans += `,{"spanID":"b2","operationName":"registry.register","processID":"p1","references":[{"refType":"CHILD_OF","spanID":"a1"}]}`
	}
	return `[{"traceID":"t1","spans":[` + spans + `],"processes":{"p1":{"serviceName":"idgen","tags":[{"key":"service.instance.id","type":"string","value":"[::]:8080"}]}}}]`
}

const compensateTrace = `[{"traceID":"t2","spans":[{"spanID":"c1","operationName":"compensate","processID":"p1","references":[]}],"processes":{"p1":{"serviceName":"idgen","tags":[]}}}]`

func TestTracesSeen(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, services, generate, compensate string
		want                                 string // in the error; "" = seen
	}{
		{"all there", `["idgen","jaeger"]`, generateTrace(true), compensateTrace, ""},
		{"no idgen service", `["jaeger"]`, generateTrace(true), compensateTrace, "no idgen"},
		{"no request span", `["idgen"]`, `[]`, compensateTrace, "no POST /generate span"},
		{"registry write not a child", `["idgen"]`, generateTrace(false), compensateTrace, "none with a registry.register child"},
		{"worker exports nothing", `["idgen"]`, generateTrace(true), `[]`, "no compensate span"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := fakeJaeger(t, c.services, c.generate, c.compensate)
			summary, err := r.tracesSeen(context.Background())
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("tracesSeen: %v", err)
			case c.want == "" && !strings.Contains(summary, "1 of 1 POST /generate traces with a registry.register child, service.instance.id [[::]:8080]; 1 compensate"):
				t.Fatalf("summary %q", summary)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err %v, want one with %q", err, c.want)
			}
		})
	}
}
