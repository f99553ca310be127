package securee2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
	"github.com/idgen/idgen/shared/registry"
)

// The subjects and scopes of the tests' tokens.
const (
	paymentsSub = "payments-svc"
	fullScope   = auth.ScopeGenerate + " " + auth.ScopeRead + " " + auth.ScopeCommit + " " + auth.ScopeCompensate
	failures    = "idgen:failures" // the compensate worker's default stream
)

// TestSecureStack: two instances with every security feature on (HTTPS
// listener, ES256 JWTs with issuer and audience, TLS + digest ACL to a
// 3-node ZooKeeper ensemble, TLS + ACL user to Redis) and the compensate
// worker over Redis TLS. A JWT client over HTTPS generates single IDs and
// batches on both instances, reads them on the other instance, commits and
// compensates them (and replays those), and sends failure events to the
// worker. Then, over the same stack: plain HTTP, TLS 1.1, a CBC-only client,
// a wrong audience, issuer or key, an expired or missing token (401) and a
// missing scope (403) issue nothing and change nothing.
//
// Asserted: unique (shard, counter); every ID in Redis (read directly over
// TLS); every record in exactly the state the test drove, with one step per
// effective transition; every znode under the root carries the digest ACL;
// the audit logs hold exactly one entry per effective transition with the
// token's sub (the worker's: compensate:<source>), and exactly one entry per
// refused request; no token appears in a log.
func TestSecureStack(t *testing.T) {
	s := newStack(t, stackOpts{})
	a, b := s.start("idgen-a"), s.start("idgen-b")
	insts := []*instance{a, b}
	other := func(in *instance) *instance {
		if in == a {
			return b
		}
		return a
	}
	tok := s.jwt.token(t, tokenOpts{sub: paymentsSub, scope: fullScope})
	opsTok := s.jwt.token(t, tokenOpts{sub: "prometheus", scope: auth.ScopeOpsRead})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	// Single IDs and batches of 100 from both instances.
	l := newLedger()
	var singles []idcodec.ID
	for i := range 24 {
		in, count := insts[i%2], 0
		if i%6 == 0 {
			count = 100
		}
		ids := generate(ctx, t, s.client, in, tok, count)
		l.add(t, in, ids)
		if count == 0 {
			singles = append(singles, ids...)
		}
	}
	if len(l.ids) != 420 || len(singles) != 20 {
		t.Fatalf("%d IDs (%d singles), want 420 (20)", len(l.ids), len(singles))
	}
	// Every ID is readable on the instance that did not issue it.
	for _, id := range l.ids {
		ans, v := getID(ctx, s.client, other(l.from[id]), tok, id)
		if ans.status != http.StatusOK || v.State != "pending" || v.Subject != paymentsSub {
			t.Fatalf("GET /ids/%s on the other instance: %s %+v", id, ans, v)
		}
	}

	// Drive states. want holds every ID's expected state.
	want := map[idcodec.ID]registry.State{}
	for _, id := range l.ids {
		want[id] = registry.Pending
	}
	commitIDs, compIDs, both, byWorker := singles[0:5], singles[5:10], singles[10:14], singles[14:17]
	victim := singles[17] // bad credentials try to compensate it
	for _, id := range commitIDs {
		in := other(l.from[id])
		if ans := transition(ctx, s.client, in, tok, "/commit", id, ""); ans.status != http.StatusOK || ans.state() != "committed" {
			t.Fatalf("commit %s on %s: %s", id, in.name, ans)
		}
		// A repeat on the issuing instance is a no-op with the same state.
		if ans := transition(ctx, s.client, l.from[id], tok, "/commit", id, ""); ans.status != http.StatusOK || ans.header.Get("Idgen-Outcome") != "replayed" {
			t.Fatalf("repeated commit %s: %s (outcome %q)", id, ans, ans.header.Get("Idgen-Outcome"))
		}
		want[id] = registry.Committed
	}
	for _, id := range compIDs {
		first := transition(ctx, s.client, other(l.from[id]), tok, "/compensate", id, "card declined")
		if first.status != http.StatusOK || first.state() != "compensated" || first.header.Get("Idgen-Outcome") != "applied" {
			t.Fatalf("compensate %s: %s", id, first)
		}
		again := transition(ctx, s.client, l.from[id], tok, "/compensate", id, "card declined")
		if again.status != http.StatusOK || !bytes.Equal(again.body, first.body) || again.header.Get("Idgen-Outcome") != "replayed" {
			t.Fatalf("repeated compensate %s: %s, first answer %s", id, again, first)
		}
		want[id] = registry.Compensated
	}
	for _, id := range both {
		if ans := transition(ctx, s.client, a, tok, "/commit", id, ""); ans.status != http.StatusOK {
			t.Fatalf("commit %s: %s", id, ans)
		}
		if ans := transition(ctx, s.client, b, tok, "/compensate", id, "saga rolled back"); ans.status != http.StatusOK || ans.state() != "compensated" {
			t.Fatalf("compensate committed %s: %s", id, ans)
		}
		// Hanging: a commit after the compensation is refused, on either instance.
		for _, in := range insts {
			if ans := transition(ctx, s.client, in, tok, "/commit", id, ""); ans.status != http.StatusConflict {
				t.Fatalf("commit after compensation of %s on %s: %s, want 409", id, in.name, ans)
			}
		}
		want[id] = registry.Compensated
	}

	// The compensate worker consumes failure events over Redis TLS; one
	// event is delivered twice (no second effect).
	w := s.startWorker("securee2e-worker")
	rdb := s.rawRedis()
	for i, id := range append(append([]idcodec.ID{}, byWorker...), byWorker[0]) {
		evt := fmt.Sprintf("evt-%d", i%len(byWorker))
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: failures, Values: map[string]any{
			"id": id.String(), "reason": "payment timed out", "event_id": evt, "source": "payments"}}).Err(); err != nil {
			t.Fatalf("XADD over TLS: %v", err)
		}
	}
	for _, id := range byWorker {
		want[id] = registry.Compensated
	}
	proc.Eventually(t, 90*time.Second, "the worker to drain the failure stream", func() bool {
		gs, err := rdb.XInfoGroups(ctx, failures).Result()
		return err == nil && len(gs) == 1 && gs[0].EntriesRead == int64(len(byWorker)+1) && gs[0].Lag == 0 && gs[0].Pending == 0
	})
	for _, id := range byWorker {
		if ans, v := getID(ctx, s.client, a, tok, id); ans.status != http.StatusOK || v.State != "compensated" {
			t.Fatalf("%s after its failure event: %s %+v", id, ans, v)
		}
	}
	if n, _ := rdb.XLen(ctx, failures+":dlq").Result(); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}

	// Bad credentials over this stack: nothing issued, nothing changed.
	issued := func() float64 {
		return metric(ctx, t, s.client, a, opsTok, "idgen_ids_issued_total") + metric(ctx, t, s.client, b, opsTok, "idgen_ids_issued_total")
	}
	issuedBefore := issued()
	n401, n403 := refuseBadTokens(ctx, t, s, insts, victim)
	for _, in := range insts {
		plainHTTPGetsNoID(t, in, tok)
		checkTLSVersions(t, s, in)
	}
	if after := issued(); after != issuedBefore {
		t.Errorf("idgen_ids_issued_total moved from %v to %v during the refused requests", issuedBefore, after)
	}

	// The registry, read directly over TLS: every ID, in its state.
	checkRegistered(t, rdb, l.ids)
	store := s.registry()
	for _, id := range l.ids {
		rec, err := store.Get(ctx, id)
		if err != nil {
			t.Fatalf("registry Get %s: %v", id, err)
		}
		steps := map[registry.State]int{}
		for _, st := range rec.History {
			steps[st.State]++
		}
		wantCommits := 0
		if want[id] == registry.Committed || contains(both, id) {
			wantCommits = 1
		}
		wantComps := 0
		if want[id] == registry.Compensated {
			wantComps = 1
		}
		if rec.State != want[id] || rec.Subject != paymentsSub || steps[registry.Pending] != 1 || steps[registry.Committed] != wantCommits || steps[registry.Compensated] != wantComps {
			t.Errorf("%s: %s, subject %q, steps %v; want %s with %d commit(s), %d compensation(s)", id, rec.State, rec.Subject, steps, want[id], wantCommits, wantComps)
		}
	}

	nodes := checkZKACLs(t, s)

	// Audit: one entry per effective transition, by the token's subject.
	trans := auditEvents(t, []string{audit.ActionCommit, audit.ActionCompensate}, a.audit, b.audit)
	count := map[string]int{}
	for _, ev := range trans {
		count[ev.Action+" "+ev.Resource]++
		if ev.Actor != paymentsSub || ev.Outcome != "applied" {
			t.Errorf("audit entry %+v: want actor %s, outcome applied", ev, paymentsSub)
		}
	}
	for _, id := range l.ids {
		wantCommit, wantComp := 0, 0
		if want[id] == registry.Committed || contains(both, id) {
			wantCommit = 1
		}
		if want[id] == registry.Compensated && !contains(byWorker, id) {
			wantComp = 1
		}
		if c := count[audit.ActionCommit+" "+id.String()]; c != wantCommit {
			t.Errorf("%s: %d commit audit entries, want %d", id, c, wantCommit)
		}
		if c := count[audit.ActionCompensate+" "+id.String()]; c != wantComp {
			t.Errorf("%s: %d compensate audit entries in the instances' logs, want %d", id, c, wantComp)
		}
	}
	if len(trans) != len(commitIDs)+len(compIDs)+2*len(both) {
		t.Errorf("%d transition audit entries, want %d", len(trans), len(commitIDs)+len(compIDs)+2*len(both))
	}
	workerComps := auditEvents(t, []string{audit.ActionCompensate}, w.audit)
	if len(workerComps) != len(byWorker) {
		t.Errorf("%d compensations in the worker's audit log, want %d: %+v", len(workerComps), len(byWorker), workerComps)
	}
	for _, ev := range workerComps {
		id, err := idcodec.Parse(ev.Resource)
		if err != nil || ev.Actor != "compensate:payments" || ev.Outcome != "applied" || !strings.HasPrefix(ev.RequestID, "evt-") || !contains(byWorker, id) {
			t.Errorf("worker audit entry %+v", ev)
		}
	}
	failuresAudited := auditEvents(t, []string{audit.ActionAuthFailure}, a.audit, b.audit)
	denied := auditEvents(t, []string{audit.ActionScopeDenied}, a.audit, b.audit)
	if len(failuresAudited) != n401 || len(denied) != n403 {
		t.Errorf("audit: %d auth failures and %d scope denials, want %d and %d (one per refused request)", len(failuresAudited), len(denied), n401, n403)
	}
	for _, ev := range denied {
		if ev.Actor == "" || ev.Outcome != audit.OutcomeDenied {
			t.Errorf("scope denial entry %+v", ev)
		}
	}
	// Tokens are secrets: never in a log.
	for _, secret := range []string{tok, opsTok, zkPassword, redisPassword} {
		for _, in := range insts {
			if strings.Contains(in.p.Stderr(), secret) || fileContains(t, secret, in.audit) {
				t.Errorf("%s logged a token or password", in.name)
			}
		}
		if strings.Contains(w.p.Stderr(), secret) {
			t.Error("the worker logged a token or password")
		}
	}
	t.Logf("%d IDs over HTTPS from 2 instances (ZooKeeper TLS + digest ACL on %d znodes, Redis TLS + ACL user); %d committed, %d compensated over HTTP, %d by the worker; %d requests refused with 401, %d with 403",
		len(l.ids), nodes, len(commitIDs)+len(both), len(compIDs)+len(both), len(byWorker), n401, n403)
}

