package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/idgen/idgen/shared/platform/clocktest"
)

// rotation is a JWKS file and the key pairs that may appear in it.
type rotation struct {
	t     *testing.T
	path  string
	pairs map[string]keyPair // kid → pair
}

func newRotation(t *testing.T) *rotation {
	return &rotation{t: t, path: filepath.Join(t.TempDir(), "jwks.json"), pairs: map[string]keyPair{
		"a": rsaPair(t), "b": ecPair(t), "c": edPair(t), "d": ecPair(t),
	}}
}

// publish writes a JWKS holding kids, replacing the file by rename (as a
// deployment tool or a ConfigMap update does).
func (r *rotation) publish(kids ...string) {
	r.t.Helper()
	var set jose.JSONWebKeySet
	for _, kid := range kids {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: r.pairs[kid].pubKey, KeyID: kid, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		r.t.Fatal(err)
	}
	r.writeRaw(b)
}

func (r *rotation) writeRaw(b []byte) {
	r.t.Helper()
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.path); err != nil {
		r.t.Fatal(err)
	}
}

// token signs a token with the pair of kid, carrying kid.
func (r *rotation) token(kid string, now time.Time) string {
	r.t.Helper()
	tok, err := Mint(MintConfig{PrivateKeyFile: r.pairs[kid].priv, KeyID: kid, Subject: "svc-" + kid, Scope: ScopeGenerate, Now: now, TTL: 24 * time.Hour})
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// events collects OnReload calls.
type events struct {
	mu sync.Mutex
	ev []ReloadEvent
}

func (e *events) add(ev ReloadEvent) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }
func (e *events) take() []ReloadEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.ev
	e.ev = nil
	return out
}

// TestJWKSRotation drives a JWKS through a key rotation and through broken
// files, with a clock the test moves, and checks after every step which
// kids verify, what OnReload and ReloadStatus report.
func TestJWKSRotation(t *testing.T) {
	const interval = 10 * time.Second
	r := newRotation(t)
	r.publish("a")
	clk := clocktest.New(time.Now())
	var evs events
	v, err := NewVerifier(Config{PublicKeyFile: r.path, ReloadInterval: interval, OnReload: evs.add})
	if err != nil {
		t.Fatal(err)
	}
	v.now = clk.Now
	v.scheduleCheck(clk.Now())
	toks := map[string]string{}
	for kid := range r.pairs {
		toks[kid] = r.token(kid, clk.Now())
	}
	// expect checks which kids verify now; each is verified twice, so the
	// second answer of an accepted token comes from the cache.
	expect := func(step string, accepted ...string) {
		t.Helper()
		for _, kid := range slices.Sorted(maps.Keys(r.pairs)) {
			want := slices.Contains(accepted, kid)
			for range 2 {
				p, err := v.Verify(toks[kid])
				if want && (err != nil || p.Subject != "svc-"+kid) {
					t.Fatalf("%s: kid %s refused: %v", step, kid, err)
				}
				if !want && !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("%s: kid %s: %+v, %v; want ErrInvalidToken", step, kid, p, err)
				}
			}
		}
	}
	status := func(step string, kids []string, wantErr string) {
		t.Helper()
		got, _, err := v.ReloadStatus()
		if !slices.Equal(got, kids) {
			t.Errorf("%s: ReloadStatus kids %v, want %v", step, got, kids)
		}
		if (wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%s: ReloadStatus error %v, want %q", step, err, wantErr)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("%s: error %v is not ErrConfig", step, err)
		}
	}
	event := func(step string, changed bool, kids []string, wantErr string) {
		t.Helper()
		got := evs.take()
		if len(got) != 1 {
			t.Fatalf("%s: %d OnReload events %+v, want 1", step, len(got), got)
		}
		e := got[0]
		if e.Changed != changed || !slices.Equal(e.KeyIDs, kids) || e.File != r.path ||
			(wantErr == "") != (e.Err == nil) || (e.Err != nil && !strings.Contains(e.Err.Error(), wantErr)) {
			t.Fatalf("%s: event %+v, want changed=%v kids=%v err~%q", step, e, changed, kids, wantErr)
		}
	}
	noEvent := func(step string) {
		t.Helper()
		if got := evs.take(); len(got) != 0 {
			t.Fatalf("%s: unexpected OnReload events %+v", step, got)
		}
	}

	expect("start", "a")
	status("start", []string{"a"}, "")

	// A new kid is published; until the interval has passed the file is
	// not read again.
	r.publish("a", "b")
	clk.Add(interval / 2)
	expect("b published, check not due", "a")
	noEvent("check not due")
	clk.Add(interval / 2)
	expect("b published, checked", "a", "b")
	event("b added", true, []string{"a", "b"}, "")

	// The old kid is removed: its token, cached a moment ago, is refused
	// from the first check on.
	r.publish("b")
	clk.Add(interval)
	expect("a removed", "b")
	event("a removed", true, []string{"b"}, "")

	// Broken files never replace the keys in use, and each is reported once.
	for _, bad := range []struct{ name, content, err string }{
		{"not JSON", `{"keys": [`, "JWKS"},
		{"empty JWKS", `{"keys": []}`, "no public signing key"},
		{"encryption keys only", encOnlyJWKS(t, r.pairs["b"].pubKey), "no public signing key"},
		{"weak RSA key", weakRSAJWKS(t), "at least 2048"},
		{"empty file", ``, "no PEM block"},
	} {
		r.writeRaw([]byte(bad.content))
		clk.Add(interval)
		expect(bad.name, "b")
		event(bad.name, false, []string{"b"}, bad.err)
		status(bad.name, []string{"b"}, bad.err)
		clk.Add(interval)
		expect(bad.name+", again", "b")
		noEvent(bad.name + ", again")
	}
	// A missing file (a volume being remounted) is the same.
	if err := os.Remove(r.path); err != nil {
		t.Fatal(err)
	}
	clk.Add(interval)
	expect("file missing", "b")
	event("file missing", false, []string{"b"}, "no such file")
	clk.Add(interval)
	expect("file still missing", "b")
	noEvent("file still missing")

	// The content in use comes back: no new key set, the error clears.
	r.publish("b")
	clk.Add(interval)
	expect("file back", "b")
	event("file back", false, []string{"b"}, "")
	status("file back", []string{"b"}, "")

	// The next rotation works after all that.
	r.publish("b", "c", "d")
	clk.Add(interval)
	expect("c and d added", "b", "c", "d")
	event("c and d added", true, []string{"b", "c", "d"}, "")
}

