package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
)

// fakeRegistry is a registry held in a map.
type fakeRegistry struct {
	mu   sync.Mutex
	recs map[idcodec.ID]registry.Record
}

var _ registryReader = (*fakeRegistry)(nil)

func (f *fakeRegistry) Get(_ context.Context, id idcodec.ID) (registry.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.recs[id]
	if !ok {
		return registry.Record{}, registry.ErrNotFound
	}
	return rec, nil
}

func testID(counter uint64) idcodec.ID {
	return idcodec.MustCompose(idcodec.Fields{TimestampMS: 1_800_000_000_000, Worker: 3, Counter: counter})
}

func step(st registry.State, actor, reason string) registry.Step {
	return registry.Step{State: st, AtMS: 1, Actor: actor, Reason: reason}
}

func pending(id idcodec.ID) registry.Record {
	return registry.Record{ID: id, State: registry.Pending, History: []registry.Step{step(registry.Pending, "dev", "")}}
}

func committed(id idcodec.ID) registry.Record {
	r := pending(id)
	r.State = registry.Committed
	r.History = append(r.History, step(registry.Committed, "dev", ""))
	return r
}

func compensated(id idcodec.ID, times int) registry.Record {
	r := pending(id)
	r.State = registry.Compensated
	for range times {
		r.History = append(r.History, step(registry.Compensated, "compensate:chaos", "declined"))
	}
	return r
}

func kinds(vs []Violation) map[string]int {
	m := map[string]int{}
	for _, v := range vs {
		m[v.Kind]++
	}
	return m
}

// TestLedgerDuplicates: an ID acknowledged twice, or two IDs sharing
// (shard, counter) with other time or worker bits, are duplicates; a
// replayed Idempotency-Key answer is not, and a key answering other IDs is
// an idempotency violation.
func TestLedgerDuplicates(t *testing.T) {
	now := time.Now()
	l := newLedger()
	a, b := testID(1), testID(2)
	l.Acknowledge([]idcodec.ID{a, b}, "", false, now, "idgen-a")
	if got := kinds(l.Violations()); len(got) != 0 {
		t.Fatalf("violations after distinct IDs: %v", got)
	}

	l.Acknowledge([]idcodec.ID{testID(3)}, "k1", false, now, "idgen-a")
	l.Acknowledge([]idcodec.ID{testID(3)}, "k1", false, now, "idgen-b") // a replay: same IDs
	if got := kinds(l.Violations()); len(got) != 0 || l.Count() != 3 {
		t.Fatalf("a replay counted as a violation or a new ID: %v, %d IDs", got, l.Count())
	}

	l.Acknowledge([]idcodec.ID{a}, "", false, now, "idgen-c") // the very same ID again
	sameCounter := idcodec.MustCompose(idcodec.Fields{TimestampMS: 1_900_000_000_000, Worker: 9, Counter: 2})
	l.Acknowledge([]idcodec.ID{sameCounter}, "", false, now, "idgen-c") // other bits, same counter
	l.Acknowledge([]idcodec.ID{testID(4)}, "k1", false, now, "idgen-c") // the key answers another ID
	got := kinds(l.Violations())
	if got[vDuplicate] != 2 || got[vIdempotency] != 1 || l.Duplicates() != 2 {
		t.Fatalf("violations %v (duplicates %d), want 2 duplicates and 1 idempotency conflict", got, l.Duplicates())
	}
	for _, v := range l.Violations() {
		t.Log(v.Kind, v.Detail)
	}
}