// refuseBadTokens sends requests with bad credentials to both instances and
// checks each answer; the compensation attempts target victim, which must
// stay pending. It returns how many 401 and 403 answers it got (each must
// have one audit entry).
func refuseBadTokens(ctx context.Context, t *testing.T, s *stack, insts []*instance, victim idcodec.ID) (n401, n403 int) {
	t.Helper()
	stranger := newSigner(t, t.TempDir(), s.jwt.kid, true) // same kid, another key
	bad := []struct{ name, token string }{
		{"wrong audience", s.jwt.token(t, tokenOpts{sub: paymentsSub, scope: fullScope, aud: "another-service"})},
		{"wrong issuer", s.jwt.token(t, tokenOpts{sub: paymentsSub, scope: fullScope, iss: "https://evil.example"})},
		{"expired", s.jwt.token(t, tokenOpts{sub: paymentsSub, scope: fullScope, now: time.Now().Add(-3 * time.Hour)})},
		{"signed by another key", stranger.token(t, tokenOpts{sub: paymentsSub, scope: fullScope})},
		{"no token", ""},
		{"garbage", "not.a.jwt"},
	}
	reader := s.jwt.token(t, tokenOpts{sub: "reader-svc", scope: auth.ScopeRead})
	generator := s.jwt.token(t, tokenOpts{sub: "generator-svc", scope: auth.ScopeGenerate})
	compensate := `{"id":"` + victim.String() + `","reason":"forged"}`
	for _, in := range insts {
		for _, bt := range bad {
			for _, r := range []struct{ method, path, body string }{
				{http.MethodPost, "/generate", "{}"}, {http.MethodPost, "/compensate", compensate}, {http.MethodGet, "/ids/" + victim.String(), ""},
			} {
				ans := call(ctx, s.client, r.method, in.url+r.path, bt.token, r.body)
				if ans.status != http.StatusUnauthorized || ans.code() != "unauthorized" || !strings.HasPrefix(ans.header.Get("WWW-Authenticate"), "Bearer") || uuidRE.Match(ans.body) && r.path == "/generate" {
					t.Errorf("%s, %s %s on %s: %s (WWW-Authenticate %q), want 401", bt.name, r.method, r.path, in.name, ans, ans.header.Get("WWW-Authenticate"))
				}
				n401++
			}
		}
		for _, r := range []struct{ who, token, method, path, body string }{
			{"reader", reader, http.MethodPost, "/generate", "{}"},
			{"reader", reader, http.MethodPost, "/compensate", compensate},
			{"reader", reader, http.MethodPost, "/commit", `{"id":"` + victim.String() + `"}`},
			{"reader", reader, http.MethodGet, "/metrics", ""},
			{"generator", generator, http.MethodPost, "/compensate", compensate},
			{"generator", generator, http.MethodGet, "/ids/" + victim.String(), ""},
		} {
			ans := call(ctx, s.client, r.method, in.url+r.path, r.token, r.body)
			if ans.status != http.StatusForbidden || ans.code() != "forbidden" || uuidRE.Match(ans.body) && r.path == "/generate" {
				t.Errorf("%s token, %s %s on %s: %s, want 403", r.who, r.method, r.path, in.name, ans)
			}
			n403++
		}
		// The reader may read: the victim is untouched.
		if ans, v := getID(ctx, s.client, in, reader, victim); ans.status != http.StatusOK || v.State != "pending" || len(v.History) != 1 {
			t.Errorf("victim on %s after the refused requests: %s %+v", in.name, ans, v)
		}
	}
	return n401, n403
}

// checkTLSVersions: TLS 1.2 (AEAD) and 1.3 clients are served; a client
// offering at most TLS 1.1, or only CBC suites in TLS 1.2, is refused.
func checkTLSVersions(t *testing.T, s *stack, in *instance) {
	t.Helper()
	base := s.tls
	with := func(f func(*tls.Config)) *tls.Config { c := base.Clone(); f(c); return c }
	for _, c := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"TLS 1.3", with(func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }), true},
		{"TLS 1.2 AEAD", with(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), true},
		{"TLS 1.0-1.1 only", with(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }), false},
		{"TLS 1.2 CBC suites only", with(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
		}), false},
	} {
		err := tlsProbe(in, c.cfg)
		if (err == nil) != c.ok {
			t.Errorf("%s on %s: handshake error %v, want accepted=%v", c.name, in.name, err, c.ok)
		} else if !c.ok {
			t.Logf("%s on %s refused: %v", c.name, in.name, err)
		}
	}
}

func contains(ids []idcodec.ID, id idcodec.ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
