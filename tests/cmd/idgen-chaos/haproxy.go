package main

import (
	"fmt"
	"strings"
	"time"
)

// backendHeader names the instance that answered through HAProxy (empty
// when HAProxy answered itself, e.g. 503 with every backend down).
const backendHeader = "X-Chaos-Backend"

// haproxyTimeouts are the load balancer's bounds. Server is above idgen's
// request timeout (5 s) so that a slow but alive instance answers (200 or
// 503) before HAProxy gives up on it.
type haproxyTimeouts struct {
	Connect, Server, Check, Inter time.Duration
	Retries                       int
}

var defaultHAProxyTimeouts = haproxyTimeouts{
	Connect: time.Second, Server: 8 * time.Second, Check: time.Second, Inter: 500 * time.Millisecond, Retries: 2,
}

// worstCase bounds one request through HAProxy: every attempt may wait
// for the server timeout.
func (t haproxyTimeouts) worstCase() time.Duration {
	return time.Duration(t.Retries+1)*(t.Connect+t.Server) + 2*time.Second
}

// haproxyConfig renders the configuration of the load balancer in front of
// the instances (name → address):
//   - health checks on GET /health/ready every Inter, two failures mark a
//     backend down, two successes up, so a dead, frozen or fenced instance
//     leaves the rotation within about a second;
//   - retries with `option redispatch`: a retry goes to another backend;
//     retry-on also covers a response that never came (SIGKILL mid-request:
//     empty response; SIGSTOP: response timeout) and 503 (an instance that
//     cannot issue right now), which is safe for /generate (a retried request
//     carries the first attempt's Idempotency-Key, which the Go client sends
//     on every request: it answers the IDs the first attempt registered, if
//     any) and for /commit (idempotent);
//   - every answer carries backendHeader, so the checks attribute it.
func haproxyConfig(listen string, backends []string, addrs map[string]string, t haproxyTimeouts) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
	w("global")
	w("    maxconn 4096")
	w("    nbthread 1")
	w("    log stderr format short local0 info") // one line per request: logs/haproxy-*.log
	w("")
	w("defaults")
	w("    mode http")
	w("    log global")
	w("    option dontlognull")
	w("    option httplog")
	w("    option http-buffer-request")
	w("    timeout connect %s", ms(t.Connect))
	w("    timeout client 120s")
	w("    timeout server %s", ms(t.Server))
	w("    timeout check %s", ms(t.Check))
	w("    timeout queue 10s")
	w("    timeout http-request 10s")
	// Longer than the clients' idle timeout (30 s): a keep-alive connection
	// is closed by its client, never reused just as HAProxy closes it.
	w("    timeout http-keep-alive 60s")
	w("    option redispatch 1")
	w("    retries %d", t.Retries)
	w("    retry-on conn-failure empty-response junk-response response-timeout 503")
	w("")
	w("frontend idgen")
	w("    bind %s", listen)
	w("    default_backend idgen")
	w("    http-after-response set-header %s %%[srv_name]", backendHeader)
	w("")
	w("backend idgen")
	w("    balance roundrobin")
	w("    option httpchk")
	w("    http-check send meth GET uri /health/ready")
	w("    http-check expect status 200")
	w("    default-server inter %s fastinter %s downinter %s fall 2 rise 2", ms(t.Inter), ms(t.Inter/2), ms(t.Inter))
	for _, name := range backends {
		w("    server %s %s check", name, addrs[name])
	}
	return b.String()
}
