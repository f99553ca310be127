package securee2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/platform/auth"
)

// TestMutualTLS: the same stack with --tls-client-ca on both instances. A
// client presenting a certificate of that CA (and a token) issues, reads,
// commits and compensates on both; a client without a certificate, or with
// one from another CA, is refused in the handshake and gets nothing; a
// valid certificate does not stand in for the token (401 without one).
func TestMutualTLS(t *testing.T) {
	s := newStack(t, stackOpts{mTLS: true})
	a, b := s.start("idgen-mtls-a"), s.start("idgen-mtls-b")
	insts := []*instance{a, b}
	tok := s.jwt.token(t, tokenOpts{sub: paymentsSub, scope: fullScope})
	opsTok := s.jwt.token(t, tokenOpts{sub: "prometheus", scope: auth.ScopeOpsRead})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	l := newLedger()
	for i := range 8 {
		in, count := insts[i%2], 0
		if i%4 == 0 {
			count = 50
		}
		l.add(t, in, generate(ctx, t, s.client, in, tok, count))
	}
	// Cross reads, a commit on one instance and a compensation on the other.
	committed, compensated := l.ids[0], l.ids[len(l.ids)-1]
	if ans := transition(ctx, s.client, b, tok, "/commit", committed, ""); ans.status != http.StatusOK || ans.state() != "committed" {
		t.Fatalf("commit over mTLS: %s", ans)
	}
	if ans := transition(ctx, s.client, a, tok, "/compensate", compensated, "declined"); ans.status != http.StatusOK || ans.state() != "compensated" {
		t.Fatalf("compensate over mTLS: %s", ans)
	}
	want := map[string]string{committed.String(): "committed", compensated.String(): "compensated"}
	for _, id := range l.ids {
		st := want[id.String()]
		if st == "" {
			st = "pending"
		}
		for _, in := range insts {
			if ans, v := getID(ctx, s.client, in, tok, id); ans.status != http.StatusOK || v.State != st {
				t.Fatalf("GET /ids/%s on %s: %s %+v, want %s", id, in.name, ans, v, st)
			}
		}
	}

	issued := func() float64 {
		return metric(ctx, t, s.client, a, opsTok, "idgen_ids_issued_total") + metric(ctx, t, s.client, b, opsTok, "idgen_ids_issued_total")
	}
	before := issued()
	rogueCA := newCA(t, s.dir, "securee2e-rogue-ca")
	rogueCert, rogueKey := rogueCA.issue(t, s.dir, "rogue-client", true)
	for _, in := range insts {
		for _, c := range []struct {
			name      string
			cert, key string
		}{{"no client certificate", "", ""}, {"certificate of another CA", rogueCert, rogueKey}} {
			cfg := clientTLS(t, s.httpCA, c.cert, c.key)
			if len(cfg.Certificates) > 0 {
				// Go's client offers a certificate only to a server that
				// names its CA; present it regardless, as an attacker would.
				cert := cfg.Certificates[0]
				cfg.Certificates = nil
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
			}
			if err := tlsProbe(in, cfg); err == nil {
				t.Errorf("%s on %s: handshake accepted", c.name, in.name)
			} else {
				t.Logf("%s on %s refused: %v", c.name, in.name, err)
			}
			cl := httpsClient(t, cfg)
			ans := call(ctx, cl, http.MethodPost, in.url+"/generate", tok, "{}")
			cl.CloseIdleConnections()
			if ans.err == nil {
				t.Errorf("%s on %s: POST /generate answered %s", c.name, in.name, ans)
			}
		}
		// The certificate authenticates the connection, not the caller.
		if ans := call(ctx, s.client, http.MethodPost, in.url+"/generate", "", "{}"); ans.status != http.StatusUnauthorized {
			t.Errorf("client certificate without a token on %s: %s, want 401", in.name, ans)
		}
		plainHTTPGetsNoID(t, in, tok)
	}
	if after := issued(); after != before {
		t.Errorf("idgen_ids_issued_total moved from %v to %v during the refused requests", before, after)
	}

	checkRegistered(t, s.rawRedis(), l.ids)
	store := s.registry()
	for _, id := range l.ids {
		rec, err := store.Get(ctx, id)
		st := want[id.String()]
		if st == "" {
			st = "pending"
		}
		if err != nil || rec.State.String() != st || rec.Subject != paymentsSub {
			t.Errorf("registry %s: %+v %v, want %s", id, rec.State, err, st)
		}
	}
	if n := len(auditEvents(t, []string{"auth.failure"}, a.audit, b.audit)); n != 2 {
		t.Errorf("%d auth failures audited, want 2 (the token-less requests; refused handshakes never reach the handler)", n)
	}
	t.Logf("%d IDs over mTLS from 2 instances; no certificate and a foreign certificate refused", len(l.ids))
}
