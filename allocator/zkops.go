package allocator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// call runs f, a blocking ZooKeeper request, and returns early when ctx ends.
// The request itself cannot be cancelled: it stays queued or in flight until
// the library answers it (at the latest when the connection is closed), so a
// write abandoned this way has an unknown outcome and its caller must treat it
// as possibly applied.
func call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	if ctx.Done() == nil {
		return f()
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// fromServer reports whether err is an answer of the server itself (so the
// request reached it and its outcome is known), as opposed to a connection
// failure, a closed client or a cancelled wait.
func fromServer(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, zk.ErrBadVersion),
		errors.Is(err, zk.ErrNoNode),
		errors.Is(err, zk.ErrNodeExists),
		errors.Is(err, zk.ErrNoAuth),
		errors.Is(err, zk.ErrInvalidACL),
		errors.Is(err, zk.ErrNotEmpty),
		errors.Is(err, zk.ErrNoChildrenForEphemerals),
		errors.Is(err, zk.ErrBadArguments),
		errors.Is(err, zk.ErrInvalidPath),
		errors.Is(err, zk.ErrInvalidFlags):
		return true
	}
	return false
}

// transient reports whether a failed request is worth retrying on the same
// client: the connection dropped, no server could be reached, or the session
// changed under the request. The outcome of a write that failed this way is
// unknown.
func transient(err error) bool {
	var ne net.Error
	switch {
	case err == nil:
		return false
	case errors.Is(err, zk.ErrConnectionClosed),
		errors.Is(err, zk.ErrNoServer),
		errors.Is(err, zk.ErrSessionExpired),
		errors.Is(err, zk.ErrSessionMoved),
		errors.Is(err, errSessionChanged),
		errors.Is(err, io.EOF),
		errors.As(err, &ne):
		return true
	}
	return false
}

// acls builds the ACL lists of the znodes this service creates.
type acls struct {
	private []zk.ACL // counter and its parents
	public  []zk.ACL // discovery: members/, workers/ and their children
}

func newACLs(auth *DigestAuth) acls {
	if auth == nil {
		open := zk.WorldACL(zk.PermAll)
		return acls{private: open, public: open}
	}
	digest := zk.DigestACL(zk.PermAll, auth.User, auth.Password)
	public := append(append([]zk.ACL{}, digest...), zk.WorldACL(zk.PermRead)...)
	return acls{private: digest, public: public}
}

// tlsDialer dials ZooKeeper with TLS. The library's connect timeout (1s)
// bounds the TCP dial; the handshake gets a few times that, since a JVM's
// first handshakes are slow.
func tlsDialer(cfg *tls.Config) zk.Dialer {
	return func(network, addr string, timeout time.Duration) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*timeout)
		defer cancel()
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
		return d.DialContext(ctx, network, addr)
	}
}

// zkLogger routes the client library's printf logging to zap at debug level
// (it reports every reconnect; the allocator logs what matters itself).
type zkLogger struct{ log *zap.SugaredLogger }

func (l zkLogger) Printf(format string, args ...any) {
	l.log.Debugf(strings.TrimSuffix(format, "\n"), args...)
}

// pathPrefixes lists /a, /a/b, /a/b/c for /a/b/c.
func pathPrefixes(path string) []string {
	var out []string
	cur := ""
	for _, p := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		cur += "/" + p
		out = append(out, cur)
	}
	return out
}

// znode is one node of the skeleton. The skeleton's znodes are PERSISTENT,
// never containers: those vanish when their last child goes, and with them
// the counter's history.
type znode struct {
	path string
	data []byte
	acl  []zk.ACL
}

// ensureNodes creates the missing nodes of ns in order (parents first). The
// Exists checks run concurrently, so the library pipelines them on the one
// connection: one round trip when everything exists.
func (a *Allocator) ensureNodes(ctx context.Context, ns []znode) error {
	exists := make([]bool, len(ns))
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, _, err := call2(ctx, func() (bool, *zk.Stat, error) { return a.conn.Exists(n.path) })
			exists[i] = err == nil && ok
		}()
	}
	wg.Wait()
	for i, n := range ns {
		if exists[i] {
			continue
		}
		if err := a.ensureNode(ctx, n.path, n.data, n.acl); err != nil {
			return fmt.Errorf("ensure %s: %w", n.path, err)
		}
	}
	return nil
}

// ensureNode creates one persistent znode unless it exists.
func (a *Allocator) ensureNode(ctx context.Context, path string, data []byte, acl []zk.ACL) error {
	for attempt := 0; ; attempt++ {
		ok, _, err := call2(ctx, func() (bool, *zk.Stat, error) { return a.conn.Exists(path) })
		if err == nil && ok {
			return nil
		}
		if err == nil {
			_, err = call(ctx, func() (string, error) { return a.conn.Create(path, data, zk.FlagPersistent, acl) })
			if err == nil || errors.Is(err, zk.ErrNodeExists) {
				return nil
			}
		}
		if !transient(err) {
			return a.closedOr(err)
		}
		if !backoff.Sleep(ctx, backoff.Equal(attempt, 20*time.Millisecond, time.Second)) {
			return ctx.Err()
		}
	}
}

// call2 is call for requests with two results.
func call2[A, B any](ctx context.Context, f func() (A, B, error)) (A, B, error) {
	type pair struct {
		a A
		b B
	}
	p, err := call(ctx, func() (pair, error) {
		a, b, err := f()
		return pair{a, b}, err
	})
	return p.a, p.b, err
}

// closedOr maps the library's "closing" to ErrClosed once Close was called.
func (a *Allocator) closedOr(err error) error {
	if a.closed.Load() && (errors.Is(err, zk.ErrClosing) || errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, context.Canceled)) {
		return ErrClosed
	}
	return err
}