// TestExpected: the final states each combination of answers allows.
func TestExpected(t *testing.T) {
	P, C, X := registry.Pending, registry.Committed, registry.Compensated
	for _, tc := range []struct {
		name string
		r    idRecord
		want stateSet
	}{
		{"untouched", idRecord{}, setOf(P)},
		{"commit 200", idRecord{commit: commitOK}, setOf(C)},
		{"commit unanswered", idRecord{commit: commitUnknown}, setOf(P, C)},
		{"commit 409", idRecord{commit: commitConflict}, setOf(X)},
		{"event confirmed", idRecord{event: eventConfirmed}, setOf(X)},
		{"event unconfirmed", idRecord{event: eventUnconfirmed}, setOf(P, X)},
		{"commit then event", idRecord{commit: commitOK, event: eventConfirmed}, setOf(X)},
		{"commit, event unconfirmed", idRecord{commit: commitOK, event: eventUnconfirmed}, setOf(C, X)},
		{"deadline", idRecord{deadline: true}, setOf(X)},
		{"deadline, committed", idRecord{deadline: true, commit: commitOK}, setOf(C)},
		{"deadline, commit unanswered", idRecord{deadline: true, commit: commitUnknown}, setOf(C, X)},
		{"deadline, commit 409", idRecord{deadline: true, commit: commitConflict | commitUnknown}, setOf(X)},
	} {
		if got := expected(tc.r); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestCheckerFindsViolations feeds the registry and audit checks a lost
// ID, a wrong state, a double compensation, a compensation audited twice
// (by live processes, or by a live one and a recovery) and one never
// audited, next to correct records and a repeat in the crash window, and
// expects exactly those violations.
func TestCheckerFindsViolations(t *testing.T) {
	l := newLedger()
	now := time.Now()
	ids := make([]idcodec.ID, 14)
	for i := range ids {
		ids[i] = testID(uint64(100 + i))
	}
	l.Acknowledge(ids, "", false, now, "idgen-a")
	l.Commit(ids[1], commitOK)
	l.Event(ids[2], eventConfirmed, false)
	l.Event(ids[3], eventConfirmed, false)
	l.Event(ids[4], eventConfirmed, false)
	l.Event(ids[5], eventConfirmed, false)
	l.Event(ids[9], eventConfirmed, false)
	for _, id := range ids[10:] {
		l.Event(id, eventConfirmed, false)
	}
	l.Commit(ids[6], commitOK)
	null := idcodec.MustCompose(idcodec.Fields{TimestampMS: 1, Shard: nullShard, Counter: 1 << 40})
	l.Event(null, eventConfirmed, true)

	reg := &fakeRegistry{recs: map[idcodec.ID]registry.Record{
		ids[0]: pending(ids[0]),        // fine
		ids[1]: committed(ids[1]),      // fine
		ids[2]: compensated(ids[2], 1), // fine, audited once below
		ids[3]: compensated(ids[3], 2), // compensated twice in effect
		ids[4]: compensated(ids[4], 1), // audited twice below
		ids[5]: compensated(ids[5], 1), // never audited
		ids[6]: pending(ids[6]),        // committed with 200 but pending: wrong state
		// ids[7] missing: lost
		ids[8]:  pending(ids[8]),
		ids[9]:  compensated(ids[9], 1),  // entry at the end of a SIGKILLed life, repeated by a later recovery: allowed
		ids[10]: compensated(ids[10], 1), // entry of a live life and a recovery: two entries
		ids[11]: compensated(ids[11], 1), // entry and recovery in the same (killed) life
		ids[12]: compensated(ids[12], 1), // recovery written before the killed life ended
		ids[13]: compensated(ids[13], 1), // first entry long before the kill
	}}
	tomb := registry.Record{ID: null, State: registry.Compensated, Tombstone: true, History: []registry.Step{step(registry.Compensated, "compensate:chaos", "declined")}}
	reg.recs[null] = tomb

	rc := checkRegistry(context.Background(), l, reg, 4, 0)
	got := kinds(rc.violations)
	if got[vLost] != 1 || got[vState] != 1 || got[vEffect] != 1 || len(rc.violations) != 3 {
		t.Fatalf("registry violations %v, want 1 lost, 1 wrong state, 1 double effect:\n%v", got, rc.violations)
	}

	a := newAuditCounts()
	end := now.Add(-time.Hour) // the killed life's last line
	a.lives["killed"] = life{crashed: true, last: end}
	a.lives["live"] = life{last: end.Add(time.Minute)}
	a.lives["later"] = life{last: end.Add(2 * time.Minute)}
	comp := func(file string, id idcodec.ID, at time.Duration, recovered bool) {
		a.add(file, audit.Event{Time: end.Add(at), Action: audit.ActionCompensate, Resource: id.String(), Outcome: "applied", Recovered: recovered})
	}
	comp("killed", ids[9], -100*time.Millisecond, false)
	comp("later", ids[9], 30*time.Second, true)
	comp("live", ids[10], 0, false)
	comp("later", ids[10], 30*time.Second, true)
	comp("killed", ids[11], -200*time.Millisecond, false)
	comp("killed", ids[11], -100*time.Millisecond, true)
	comp("killed", ids[12], -50*time.Millisecond, false)
	comp("later", ids[12], -10*time.Millisecond, true)
	comp("killed", ids[13], -10*time.Second, false)
	comp("later", ids[13], 30*time.Second, true)
	for _, ev := range []audit.Event{
		{Action: audit.ActionCompensate, Resource: ids[2].String(), Outcome: "applied"},
		{Action: audit.ActionCompensate, Resource: ids[3].String(), Outcome: "applied"},
		{Action: audit.ActionCompensate, Resource: ids[4].String(), Outcome: "applied"},
		{Action: audit.ActionCompensate, Resource: ids[4].String(), Outcome: "applied"},
		{Action: audit.ActionCompensate, Resource: ids[4].String(), Outcome: "replayed"}, // not an effect: not counted
		{Action: audit.ActionCompensate, Resource: null.String(), Outcome: "null_compensation"},
		{Action: audit.ActionCommit, Resource: ids[1].String(), Outcome: "applied"},
		{Action: audit.ActionCommit, Resource: ids[6].String(), Outcome: "applied"},
		{Action: audit.ActionCommit, Resource: ids[6].String(), Outcome: "applied"}, // committed twice in the audit
	} {
		a.add("live", ev)
	}
	n, _, repeats, av := checkAudit(l, rc, a)
	var details []string
	for _, v := range av {
		details = append(details, v.Detail)
	}
	joined := strings.Join(details, "\n")
	want := []string{ids[4].String() + " is compensated with 2", ids[5].String() + " is compensated with 0", ids[6].String() + " has 2 commit"}
	for _, id := range ids[10:] {
		want = append(want, id.String()+" is compensated with 2")
	}
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("no violation %q", w)
		}
	}
	if len(av) != len(want) {
		t.Fatalf("audit violations:\n%s\nwant %d: %v", joined, len(want), want)
	}
	if n != 10 || repeats != 1 { // ids 2..5, 9..13 and the tombstone
		t.Errorf("%d compensations counted, %d crash repeats; want 10 and 1", n, repeats)
	}
}

