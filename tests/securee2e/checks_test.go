package securee2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/saga/sagatest"
	"github.com/idgen/idgen/tests/internal/idledger"
)

// checkRegistered fails t unless every ID's bucket field holds a value
// written for that very ID.
func checkRegistered(t testing.TB, c *redis.Client, ids []idcodec.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bad, err := idledger.Unregistered(ctx, c, ids)
	if err != nil {
		t.Fatalf("reading the registry over TLS: %v", err)
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d IDs are not in the registry, e.g.:\n%s", len(bad), len(ids), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
}

// auditEvents reads every audit line of the files with one of actions.
func auditEvents(t testing.TB, actions []string, paths ...string) []audit.Event {
	t.Helper()
	return sagatest.AuditEvents(t, func(ev audit.Event) bool { return slices.Contains(actions, ev.Action) }, paths...)
}

// fileContains reports whether any of the files holds s.
func fileContains(t testing.TB, s string, paths ...string) bool {
	t.Helper()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// checkZKACLs walks every znode under the stack's root over TLS with the
// digest credentials and checks its ACL: the digest user holds all
// permissions, and nobody else anything but read (discovery znodes only);
// the root and the counter are readable by the digest user alone. A
// session without the credentials cannot read or move the counter, nor
// take a worker slot. It returns the number of znodes checked.
func checkZKACLs(t *testing.T, s *stack) int {
	t.Helper()
	conn := s.zkConn(true)
	digest := zk.DigestACL(zk.PermAll, zkUser, zkPassword)[0]
	exact := map[string]bool{s.root: true, s.root + "/shards/0/counter": true}
	n := 0
	var walk func(path string)
	walk = func(path string) {
		acl, _, err := conn.GetACL(path)
		if err != nil {
			t.Errorf("GetACL %s: %v", path, err)
			return
		}
		n++
		hasDigest := false
		for _, a := range acl {
			switch {
			case a == digest:
				hasDigest = true
			case a.Scheme == "world" && a.ID == "anyone" && a.Perms == zk.PermRead:
				if exact[path] {
					t.Errorf("%s is world-readable: %+v", path, acl)
				}
			default:
				t.Errorf("%s: ACL entry %+v beside the digest user's", path, a)
			}
		}
		if !hasDigest {
			t.Errorf("%s: ACL %+v lacks %+v", path, acl, digest)
		}
		kids, _, err := conn.Children(path)
		if err != nil {
			t.Errorf("Children %s: %v", path, err)
			return
		}
		for _, k := range kids {
			walk(path + "/" + k)
		}
	}
	walk(s.root)
	for _, p := range []string{s.root + "/shards/0/counter", s.root + "/workers", s.root + "/members"} {
		if ok, _, err := conn.Exists(p); err != nil || !ok {
			t.Errorf("znode %s missing: %v", p, err)
		}
	}

	anon := s.zkConn(false)
	counter := s.root + "/shards/0/counter"
	if _, _, err := anon.Get(counter); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("anonymous Get of the counter: %v, want ErrNoAuth", err)
	}
	if _, st, err := anon.Exists(counter); err == nil {
		if _, err := anon.Set(counter, []byte(`{"next":0}`), st.Version); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("anonymous Set of the counter: %v, want ErrNoAuth", err)
		}
	}
	if _, err := anon.Create(s.root+"/workers/4000", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("anonymous worker slot: %v, want ErrNoAuth", err)
	}
	return n
}

// plainHTTPGetsNoID sends POST /generate in plain HTTP (with a valid token)
// to the TLS port, with net/http and as raw bytes on the socket: no answer
// may carry an ID or a 2xx status. These answers are not held to the
// OpenAPI document: the TLS listener, not the API, refuses the request.
func plainHTTPGetsNoID(t *testing.T, in *instance, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := call(ctx, &http.Client{Timeout: 10 * time.Second}, http.MethodPost, "http://"+in.addr+"/generate", token, "{}")
	if a.err == nil && (a.status/100 == 2 || uuidRE.Match(a.body)) {
		t.Errorf("plain HTTP to the TLS port: %s", a)
	}
	conn, err := net.DialTimeout("tcp", in.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "POST /generate HTTP/1.1\r\nHost: " + in.addr + "\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	if _, err := conn.Write([]byte(req)); err != nil {
		return // refused outright
	}
	reply, _ := io.ReadAll(io.LimitReader(conn, 64<<10))
	if bytes.Contains(reply, []byte(" 200 ")) || uuidRE.Match(reply) {
		t.Errorf("raw plain HTTP to the TLS port got %q", reply)
	}
	t.Logf("plain HTTP to the TLS port: net/http: %v; raw socket got %d bytes back", a, len(reply))
}

// tlsProbe handshakes with in using cfg (ServerName 127.0.0.1 trusted by
// root) and reports the error, nil for a completed handshake in which the
// server also accepted the client (a first read does not fail with an
// alert; TLS 1.3 reports a refused client certificate only then).
func tlsProbe(in *instance, cfg *tls.Config) error {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.Dial("tcp", in.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf), "HTTP/1.1 200") {
		return fmt.Errorf("answer %q", buf)
	}
	return nil
}
