package httpapi_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// parallel runs f(i) for i in 0..n-1 on n goroutines released together.
func parallel(n int, f func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			start.Wait()
			f(i)
		}()
	}
	start.Done()
	done.Wait()
}

// TestIdempotencyKey: concurrent requests with one key and body get one
// answer (one issued, the rest replayed); the same key with another body is
// refused with 422 and issues nothing; batches replay their whole list; a
// body with the same meaning but other spacing or field order replays.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	withKey := func(key, body string) call {
		return call{method: "POST", path: "/generate", body: body, header: map[string]string{"Idempotency-Key": key}}
	}

	t.Run("32 concurrent, same key and body", func(t *testing.T) {
		issued := h.issuedTotal(t)
		const n = 32
		replies := make([]*reply, n)
		parallel(n, func(i int) { replies[i] = h.do(t, withKey("order-1", `{"metadata":{"a":1}}`)) })
		ids := map[string]int{}
		replayed := 0
		for i, r := range replies {
			if r.status != 200 {
				t.Fatalf("reply %d: %s", i, r)
			}
			var v struct{ ID string }
			if err := json.Unmarshal(decodeExact(t, r.body, "id")["id"], &v.ID); err != nil {
				t.Fatal(err)
			}
			ids[v.ID]++
			switch r.h("Idempotent-Replayed") {
			case "true":
				replayed++
			case "":
			default:
				t.Errorf("Idempotent-Replayed %q", r.h("Idempotent-Replayed"))
			}
		}
		if len(ids) != 1 {
			t.Fatalf("%d distinct IDs for one Idempotency-Key: %v", len(ids), ids)
		}
		if replayed != n-1 {
			t.Errorf("%d answers carry Idempotent-Replayed: true, want %d", replayed, n-1)
		}
		if got := h.issuedTotal(t); got != issued+1 {
			t.Errorf("idgen_ids_issued_total moved by %v, want 1", got-issued)
		}
		for id := range ids {
			if v := h.view(t, id); v.State != "pending" || string(v.Metadata) != `{"a":1}` {
				t.Errorf("record %+v", v)
			}
		}
	})

	t.Run("same meaning, other spelling", func(t *testing.T) {
		first := h.do(t, withKey("order-2", `{"count":2,"timeout_ms":5000,"metadata":{"a":1,"b":[1,2]}}`))
		again := h.do(t, withKey("order-2", ` { "metadata" : { "a" : 1, "b" : [ 1, 2 ] }, "timeout_ms" : 5000 , "count" : 2 } `))
		if first.status != 200 || again.status != 200 || !bytes.Equal(first.body, again.body) || again.h("Idempotent-Replayed") != "true" {
			t.Errorf("first %s\nagain %s (replayed %q)", first, again, again.h("Idempotent-Replayed"))
		}
		// An empty body and {} mean the same request.
		empty := h.do(t, call{method: "POST", path: "/generate", ctype: "-", header: map[string]string{"Idempotency-Key": "order-3"}})
		obj := h.do(t, withKey("order-3", `{}`))
		if empty.status != 200 || obj.status != 200 || !bytes.Equal(empty.body, obj.body) || obj.h("Idempotent-Replayed") != "true" {
			t.Errorf("empty body %s\n{} %s (replayed %q)", empty, obj, obj.h("Idempotent-Replayed"))
		}
	})

	t.Run("different body is 422 and issues nothing", func(t *testing.T) {
		first := h.do(t, withKey("order-4", `{}`))
		if first.status != 200 {
			t.Fatalf("first: %s", first)
		}
		issued := h.issuedTotal(t)
		for _, body := range []string{
			`{"count":1}`, // {"ids": [...]} is another answer than {"id": ...}
			`{"timeout_ms":1000}`,
			`{"metadata":{"a":1}}`,
		} {
			r := h.do(t, withKey("order-4", body))
			assertError(t, r, 422, "idempotency_key_reused")
			if r.h("Idempotent-Replayed") != "" {
				t.Errorf("422 carries Idempotent-Replayed %q", r.h("Idempotent-Replayed"))
			}
		}
		if got := h.issuedTotal(t); got != issued {
			t.Errorf("idgen_ids_issued_total moved by %v on refused requests", got-issued)
		}
		// The key still answers its first request.
		if again := h.do(t, withKey("order-4", `{}`)); again.status != 200 || !bytes.Equal(again.body, first.body) {
			t.Errorf("after 422s: %s, want %s", again, first.body)
		}
	})

	t.Run("batch", func(t *testing.T) {
		const n = 8
		replies := make([]*reply, n)
		parallel(n, func(i int) { replies[i] = h.do(t, withKey("batch-1", `{"count":5}`)) })
		var ids []string
		if err := json.Unmarshal(decodeExact(t, replies[0].body, "ids")["ids"], &ids); err != nil || len(ids) != 5 {
			t.Fatalf("batch answer %s", replies[0].body)
		}
		replayed := 0
		for i, r := range replies {
			if r.status != 200 || !bytes.Equal(r.body, replies[0].body) {
				t.Errorf("reply %d: %s, want %s", i, r, replies[0].body)
			}
			if r.h("Idempotent-Replayed") == "true" {
				replayed++
			}
		}
		if replayed != n-1 {
			t.Errorf("%d replayed, want %d", replayed, n-1)
		}
		assertError(t, h.do(t, withKey("batch-1", `{"count":4}`)), 422, "idempotency_key_reused")
		for _, id := range ids {
			if v := h.view(t, id); v.State != "pending" {
				t.Errorf("%s: state %s", id, v.State)
			}
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		a := h.do(t, withKey("k-a", `{}`))
		b := h.do(t, withKey("k-b", `{}`))
		if a.status != 200 || b.status != 200 || bytes.Equal(a.body, b.body) {
			t.Errorf("two keys, one answer: %s / %s", a, b)
		}
	})
}