// TestCheckRegistrySettles: a record that converges (a sweep in flight) is
// read again until it does; one that does not is reported.
func TestCheckRegistrySettles(t *testing.T) {
	l := newLedger()
	a, b := testID(1), testID(2)
	l.Acknowledge([]idcodec.ID{a, b}, "", true, time.Now(), "idgen-a")
	reg := &fakeRegistry{recs: map[idcodec.ID]registry.Record{a: pending(a), b: pending(b)}}
	go func() {
		time.Sleep(300 * time.Millisecond)
		reg.mu.Lock()
		reg.recs[a] = compensated(a, 1)
		reg.mu.Unlock()
	}()
	rc := checkRegistry(context.Background(), l, reg, 2, 3*time.Second)
	if len(rc.violations) != 1 || !strings.Contains(rc.violations[0].Detail, b.String()) {
		t.Fatalf("violations %v, want only %s (never swept)", rc.violations, b)
	}
}

// TestQuietsAndMonotonic: a 200 inside a quiet interval is a wrong 200;
// within one life, a timestamp below one answered earlier is a violation.
func TestQuietsAndMonotonic(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	results := []result{
		{kind: "generate", via: "lb", backend: instA, status: 200, sent: at(100), recv: at(150), ids: 1},
		{kind: "generate", via: "lb", backend: instB, status: 200, sent: at(1100), recv: at(1200), ids: 1}, // inside, other instance
		{kind: "generate", via: "lb", backend: instA, status: 503, sent: at(1100), recv: at(1200)},
		{kind: "generate", via: "lb", backend: instA, status: 200, sent: at(1300), recv: at(1400), ids: 1}, // wrong 200
	}
	qs := []quiet{{from: at(1000), to: at(2000), who: instA, why: "test"}}
	vs, inside := checkQuiets(results, qs)
	if len(vs) != 1 || vs[0].Kind != vWrong200 || inside != 2 {
		t.Fatalf("quiet check: %v (%d inside), want one wrong 200 of 2 requests", vs, inside)
	}
	if vs, _ := checkQuiets(results, []quiet{{from: at(1000), to: at(2000), why: "anyone"}}); len(vs) != 1 || !strings.Contains(vs[0].Detail, "2 /generate") {
		t.Fatalf("quiet check for any instance: %v", vs)
	}

	direct := func(life, sentMS, recvMS int, ts uint64) result {
		return result{kind: "generate", via: instA, life: life, status: 200, sent: at(sentMS), recv: at(recvMS), ids: 1, minTS: ts, maxTS: ts}
	}
	ok := []result{direct(1, 0, 10, 100), direct(1, 5, 20, 99), direct(1, 30, 40, 100), direct(2, 50, 60, 50)}
	if vs, n := checkMonotonic(ok); len(vs) != 0 || n != 2 {
		t.Fatalf("concurrent answers and a new life flagged: %v (%d groups)", vs, n)
	}
	bad := append(ok, direct(1, 45, 50, 99)) // sent after 100 was answered
	if vs, _ := checkMonotonic(bad); len(vs) != 1 || vs[0].Kind != vMonotonic {
		t.Fatalf("a timestamp going back not flagged: %v", vs)
	}
}

