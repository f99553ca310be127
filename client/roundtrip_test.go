package client_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/client"
	"github.com/idgen/idgen/shared/idcodec"
)

// TestRoundTrip runs an ID through its saga against a real instance:
// generate with a deadline and metadata, read it, commit (twice), compensate
// (twice), and reads each answer's parsed fields.
func TestRoundTrip(t *testing.T) {
	in := startIdgen(t, serveOpts{})
	c := newClient(t, client.Config{Endpoints: []string{in.URL}})
	ctx := testContext(t)

	g, err := c.Generate(ctx, client.GenerateRequest{Timeout: time.Hour, Metadata: map[string]string{"order": "A-17"}})
	if err != nil {
		t.Fatal(err)
	}
	if g.Replayed || g.IdempotencyKey == "" || g.RequestID == "" || g.UUID.String() != g.ID || g.UUID.Version() != 8 {
		t.Fatalf("Generate = %+v", g)
	}
	r, err := c.Get(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != g.ID || r.State != client.StatePending || r.Subject != "dev" || r.Tombstone || len(r.History) != 1 {
		t.Fatalf("Get = %+v", r)
	}
	if d := r.Deadline.Sub(r.IssuedAt); d != time.Hour {
		t.Errorf("deadline - issued_at = %v, want 1h", d)
	}
	if ts := r.Timestamp; ts.IsZero() || ts.Sub(r.IssuedAt).Abs() > time.Second {
		t.Errorf("timestamp %v, issued_at %v", ts, r.IssuedAt)
	}
	var meta map[string]string
	if err := json.Unmarshal(r.Metadata, &meta); err != nil || meta["order"] != "A-17" {
		t.Errorf("metadata = %s (%v)", r.Metadata, err)
	}

	first, err := c.Commit(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if first.State != client.StateCommitted || first.Outcome != client.OutcomeApplied || first.At.IsZero() {
		t.Fatalf("Commit = %+v", first)
	}
	again, err := c.Commit(ctx, g.ID)
	if err != nil || again.Outcome != client.OutcomeReplayed || !again.At.Equal(first.At) {
		t.Fatalf("second Commit = %+v, %v; want replayed at %v", again, err, first.At)
	}

	comp, err := c.Compensate(ctx, g.ID, "payment refused", client.WithSource("payments/test"), client.WithEventID("evt-1"), client.WithOccurredAt(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if comp.State != client.StateCompensated || comp.Outcome != client.OutcomeApplied || comp.Reason != "payment refused" || comp.At.IsZero() {
		t.Fatalf("Compensate = %+v", comp)
	}
	if again, err := c.Compensate(ctx, g.ID, "payment refused"); err != nil || again.Outcome != client.OutcomeReplayed {
		t.Fatalf("second Compensate = %+v, %v", again, err)
	}
	r, err = c.Get(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	states := []client.State{}
	for _, s := range r.History {
		states = append(states, s.State)
	}
	if want := []client.State{client.StatePending, client.StateCommitted, client.StateCompensated}; !slices.Equal(states, want) || r.State != client.StateCompensated {
		t.Fatalf("history %v, state %s; want %v", states, r.State, want)
	}

	t.Run("batch and its idempotency key", func(t *testing.T) {
		b, err := c.GenerateN(ctx, 5, client.GenerateRequest{IdempotencyKey: "batch-1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.IDs) != 5 || !slices.IsSorted(b.IDs) || b.Replayed || b.IdempotencyKey != "batch-1" {
			t.Fatalf("GenerateN = %+v", b)
		}
		again, err := c.GenerateN(ctx, 5, client.GenerateRequest{IdempotencyKey: "batch-1"})
		if err != nil || !again.Replayed || !slices.Equal(again.IDs, b.IDs) {
			t.Fatalf("GenerateN with the same key = %+v, %v; want a replay of %v", again, err, b.IDs)
		}
		_, err = c.GenerateN(ctx, 6, client.GenerateRequest{IdempotencyKey: "batch-1"})
		if !errors.Is(err, client.ErrIdempotencyKeyReused) {
			t.Fatalf("another request under the key: %v, want ErrIdempotencyKeyReused", err)
		}
	})

	t.Run("null compensation", func(t *testing.T) {
		unknown := idcodec.MustCompose(idcodec.Fields{TimestampMS: 1, Worker: 3, Counter: 42}).String()
		tr, err := c.Compensate(ctx, unknown, "")
		if err != nil || tr.Outcome != client.OutcomeNullCompensation || tr.State != client.StateCompensated {
			t.Fatalf("Compensate(unknown) = %+v, %v", tr, err)
		}
		r, err := c.Get(ctx, unknown)
		if err != nil || !r.Tombstone || !r.IssuedAt.IsZero() {
			t.Fatalf("Get(tombstone) = %+v, %v", r, err)
		}
		if _, err := c.Commit(ctx, unknown); !errors.Is(err, client.ErrConflict) {
			t.Fatalf("Commit(tombstone) = %v, want ErrConflict", err)
		}
	})
}

// TestTypedErrors: every refusal of a real instance comes back as an
// *Error that errors.Is matches to its code's sentinel, and to no other.
func TestTypedErrors(t *testing.T) {
	in := startIdgen(t, serveOpts{})
	c := newClient(t, client.Config{Endpoints: []string{in.URL}})
	ctx := testContext(t)

	compensated, err := c.Generate(ctx, client.GenerateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compensate(ctx, compensated.ID, "test"); err != nil {
		t.Fatal(err)
	}
	expiring, err := c.Generate(ctx, client.GenerateRequest{Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.Get(ctx, expiring.ID)
	if err != nil {
		t.Fatal(err)
	}
	unknown := idcodec.MustCompose(idcodec.Fields{TimestampMS: 2, Worker: 5, Counter: 7}).String()
	v4 := "5b1f4bd4-2a3c-4c1e-9a0b-6f4e1d2c3b4a"

	tests := []struct {
		name   string
		call   func() error
		want   error
		status int // 0: refused by the client before sending
		code   string
	}{
		{"commit of a compensated ID", func() error { _, err := c.Commit(ctx, compensated.ID); return err }, client.ErrConflict, 409, api.CodeConflict},
		{"commit after the deadline", func() error {
			// The deadline is a time, not a condition to poll for.
			time.Sleep(time.Until(rec.Deadline) + time.Millisecond)
			_, err := c.Commit(ctx, expiring.ID)
			return err
		}, client.ErrExpired, 409, api.CodeExpired},
		{"get of an unknown ID", func() error { _, err := c.Get(ctx, unknown); return err }, client.ErrNotFound, 404, api.CodeNotFound},
		{"get of a UUID that is not an idgen ID", func() error { _, err := c.Get(ctx, v4); return err }, client.ErrInvalidID, 400, api.CodeInvalidID},
		{"get of text that is no UUID", func() error { _, err := c.Get(ctx, "../generate"); return err }, client.ErrInvalidID, 0, ""},
		{"commit of a malformed ID", func() error { _, err := c.Commit(ctx, "not-an-id"); return err }, client.ErrInvalidID, 400, api.CodeInvalidID},
		{"count over 1000", func() error { _, err := c.GenerateN(ctx, 1001, client.GenerateRequest{}); return err }, client.ErrInvalidRequest, 400, api.CodeInvalidRequest},
		{"metadata not an object", func() error {
			_, err := c.Generate(ctx, client.GenerateRequest{Metadata: []int{1}})
			return err
		}, client.ErrInvalidRequest, 400, api.CodeInvalidRequest},
		{"timeout over 7 days", func() error {
			_, err := c.Generate(ctx, client.GenerateRequest{Timeout: 8 * 24 * time.Hour})
			return err
		}, client.ErrInvalidRequest, 400, api.CodeInvalidRequest},
		{"reason too long", func() error {
			_, err := c.Compensate(ctx, unknown, string(make([]byte, 300)))
			return err
		}, client.ErrInvalidRequest, 400, api.CodeInvalidRequest},
		{"metadata that does not encode", func() error {
			_, err := c.Generate(ctx, client.GenerateRequest{Metadata: func() {}})
			return err
		}, client.ErrInvalidRequest, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			for _, other := range []error{client.ErrConflict, client.ErrExpired, client.ErrNotFound, client.ErrInvalidID, client.ErrInvalidRequest} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("err = %v also matches %v", err, other)
				}
			}
			var e *client.Error
			if tt.status == 0 {
				if errors.As(err, &e) {
					t.Fatalf("a refusal of the client carries a server answer: %+v", e)
				}
				return
			}
			if !errors.As(err, &e) {
				t.Fatalf("err = %#v, not an *Error", err)
			}
			if e.Status != tt.status || e.Code != tt.code || e.Message == "" || e.RequestID == "" {
				t.Fatalf("*Error = %+v, want status %d code %s with a message and a request ID", e, tt.status, tt.code)
			}
		})
	}
}
