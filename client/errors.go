package client

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error codes of the API's error body {"error": {"code", "message"}}.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidID            = "invalid_id"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeRequestTimeout       = "request_timeout"
	CodeConflict             = "conflict"
	CodeExpired              = "expired"
	CodeBodyTooLarge         = "body_too_large"
	CodeUnsupportedMedia     = "unsupported_media_type"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeRateLimited          = "rate_limited"
	CodeHeaderTooLarge       = "header_too_large"
	CodeInternal             = "internal"
	CodeUnavailable          = "unavailable"
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

// codes is the one table of the package: each code's sentinel and status.
var codes = map[string]struct {
	sentinel error
	status   int
}{
	CodeInvalidRequest:       {ErrInvalidRequest, http.StatusBadRequest},
	CodeInvalidID:            {ErrInvalidID, http.StatusBadRequest},
	CodeUnauthorized:         {ErrUnauthorized, http.StatusUnauthorized},
	CodeForbidden:            {ErrForbidden, http.StatusForbidden},
	CodeNotFound:             {ErrNotFound, http.StatusNotFound},
	CodeMethodNotAllowed:     {ErrMethodNotAllowed, http.StatusMethodNotAllowed},
	CodeRequestTimeout:       {ErrRequestTimeout, http.StatusRequestTimeout},
	CodeConflict:             {ErrConflict, http.StatusConflict},
	CodeExpired:              {ErrExpired, http.StatusConflict},
	CodeBodyTooLarge:         {ErrBodyTooLarge, http.StatusRequestEntityTooLarge},
	CodeUnsupportedMedia:     {ErrUnsupportedMedia, http.StatusUnsupportedMediaType},
	CodeIdempotencyKeyReused: {ErrIdempotencyKeyReused, http.StatusUnprocessableEntity},
	CodeRateLimited:          {ErrRateLimited, http.StatusTooManyRequests},
	CodeHeaderTooLarge:       {ErrHeaderTooLarge, http.StatusRequestHeaderFieldsTooLarge},
	CodeInternal:             {ErrInternal, http.StatusInternalServerError},
	CodeUnavailable:          {ErrUnavailable, http.StatusServiceUnavailable},
}

// codeOfStatus names the code of an error answer whose body is not the
// API's (a proxy's or load balancer's page), when its status has one code.
// 409 has two and stays without one.
func codeOfStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalidRequest
	case http.StatusConflict:
		return ""
	}
	for code, c := range codes {
		if c.status == status {
			return code
		}
	}
	if status >= 500 {
		return CodeInternal
	}
	return ""
}

// Error is an error answer of the service.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is the API's error code (the Code* constants), or, for an answer
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
	c, ok := codes[e.Code]
	return ok && c.sentinel == target
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
