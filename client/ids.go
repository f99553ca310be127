package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/idgen/idgen/api"
)

// State is the saga state of an ID.
type State string

// States of an ID.
const (
	StatePending     State = "pending"
	StateCommitted   State = "committed"
	StateCompensated State = "compensated"
)

// Outcome says what a commit or a compensation did (the Idgen-Outcome
// header).
type Outcome string

// Outcomes of Commit and Compensate.
const (
	// OutcomeApplied: this request changed the state.
	OutcomeApplied Outcome = "applied"
	// OutcomeReplayed: the ID was already in the target state; the answer
	// is the first one's. After a retry it may be this call's own earlier
	// attempt whose answer was lost.
	OutcomeReplayed Outcome = "replayed"
	// OutcomeNullCompensation: the registry did not hold the ID; a
	// compensated tombstone now refuses any later commit.
	OutcomeNullCompensation Outcome = "null_compensation"
)

// Step is one entry of an ID's history.
type Step struct {
	State  State
	At     time.Time
	Reason string
	Actor  string
}

// Record is what the registry holds of an ID (GET /ids/{id}).
type Record struct {
	ID   string
	UUID uuid.UUID
	// Timestamp, Worker, Shard and Counter are the fields encoded in the
	// ID.
	Timestamp time.Time
	Worker    uint16
	Shard     uint8
	Counter   uint64
	State     State
	// IssuedAt is zero for a tombstone (Tombstone: compensated before it
	// was known).
	IssuedAt  time.Time
	Tombstone bool
	// Deadline is zero when the ID has none.
	Deadline time.Time
	// Subject issued the ID.
	Subject string
	// Metadata is shown to the issuing subject and to ids:admin only.
	Metadata json.RawMessage
	// MetadataErased: the subject's data key is erased.
	MetadataErased bool
	History        []Step
	RequestID      string
}

// Get returns the registry's record of id. Errors: ErrInvalidID (not a
// canonical idgen ID; checked here for a path-safe form first), ErrNotFound,
// ErrForbidden (no ids:read), and those of every call.
func (c *Client) Get(ctx context.Context, id string) (*Record, error) {
	if !pathSafeID(id) {
		return nil, fmt.Errorf("client: get: %q is not a canonical UUID: %w", id, ErrInvalidID)
	}
	a, err := c.do(ctx, call{op: "get", method: http.MethodGet, path: "/ids/" + id})
	if err != nil {
		return nil, err
	}
	var v api.IDRecord
	if err := a.decode("get", &v); err != nil {
		return nil, err
	}
	r := &Record{
		ID: v.ID, Worker: v.Worker, Shard: v.Shard, Counter: v.Counter, State: State(v.State), Subject: v.Subject,
		Tombstone: v.Tombstone, Metadata: v.Metadata, MetadataErased: v.MetadataErased, RequestID: a.requestID(),
		History: make([]Step, len(v.History)),
	}
	var times timeParser
	r.UUID, err = parseID("get", v.ID)
	if err != nil {
		return nil, err
	}
	r.Timestamp = times.parse(v.Timestamp)
	if v.IssuedAt != nil {
		r.IssuedAt = times.parse(*v.IssuedAt)
	}
	r.Deadline = times.parse(v.Deadline)
	for i, s := range v.History {
		r.History[i] = Step{State: State(s.State), At: times.parse(s.At), Reason: s.Reason, Actor: s.Actor}
	}
	if times.err != nil {
		return nil, fmt.Errorf("client: get: malformed answer: %w", times.err)
	}
	return r, nil
}

func (a *answer) decode(op string, v any) error {
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("client: %s: malformed answer (request %s): %w", op, a.requestID(), err)
	}
	return nil
}

func (a *answer) replayed() bool    { return a.header.Get("Idempotent-Replayed") == "true" }
func (a *answer) requestID() string { return a.header.Get("X-Request-ID") }

func parseID(op, s string) (uuid.UUID, error) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.UUID{}, fmt.Errorf("client: %s: malformed ID %q in the answer", op, s)
	}
	return u, nil
}

// pathSafeID reports whether id has the form of a canonical UUID (36
// characters of hex digits and hyphens), so that "/ids/"+id names one
// resource whatever id holds.
func pathSafeID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c == '-', c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// timeParser parses the API's RFC 3339 times ("" is the zero time) and
// keeps the first error.
type timeParser struct{ err error }

func (p *timeParser) parse(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil && p.err == nil {
		p.err = err
	}
	return t
}