// TestFinalLine: the verdict counts what it says.
func TestFinalLine(t *testing.T) {
	s := summary{ids: 10, faultsRun: 11, faultsRecovered: 11}
	if got := finalLine(s); !strings.HasPrefix(got, "chaos: 10 ids, 0 duplicates, 0 lost,") || !strings.HasSuffix(got, "PASS") {
		t.Fatalf("final line %q", got)
	}
	s.violations = []Violation{{vDuplicate, "x"}, {vLost, "y"}, {vFault, "z"}}
	got := finalLine(s)
	for _, want := range []string{"1 duplicates", "1 lost", "1 other violations", "FAIL (3 violations)"} {
		if !strings.Contains(got, want) {
			t.Errorf("final line %q lacks %q", got, want)
		}
	}
}

var errBoom = errors.New("boom")

// TestJudgeReadError: a registry read error is retried, then reported.
func TestJudgeReadError(t *testing.T) {
	_, v, retry := judge(idRecord{id: testID(1)}, registry.Record{}, fmt.Errorf("read: %w", errBoom))
	if v == nil || v.Kind != vRegistryRead || !retry {
		t.Fatalf("judge of a read error: %v retry=%v", v, retry)
	}
}

// TestReadAuditCrashedLives: an audit log without its closing audit.stop
// line is a SIGKILLed life (a torn last line too); each effective entry is
// kept with its file, time and recovered flag.
func TestReadAuditCrashedLives(t *testing.T) {
	dir := t.TempDir()
	id := testID(7).String()
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	line := func(e audit.Event, at time.Duration) string {
		e.Time = t0.Add(at)
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	comp := audit.Event{Action: audit.ActionCompensate, Resource: id, Outcome: "applied"}
	rec := comp
	rec.Recovered = true
	stop := audit.Event{Action: audit.ActionAuditStop, Outcome: audit.OutcomeSuccess}
	files := map[string]string{
		"audit-w-1.log": line(comp, 0),                                      // killed after the entry
		"audit-w-2.log": line(rec, time.Minute) + line(stop, 2*time.Minute), // clean life
		"audit-v-1.log": line(comp, -time.Minute) + "{\"torn" + "\n",        // killed mid-line
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := readAudit(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.compensate[id] != 3 || len(a.entries["c "+id]) != 3 || len(a.torn) != 1 || a.files != 3 {
		t.Fatalf("%d entries (%d kept), %d torn, %d files; want 3, 3, 1, 3", a.compensate[id], len(a.entries["c "+id]), len(a.torn), a.files)
	}
	for name, want := range map[string]life{
		"audit-w-1.log": {crashed: true, last: t0},
		"audit-w-2.log": {last: t0.Add(2 * time.Minute)},
		"audit-v-1.log": {crashed: true, last: t0.Add(-time.Minute)},
	} {
		if got := a.lives[filepath.Join(dir, name)]; got.crashed != want.crashed || !got.last.Equal(want.last) {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
}
