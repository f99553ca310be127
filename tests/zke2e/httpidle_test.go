package zke2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// A connection that has not sent a request yet when the server's read
// timeout (--request-timeout + 5s) runs out must be closed silently, or
// answered 408 (which HTTP clients know to ignore on an idle connection).
// It must not get "400 invalid_request: malformed HTTP request": nothing
// malformed was sent, and a client whose pooled connection is picked for a
// request just then reads that 400 as the answer to its own request (Go's
// transport logs "Unsolicited response received on idle HTTP channel"; a
// request racing it fails with a 400 that the client will not retry).
// Found by the load tests of this package, whose client pools connections.
// The raw socket's answer is not held to the OpenAPI document: it answers
// no request, so no operation describes it.
func TestIdleConnectionNot400(t *testing.T) {
	e := zkEnsemble(t)
	c := newHTTPClient(t, true)
	p := startIdgen(t, "idgen-idle", procOpts{zk: e.ConnectString(), root: zkRoot(t), extra: []string{"--request-timeout", "1s"}})
	p.waitReady(t, c, 60*time.Second)

	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if err := conn.SetReadDeadline(start.Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn) // until the server closes it
	waited := time.Since(start).Round(100 * time.Millisecond)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server kept an idle, never-used connection open for %v (read timeout should be 6s)", waited)
	}
	if len(got) == 0 {
		t.Logf("idle connection closed silently after %v", waited)
		return
	}
	status, _, _ := bufio.NewReader(strings.NewReader(string(got))).ReadLine()
	if strings.HasPrefix(string(status), "HTTP/1.1 408") {
		t.Logf("idle connection answered %q after %v", status, waited)
		return
	}
	t.Errorf("a connection that sent nothing got, after %v, an unsolicited answer:\n%s\nwant a silent close (or 408 Request Timeout)", waited, got)
}
