package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Transition is the answer of Commit and Compensate.
type Transition struct {
	ID    string
	State State
	// At is when the ID reached State (committed_at, compensated_at).
	At time.Time
	// Reason is the compensation's reason ("deadline", "timeout" when the
	// service compensated an expired ID).
	Reason    string
	Outcome   Outcome
	RequestID string
}

// Commit moves id from pending to committed. It is idempotent: committing
// a committed ID answers the first answer again (OutcomeReplayed). Errors:
// ErrConflict (compensated), ErrExpired (at or after its deadline: the ID
// is now compensated), ErrNotFound, ErrInvalidID, and those of every call.
func (c *Client) Commit(ctx context.Context, id string) (*Transition, error) {
	b, err := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	if err != nil {
		return nil, err
	}
	return c.transition(ctx, call{op: "commit", method: http.MethodPost, path: "/commit", body: b})
}

// CompensateOption sets an optional field of the failure envelope of
// Compensate.
type CompensateOption func(*compensateBody)

type compensateBody struct {
	ID         string `json:"id"`
	Reason     string `json:"reason,omitempty"`
	EventID    string `json:"event_id,omitempty"`
	OccurredAt string `json:"occurred_at,omitempty"`
	Source     string `json:"source,omitempty"`
}

// WithEventID sets the envelope's event_id (at most 128 bytes): the audit
// entry's request ID.
func WithEventID(id string) CompensateOption { return func(b *compensateBody) { b.EventID = id } }

// WithSource sets the envelope's source (at most 64 characters of
// [A-Za-z0-9._:/-]): the audit entry's source.
func WithSource(s string) CompensateOption { return func(b *compensateBody) { b.Source = s } }

// WithOccurredAt sets when the failure occurred.
func WithOccurredAt(t time.Time) CompensateOption {
	return func(b *compensateBody) { b.OccurredAt = t.UTC().Format(time.RFC3339Nano) }
}

// Compensate voids id, from pending or committed, with reason (1–256
// bytes; "" sends none). It is idempotent: compensating a compensated ID
// answers the first answer again (OutcomeReplayed), and an ID the registry
// does not hold is stored as a compensated tombstone
// (OutcomeNullCompensation), so it never answers ErrNotFound. Errors:
// ErrInvalidID, ErrInvalidRequest (an envelope field out of bounds), and
// those of every call.
func (c *Client) Compensate(ctx context.Context, id, reason string, opts ...CompensateOption) (*Transition, error) {
	body := compensateBody{ID: id, Reason: reason}
	for _, o := range opts {
		o(&body)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.transition(ctx, call{op: "compensate", method: http.MethodPost, path: "/compensate", body: b})
}

func (c *Client) transition(ctx context.Context, r call) (*Transition, error) {
	a, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var v struct {
		ID            string `json:"id"`
		State         State  `json:"state"`
		CommittedAt   string `json:"committed_at"`
		CompensatedAt string `json:"compensated_at"`
		Reason        string `json:"reason"`
	}
	if err := a.decode(r.op, &v); err != nil {
		return nil, err
	}
	var times timeParser
	t := &Transition{ID: v.ID, State: v.State, Reason: v.Reason, Outcome: Outcome(a.header.Get("Idgen-Outcome")), RequestID: a.requestID()}
	if v.State == StateCommitted {
		t.At = times.parse(v.CommittedAt)
	} else {
		t.At = times.parse(v.CompensatedAt)
	}
	if times.err != nil {
		return nil, fmt.Errorf("client: %s: malformed answer: %w", r.op, times.err)
	}
	return t, nil
}
