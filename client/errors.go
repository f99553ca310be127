package client

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/idgen/idgen/api"
)

// Sentinels, one per error code: errors.Is(err, ErrConflict) holds for an
// *Error of code "conflict". ErrExpired and ErrConflict share the status
// 409 and stay distinct: an expired ID is compensated by the failed commit
// itself.
var (
	ErrInvalidRequest       = errors.New("client: invalid request")
	ErrInvalidID            = errors.New("client: invalid ID")
	ErrUnauthorized         = errors.New("client: unauthorized")
	ErrForbidden            = errors.New("client: forbidden")
	ErrNotFound             = errors.New("client: not found")
	ErrMethodNotAllowed     = errors.New("client: method not allowed")
	ErrRequestTimeout       = errors.New("client: request timeout")
	ErrConflict             = errors.New("client: conflict")
	ErrExpired              = errors.New("client: expired")
	ErrBodyTooLarge         = errors.New("client: body too large")
	ErrUnsupportedMedia     = errors.New("client: unsupported media type")
	ErrIdempotencyKeyReused = errors.New("client: idempotency key reused")
	ErrRateLimited          = errors.New("client: rate limited")
	ErrHeaderTooLarge       = errors.New("client: header too large")
	ErrInternal             = errors.New("client: internal server error")
	ErrUnavailable          = errors.New("client: unavailable")
)

// sentinels is each error code's sentinel (every code of api.Codes has
// one: TestEveryCodeHasASentinel); the codes' statuses are api.Status.
var sentinels = map[string]error{
	api.CodeInvalidRequest:       ErrInvalidRequest,
	api.CodeInvalidID:            ErrInvalidID,
	api.CodeUnauthorized:         ErrUnauthorized,
	api.CodeForbidden:            ErrForbidden,
	api.CodeNotFound:             ErrNotFound,
	api.CodeMethodNotAllowed:     ErrMethodNotAllowed,
	api.CodeRequestTimeout:       ErrRequestTimeout,
	api.CodeConflict:             ErrConflict,
	api.CodeExpired:              ErrExpired,
	api.CodeBodyTooLarge:         ErrBodyTooLarge,
	api.CodeUnsupportedMedia:     ErrUnsupportedMedia,
	api.CodeIdempotencyKeyReused: ErrIdempotencyKeyReused,
	api.CodeRateLimited:          ErrRateLimited,
	api.CodeHeaderTooLarge:       ErrHeaderTooLarge,
	api.CodeInternal:             ErrInternal,
	api.CodeUnavailable:          ErrUnavailable,
}

// codeOfStatus names the code of an error answer whose body is not the
// API's (a proxy's or load balancer's page), when its status has one code.
// 409 has two and stays without one.
func codeOfStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return api.CodeInvalidRequest
	case http.StatusConflict:
		return ""
	}
	for _, code := range api.Codes() {
		if s, _ := api.Status(code); s == status {
			return code
		}
	}
	if status >= 500 {
		return api.CodeInternal
	}
	return ""
}

// Error is an error answer of the service.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is the API's error code (the api.Code* constants), or, for an answer
	// without the API's error body, the code of its status ("" if none).
	Code string
	// Message is the server's sentence.
	Message string
	// RequestID is the X-Request-ID of the answer: the key of the server's
	// log lines of the request.
	RequestID string
	// RetryAfter is the answer's Retry-After (429, 503), else 0.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "idgen: %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request " + e.RequestID + ")")
	}
	return b.String()
}

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	s, ok := sentinels[e.Code]
	return ok && s == target
}

// retryable reports whether the same request may succeed later without any
// change: the server refused it before doing anything (429, 408) or could
// not do it now (503, including a transition stored but not yet audited,
// which the retry completes).
func (e *Error) retryable() bool {
	switch e.Status {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusRequestTimeout:
		return true
	}
	return false
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// It returns 0 for an absent or unreadable value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