// TestConcurrentCommitCompensate races commits and compensations of the same
// IDs. Each ID ends compensated with exactly one compensated step and at most
// one committed step before it; every compensation answers 200 compensated
// with one body per ID, exactly one of them applied; every commit answers 200
// committed (the same body per ID) or 409.
func TestConcurrentCommitCompensate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const nIDs, perID = 20, 10
	r := h.post(t, "/generate", `{"count":`+strconv.Itoa(nIDs)+`}`)
	var batch struct{ IDs []string }
	if r.status != 200 || json.Unmarshal(r.body, &batch) != nil || len(batch.IDs) != nIDs {
		t.Fatalf("generate: %s", r)
	}

	type answer struct {
		commit bool
		r      *reply
	}
	answers := make([][]answer, nIDs)
	for i := range answers {
		answers[i] = make([]answer, perID)
	}
	parallel(nIDs*perID, func(k int) {
		i, j := k/perID, k%perID
		commit := j%2 == 0
		path := "/compensate"
		if commit {
			path = "/commit"
		}
		answers[i][j] = answer{commit, h.post(t, path, `{"id":"`+batch.IDs[i]+`"}`)}
	})

	for i, id := range batch.IDs {
		var comp, commit sameAnswer
		for _, a := range answers[i] {
			if a.commit {
				switch a.r.status {
				case 200:
					if string(decodeExact(t, a.r.body, "id", "state", "committed_at")["state"]) != `"committed"` {
						t.Errorf("%s: commit body %s", id, a.r.body)
					}
					commit.add(t, id+": commit", a.r)
				case 409:
					assertError(t, a.r, 409, "conflict")
				default:
					t.Errorf("%s: commit answered %s, want 200 or 409", id, a.r)
				}
				continue
			}
			if a.r.status != 200 {
				t.Errorf("%s: compensate answered %s, want 200", id, a.r)
				continue
			}
			var v struct{ State string }
			if err := json.Unmarshal(a.r.body, &v); err != nil || v.State != "compensated" {
				t.Errorf("%s: compensate body %s", id, a.r.body)
			}
			comp.add(t, id+": compensate", a.r)
		}
		if comp.applied != 1 || commit.applied > 1 {
			t.Errorf("%s: %d compensations and %d commits applied; want 1 and at most 1", id, comp.applied, commit.applied)
		}

		v := h.view(t, id)
		if v.State != "compensated" {
			t.Errorf("%s: final state %s, want compensated", id, v.State)
		}
		states := make([]string, len(v.History))
		for k, s := range v.History {
			states[k] = s.State
		}
		want := []string{"pending", "compensated"}
		if commit.ok > 0 {
			want = []string{"pending", "committed", "compensated"}
		}
		if !slices.Equal(states, want) {
			t.Errorf("%s: history %v, want %v (%d commits answered 200)", id, states, want, commit.ok)
		}
	}
}

// sameAnswer collects the 200 answers to one kind of call on one ID, which
// must all carry one body: it counts them and those that applied the
// transition.
type sameAnswer struct {
	body        []byte
	ok, applied int
}

func (s *sameAnswer) add(t *testing.T, what string, r *reply) {
	t.Helper()
	if s.body != nil && !bytes.Equal(s.body, r.body) {
		t.Errorf("%s answers differ:\n%s\n%s", what, s.body, r.body)
	}
	s.body = r.body
	s.ok++
	if r.h("Idgen-Outcome") == "applied" {
		s.applied++
	}
}
