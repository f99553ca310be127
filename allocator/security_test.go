package allocator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/idgen/idgen/harness/testpki"
	"github.com/idgen/idgen/harness/zkharness"
)

// TestDigestAuthACL: with Auth set, the counter and the slots can be changed
// only by the digest user; clients without the credentials (or with a wrong
// password) get ErrNoAuth, and can still list the members (world read).
func TestDigestAuthACL(t *testing.T) {
	root := testRoot(t)
	auth := &DigestAuth{User: "idgen", Password: "s3cret"}
	a := openT(t, Config{Servers: zkAddrs(t), Root: root, Auth: auth})
	ctx := context.Background()
	if _, err := a.ClaimRange(ctx, 10); err != nil {
		t.Fatalf("ClaimRange with auth: %v", err)
	}
	counter := root + "/shards/0/counter"
	forged, _ := encodeCounter(counterData{Next: 0, Token: "forged"})
	for name, c := range map[string]*zk.Conn{
		"anonymous":      rawConn(t, zkAddrs(t), nil),
		"wrong password": rawConn(t, zkAddrs(t), &DigestAuth{User: "idgen", Password: "guess"}),
	} {
		t.Run(name, func(t *testing.T) {
			_, st, err := c.Exists(counter) // Exists needs no permission
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Set(counter, forged, st.Version); !errors.Is(err, zk.ErrNoAuth) {
				t.Errorf("Set counter: %v, want ErrNoAuth", err)
			}
			if _, _, err := c.Get(counter); !errors.Is(err, zk.ErrNoAuth) {
				t.Errorf("Get counter: %v, want ErrNoAuth", err)
			}
			if err := c.Delete(root+"/workers/0", -1); !errors.Is(err, zk.ErrNoAuth) {
				t.Errorf("Delete a worker slot: %v, want ErrNoAuth", err)
			}
			if _, err := c.Create(root+"/workers/99", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
				t.Errorf("Create a worker slot: %v, want ErrNoAuth", err)
			}
			if kids, _, err := c.Children(root + "/members"); err != nil || len(kids) != 1 {
				t.Errorf("list members (world read): %v, %v", kids, err)
			}
		})
	}
	good := rawConn(t, zkAddrs(t), auth)
	if _, _, err := good.Get(counter); err != nil {
		t.Errorf("Get counter with the credentials: %v", err)
	}
	acl, _, err := good.GetACL(counter)
	want := zk.DigestACL(zk.PermAll, auth.User, auth.Password)
	if err != nil || len(acl) != 1 || acl[0] != want[0] {
		t.Errorf("counter ACL %+v (%v), want %+v", acl, err, want)
	}
	if next := counterNext(t, good, root, 0); next != 10 {
		t.Errorf("counter %d after the rejected writes, want 10", next)
	}
}

// TestTLS opens an allocator on the servers' TLS port and claims a range; a
// client without TLS cannot open a session there.
func TestTLS(t *testing.T) {
	e := zkharness.StartT(t, zkharness.Options{TLS: true})
	cfg, err := testpki.LoadClientConfig(e.TLSFiles())
	if err != nil {
		t.Fatal(err)
	}
	a := openT(t, Config{Servers: e.TLSAddrs(), TLS: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := a.ClaimRange(ctx, 100)
	if err != nil || r.Len() != 100 {
		t.Fatalf("ClaimRange over TLS: %+v, %v", r, err)
	}
	if ms, err := a.Members(ctx); err != nil || len(ms) != 1 {
		t.Errorf("Members over TLS: %+v, %v", ms, err)
	}

	pctx, pcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer pcancel()
	if b, err := Open(pctx, Config{Servers: e.TLSAddrs(), Logger: testLogger(t)}); err == nil {
		b.Close()
		t.Errorf("plaintext Open on the TLS port succeeded")
	}
}
