package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/testpki"
	"github.com/idgen/idgen/shared/registry"
)

// TestTLSAndACL: a TLS-only server with an ACL user: the Store connects with
// the CA, the client certificate and the user's credentials; wrong
// credentials and plain TCP fail at Open.
func TestTLSAndACL(t *testing.T) {
	srv := redisharness.StartStandaloneT(t, redisharness.Options{TLS: true, ACLUser: "idgen", ACLPassword: "s3cret"})
	tc, err := testpki.LoadClientConfig(srv.TLSFiles())
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{srv.Addr()}
	s := open(t, Config{Addrs: addrs, TLS: tc, Username: "idgen", Password: "s3cret"})
	ctx := context.Background()
	if _, err := s.Register(ctx, pending(id(1)), 0, testMS); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"wrong password": {Addrs: addrs, TLS: tc, Username: "idgen", Password: "wrong"},
		"no TLS":         {Addrs: addrs, Username: "idgen", Password: "s3cret"},
	} {
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		bad, err := Open(octx, cfg)
		cancel()
		if !errors.Is(err, registry.ErrUnavailable) {
			if bad != nil {
				bad.Close()
			}
			t.Fatalf("%s: Open = %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}
