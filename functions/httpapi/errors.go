package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
)

// Error is an error with a client-facing code and message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Status returns the HTTP status of the code (api.Status; 500 for unknown
// codes).
func (e *Error) Status() int {
	if s, ok := api.Status(e.Code); ok {
		return s
	}
	return http.StatusInternalServerError
}

// Errorf builds an *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// toError maps any error to the client-facing *Error. Unknown errors become
// internal with a generic message; the caller logs the original once.
func toError(err error) (e *Error, known bool) {
	if errors.As(err, &e) {
		return e, true
	}
	switch {
	case errors.Is(err, generator.ErrUnavailable), errors.Is(err, registry.ErrUnavailable), errors.Is(err, registry.ErrCollision):
		// A run of collisions longer than the retry budget means the range
		// source is behind the registry: refuse for now, never show them.
		return Errorf(api.CodeUnavailable, "the service cannot allocate or register IDs right now; retry later"), true
	case errors.Is(err, registry.ErrNotFound):
		return Errorf(api.CodeNotFound, "the registry does not hold this ID"), true
	case errors.Is(err, registry.ErrConflict):
		return Errorf(api.CodeConflict, "the ID was compensated; it cannot be committed"), true
	case errors.Is(err, idcodec.ErrSyntax), errors.Is(err, idcodec.ErrNotOurs):
		return Errorf(api.CodeInvalidID, "%s", err.Error()), true
	case errors.Is(err, saga.ErrMalformed):
		// The envelope's own sentence, without the sentinel's prefix.
		return Errorf(api.CodeInvalidRequest, "%s", strings.TrimPrefix(err.Error(), saga.ErrMalformed.Error()+": ")), true
	case errors.Is(err, generator.ErrBatchSize):
		return Errorf(api.CodeInvalidRequest, "count must be between 1 and 1000"), true
	}
	return Errorf(api.CodeInternal, "internal error; see the service log with the request ID"), false
}
