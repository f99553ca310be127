package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
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

// GenerateRequest is the request of Generate and GenerateN. The zero value
// issues IDs without deadline or metadata under a fresh idempotency key.
type GenerateRequest struct {
	// Timeout sets each ID's deadline to its issue time plus Timeout; a
	// pending ID past it is compensated. Sent in whole milliseconds,
	// rounded up; the server allows 1 ms to 7 days. 0: no deadline.
	Timeout time.Duration
	// Metadata is stored with the IDs (sealed at rest): anything that
	// encodes as a JSON object of at most 1 KiB, such as a
	// map[string]string or a json.RawMessage. Nil: none.
	Metadata any
	// IdempotencyKey names the request for 24 hours (1–128 printable ASCII
	// characters): the same key with the same request answers the same IDs
	// again; with another request, ErrIdempotencyKeyReused. Empty: the
	// client makes a UUIDv7.
	IdempotencyKey string
}

// Generated is the answer of Generate.
type Generated struct {
	// ID is the ID as the server writes it (canonical UUID text).
	ID string
	// UUID is ID parsed.
	UUID uuid.UUID
	// IdempotencyKey is the key the request was sent with.
	IdempotencyKey string
	// Replayed: the server answered the first answer of IdempotencyKey
	// again (an earlier call, or an earlier attempt of this one whose answer
	// was lost). No ID was issued for this answer.
	Replayed bool
	// RequestID is the X-Request-ID of the answer.
	RequestID string
}

// Batch is the answer of GenerateN.
type Batch struct {
	// IDs are the IDs in increasing order.
	IDs []string
	// UUIDs are IDs parsed, in the same order.
	UUIDs []uuid.UUID
	// IdempotencyKey, Replayed and RequestID are those of Generated.
	IdempotencyKey string
	Replayed       bool
	RequestID      string
}

// Generate issues one ID. It sends an Idempotency-Key (req's, else a new
// UUIDv7) and the same key on every attempt, so that retries answer the
// ID of the first attempt that reached the server. Errors: an *Error
// (ErrInvalidRequest for a bad Timeout or Metadata,
// ErrIdempotencyKeyReused, ErrUnavailable when attempts ran out, ...), a
// connection error after the last attempt, or the context's error.
func (c *Client) Generate(ctx context.Context, req GenerateRequest) (*Generated, error) {
	r, err := generateCall(req, 0)
	if err != nil {
		return nil, err
	}
	a, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var body struct {
		ID string `json:"id"`
	}
	if err := a.decode("generate", &body); err != nil {
		return nil, err
	}
	u, err := parseID("generate", body.ID)
	if err != nil {
		return nil, err
	}
	return &Generated{ID: body.ID, UUID: u, IdempotencyKey: r.idemKey, Replayed: a.replayed(), RequestID: a.requestID()}, nil
}

// GenerateN issues n IDs (the server allows 1..1000; ErrInvalidRequest
// otherwise) in one request, with the idempotency of Generate.
func (c *Client) GenerateN(ctx context.Context, n int, req GenerateRequest) (*Batch, error) {
	r, err := generateCall(req, n)
	if err != nil {
		return nil, err
	}
	a, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var body struct {
		IDs []string `json:"ids"`
	}
	if err := a.decode("generate", &body); err != nil {
		return nil, err
	}
	b := &Batch{IDs: body.IDs, UUIDs: make([]uuid.UUID, len(body.IDs)), IdempotencyKey: r.idemKey, Replayed: a.replayed(), RequestID: a.requestID()}
	for i, id := range body.IDs {
		if b.UUIDs[i], err = parseID("generate", id); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// generateCall builds the request of Generate (n 0) or GenerateN.
func generateCall(req GenerateRequest, n int) (call, error) {
	var body struct {
		Count     *int  `json:"count,omitempty"`
		TimeoutMS int64 `json:"timeout_ms,omitempty"`
		Metadata  any   `json:"metadata,omitempty"`
	}
	if n != 0 {
		body.Count = &n
	}
	if req.Timeout != 0 {
		// Rounded up: a positive timeout never becomes 0 (no deadline).
		body.TimeoutMS = int64((req.Timeout + time.Millisecond - 1) / time.Millisecond)
		if req.Timeout < 0 {
			body.TimeoutMS = min(req.Timeout.Milliseconds(), -1) // the server's 400
		}
	}
	body.Metadata = req.Metadata
	b, err := json.Marshal(body)
	if err != nil {
		return call{}, fmt.Errorf("client: generate: metadata: %v: %w", err, ErrInvalidRequest)
	}
	key := req.IdempotencyKey
	if key == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return call{}, fmt.Errorf("client: generate: idempotency key: %w", err)
		}
		key = u.String()
	}
	return call{op: "generate", method: http.MethodPost, path: "/generate", body: b, idemKey: key}, nil
}

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
	var v struct {
		ID             string          `json:"id"`
		Timestamp      string          `json:"timestamp"`
		Worker         uint16          `json:"worker"`
		Shard          uint8           `json:"shard"`
		Counter        uint64          `json:"counter"`
		State          State           `json:"state"`
		IssuedAt       *string         `json:"issued_at"`
		Deadline       string          `json:"deadline"`
		Subject        string          `json:"subject"`
		Tombstone      bool            `json:"tombstone"`
		Metadata       json.RawMessage `json:"metadata"`
		MetadataErased bool            `json:"metadata_erased"`
		History        []struct {
			State  State  `json:"state"`
			At     string `json:"at"`
			Reason string `json:"reason"`
			Actor  string `json:"actor"`
		} `json:"history"`
	}
	if err := a.decode("get", &v); err != nil {
		return nil, err
	}
	r := &Record{
		ID: v.ID, Worker: v.Worker, Shard: v.Shard, Counter: v.Counter, State: v.State, Subject: v.Subject,
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
		r.History[i] = Step{State: s.State, At: times.parse(s.At), Reason: s.Reason, Actor: s.Actor}
	}
	if times.err != nil {
		return nil, fmt.Errorf("client: get: malformed answer: %w", times.err)
	}
	return r, nil
}

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