func encOnlyJWKS(t *testing.T, pub any) string {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "e", Use: "enc"}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func weakRSAJWKS(t *testing.T) string {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "weak", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReloadPEMAndSecret: a PEM public key file and an HS256 secret file
// rotate the same way (no kid: the file's single key is replaced).
func TestReloadPEMAndSecret(t *testing.T) {
	t.Run("PEM", func(t *testing.T) {
		oldK, newK := ecPair(t), rsaPair(t)
		path := filepath.Join(t.TempDir(), "pub.pem")
		copyFile(t, oldK.pub, path)
		v, err := NewVerifier(Config{PublicKeyFile: path, ReloadInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		oldTok, _ := Mint(MintConfig{PrivateKeyFile: oldK.priv, Subject: "s"})
		newTok, _ := Mint(MintConfig{PrivateKeyFile: newK.priv, Subject: "s"})
		if _, err := v.Verify(oldTok); err != nil {
			t.Fatal(err)
		}
		copyFile(t, newK.pub, path)
		// ReloadInterval < 0: only Reload reads the file.
		if _, err := v.Verify(oldTok); err != nil {
			t.Fatalf("reloaded without Reload: %v", err)
		}
		if changed, err := v.Reload(); !changed || err != nil {
			t.Fatalf("Reload = %v, %v", changed, err)
		}
		if changed, err := v.Reload(); changed || err != nil {
			t.Fatalf("second Reload = %v, %v; want no change", changed, err)
		}
		if _, err := v.Verify(oldTok); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("old key after rotation: %v", err)
		}
		if _, err := v.Verify(newTok); err != nil {
			t.Fatalf("new key after rotation: %v", err)
		}
		// A broken file: Reload reports it every time it is asked, the key
		// stays.
		if err := os.WriteFile(path, []byte("-----BEGIN PUBLIC KEY-----\ngarbage\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if changed, err := v.Reload(); changed || !errors.Is(err, ErrConfig) {
				t.Fatalf("Reload of a broken file = %v, %v", changed, err)
			}
		}
		if _, err := v.Verify(newTok); err != nil {
			t.Fatalf("key lost to a broken file: %v", err)
		}
	})
	t.Run("HS256", func(t *testing.T) {
		path := write(t, "secret", []byte(strings.Repeat("s", 40)))
		other := write(t, "other", []byte(strings.Repeat("o", 40)))
		clk := clocktest.New(time.Now())
		v, err := NewVerifier(Config{HS256SecretFile: path, ReloadInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		v.now = clk.Now
		v.scheduleCheck(clk.Now())
		oldTok, _ := Mint(MintConfig{HS256SecretFile: path, Subject: "s", Now: clk.Now()})
		newTok, _ := Mint(MintConfig{HS256SecretFile: other, Subject: "s", Now: clk.Now()})
		if _, err := v.Verify(oldTok); err != nil {
			t.Fatal(err)
		}
		// Too short: refused, the old secret stays.
		if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
		if _, err := v.Verify(oldTok); err != nil {
			t.Fatalf("secret lost to a short one: %v", err)
		}
		copyFile(t, other, path)
		clk.Add(time.Second)
		if _, err := v.Verify(oldTok); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("old secret after rotation: %v", err)
		}
		if _, err := v.Verify(newTok); err != nil {
			t.Fatalf("new secret after rotation: %v", err)
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCacheGenerationGuard: a verification stored by a Verify that
// overlapped a reload (it verified with the old keys, then stored its
// result after the swap) is never served.
func TestCacheGenerationGuard(t *testing.T) {
	r := newRotation(t)
	r.publish("a")
	v, err := NewVerifier(Config{PublicKeyFile: r.path, ReloadInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	tok := r.token("a", time.Now())
	old := v.set.Load()
	p, exp, err := v.verify(old, tok) // the overlapping Verify, before the swap
	if err != nil {
		t.Fatal(err)
	}
	r.publish("b")
	if changed, err := v.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	v.mu.Lock() // ... and its store, after the swap
	v.cache[sha256.Sum256([]byte(tok))] = cached{p: p, exp: exp, gen: old.gen}
	v.mu.Unlock()
	if _, err := v.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token of a removed key served from a stale cache entry: %v", err)
	}
}

// TestReloadConcurrent: Verify on many goroutines while the file rotates
// (in place, so readers also see half-written files); run with -race. When
// the rotation ends, the removed keys are refused and the last key works.
func TestReloadConcurrent(t *testing.T) {
	r := newRotation(t)
	r.publish("a", "b")
	var evs atomic.Int64
	v, err := NewVerifier(Config{PublicKeyFile: r.path, ReloadInterval: time.Millisecond, OnReload: func(ReloadEvent) { evs.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	toks := map[string]string{"a": r.token("a", now), "b": r.token("b", now), "c": r.token("c", now)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Value
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// b is in every version of the file: never refused.
				if _, err := v.Verify(toks["b"]); err != nil {
					bad.Store(fmt.Sprintf("goroutine %d: kid b refused: %v", g, err))
				}
				_, _ = v.Verify(toks[[]string{"a", "c"}[i%2]])
			}
		}()
	}
	for i := range 50 {
		kids := []string{"a", "b"}
		if i%2 == 1 {
			kids = []string{"b", "c"}
		}
		var set jose.JSONWebKeySet
		for _, kid := range kids {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: r.pairs[kid].pubKey, KeyID: kid, Use: "sig"})
		}
		b, _ := json.Marshal(set)
		if err := os.WriteFile(r.path, b, 0o600); err != nil { // in place: torn reads happen
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if s, _ := bad.Load().(string); s != "" {
		t.Fatal(s)
	}
	r.publish("c")
	time.Sleep(5 * time.Millisecond)
	for kid, ok := range map[string]bool{"a": false, "b": false, "c": true} {
		if _, err := v.Verify(toks[kid]); (err == nil) != ok {
			t.Errorf("after the rotation: kid %s: %v, want accepted=%v", kid, err, ok)
		}
	}
	if evs.Load() == 0 {
		t.Error("no OnReload event")
	}
}
