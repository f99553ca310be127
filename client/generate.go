package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
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
	b, err := c.generate(ctx, req, 0)
	if err != nil {
		return nil, err
	}
	return &Generated{ID: b.IDs[0], UUID: b.UUIDs[0], IdempotencyKey: b.IdempotencyKey, Replayed: b.Replayed, RequestID: b.RequestID}, nil
}

// GenerateN issues n IDs (the server allows 1..1000; ErrInvalidRequest
// otherwise) in one request, with the idempotency of Generate.
func (c *Client) GenerateN(ctx context.Context, n int, req GenerateRequest) (*Batch, error) {
	return c.generate(ctx, req, n)
}

// generate runs Generate (n 0: the answer is {"id"}) or GenerateN (the
// answer is {"ids"}) and parses every ID.
func (c *Client) generate(ctx context.Context, req GenerateRequest, n int) (*Batch, error) {
	r, err := generateCall(req, n)
	if err != nil {
		return nil, err
	}
	a, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var body struct {
		ID  string   `json:"id"`
		IDs []string `json:"ids"`
	}
	if err := a.decode("generate", &body); err != nil {
		return nil, err
	}
	ids := body.IDs
	if n == 0 {
		ids = []string{body.ID}
	}
	b := &Batch{IDs: ids, UUIDs: make([]uuid.UUID, len(ids)), IdempotencyKey: r.idemKey, Replayed: a.replayed(), RequestID: a.requestID()}
	for i, id := range ids {
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
