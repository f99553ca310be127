// Package client is the Go client of the idgen HTTP API (docs/api.md):
// Generate and GenerateN issue transaction IDs, Get reads an ID's record,
// Commit and Compensate move it through its saga.
//
// A Client holds several endpoints (base URLs) in order of preference. A
// call goes to the first endpoint that is not cooling down; an endpoint
// that fails with a connection error or answers 503 cools down for
// Config.Cooldown (or its Retry-After, if longer), and the call goes on at
// the next one at once. When every endpoint cools down, the one that comes
// back first is tried.
//
// # Errors
//
// An error answer is an *Error with the HTTP status, the API's code and
// message, the request ID and Retry-After. errors.Is matches it against the
// sentinel of its code (ErrConflict, ErrExpired, ErrNotFound,
// ErrUnauthorized, ErrForbidden, ErrRateLimited, ErrUnavailable,
// ErrInvalidRequest, ErrInvalidID, ...), also when the client wraps it
// after its last retry.
//
// # Retries
//
// A call sends at most Retry.MaxAttempts requests, over all endpoints. It
// retries on
//
//   - 503 unavailable and 429 rate_limited, never sooner than the answer's
//     Retry-After;
//   - 408 request_timeout: the server did not read the whole request;
//   - a connection error (refused, reset, a TLS handshake that fails for
//     another reason than the server's certificate, an attempt over
//     Config.AttemptTimeout), including one after the request was sent,
//     when the server may have done it and only its answer was lost.
//
// Every other answer (4xx, 500) is returned at once: the same request
// would get the same answer. A retry at another endpoint follows at once;
// a retry at an endpoint this call already tried waits a backoff with full
// jitter, uniform in [0, min(MaxBackoff, BaseBackoff·2^(n-1))] before
// retry n (shared/platform/backoff.Full), or the Retry-After when longer. A wait that would end after the
// context's deadline is not begun: the call returns the last failure.
//
// Retrying after a lost answer is safe for every call of this package, and
// this is why it retries on connection errors:
//
//   - Generate and GenerateN send an Idempotency-Key (GenerateRequest's,
//     else a new UUIDv7) and the same key and body on every attempt at
//     every endpoint. The server stores the key with the IDs it issues,
//     in the same registry write, and answers a repeat with those IDs and
//     Idempotent-Replayed: true (Generated.Replayed) for 24 hours. So a
//     retry whose first attempt was done answers the same IDs, and the
//     server issued them once.
//   - Commit and Compensate are idempotent by the API: a repeat of a
//     transition already done answers 200 with the first answer's body
//     (Outcome OutcomeReplayed), and a 503 of a transition stored but not
//     yet audited is completed by the retry.
//   - Get reads.
//
// The key and the transitions live in the registry, so the guarantee
// spans the endpoints of one deployment whose instances share a registry
// (--redis-addr: every instance registers into one Redis). Endpoints with
// registries of their own do not see each other's keys: after a lost
// answer, a retry there issues a second ID, and the first stays pending
// until its deadline (GenerateRequest.Timeout) compensates it. Keys are
// scoped to the token's subject: a TokenSource must yield tokens of one
// subject.
//
// A failure of the TokenSource, a server certificate that does not verify,
// and an answer over 1 MiB end the call unretried. A 401 is not retried
// either: a TokenSource that caches tokens should refresh them before
// their exp.
package client
