package api

import "net/http"

// Error codes of the API's error body {"error": {"code", "message"}}: the
// one list the service (functions/httpapi) answers with and the Go client
// (package client) reads, each with its HTTP status (Status). The
// document's ErrorCode enum lists the same codes
// (functions/httpapi's TestErrorCodesAreDocumented).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidID            = "invalid_id"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeRequestTimeout       = "request_timeout"
	CodeConflict             = "conflict"
	CodeExpired              = "expired" // a commit at or after the ID's deadline: the ID is compensated
	CodeBodyTooLarge         = "body_too_large"
	CodeUnsupportedMedia     = "unsupported_media_type"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeRateLimited          = "rate_limited"
	CodeHeaderTooLarge       = "header_too_large"
	CodeInternal             = "internal"
	CodeUnavailable          = "unavailable"
)

// statuses is the one table from code to HTTP status. 409 has two codes:
// conflict and expired stay distinct because an expired ID is compensated
// by the failed commit itself.
var statuses = map[string]int{
	CodeInvalidRequest:       http.StatusBadRequest,
	CodeInvalidID:            http.StatusBadRequest,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeForbidden:            http.StatusForbidden,
	CodeNotFound:             http.StatusNotFound,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodeRequestTimeout:       http.StatusRequestTimeout,
	CodeConflict:             http.StatusConflict,
	CodeExpired:              http.StatusConflict,
	CodeBodyTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia:     http.StatusUnsupportedMediaType,
	CodeIdempotencyKeyReused: http.StatusUnprocessableEntity,
	CodeRateLimited:          http.StatusTooManyRequests,
	CodeHeaderTooLarge:       http.StatusRequestHeaderFieldsTooLarge,
	CodeInternal:             http.StatusInternalServerError,
	CodeUnavailable:          http.StatusServiceUnavailable,
}

// Status returns the HTTP status of code; false for a code not in the
// table.
func Status(code string) (int, bool) {
	s, ok := statuses[code]
	return s, ok
}

// Codes returns every error code, in no particular order.
func Codes() []string {
	out := make([]string, 0, len(statuses))
	for c := range statuses {
		out = append(out, c)
	}
	return out
}
