package lambdart

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Header names of the Runtime API.
const (
	HeaderRequestID   = "Lambda-Runtime-Aws-Request-Id"
	HeaderDeadlineMS  = "Lambda-Runtime-Deadline-Ms"
	HeaderFunctionARN = "Lambda-Runtime-Invoked-Function-Arn"
	HeaderTraceID     = "Lambda-Runtime-Trace-Id"
	// HeaderErrorType is the error type a runtime may send with an error
	// post; aws-lambda-go sends it (and HeaderErrorBody, base64) as
	// trailers of a response whose body failed while streaming.
	HeaderErrorType = "Lambda-Runtime-Function-Error-Type"
	HeaderErrorBody = "Lambda-Runtime-Function-Error-Body"
)

const prefix = "/2018-06-01/runtime"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/invocation/next", s.next)
	mux.HandleFunc("POST "+prefix+"/invocation/{id}/response", s.response)
	mux.HandleFunc("POST "+prefix+"/invocation/{id}/error", s.invocationError)
	mux.HandleFunc("POST "+prefix+"/init/error", s.initError)
	return mux
}

// apiError is the Runtime API's error document.
type apiError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func accepted(w http.ResponseWriter) {
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "OK"})
}

// next hands the oldest queued event to the runtime, waiting for one.
func (s *Server) next(w http.ResponseWriter, r *http.Request) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			writeJSON(w, http.StatusInternalServerError, apiError{"the Runtime API is shutting down", "Runtime.ServiceClosed"})
			return
		}
		if len(s.queue) > 0 {
			inv := s.queue[0]
			s.queue = s.queue[1:]
			inv.state = running
			inv.start = time.Now()
			// Whole milliseconds: the header and Invoke's timer agree.
			inv.deadline = time.UnixMilli(inv.start.Add(inv.timeout).UnixMilli())
			s.invs[inv.id] = inv
			close(inv.dispatched)
			s.mu.Unlock()
			s.opts.Logf("lambdart: invocation %s dispatched, deadline %s", inv.id, inv.deadline.Format(time.RFC3339Nano))
			h := w.Header()
			h.Set(HeaderRequestID, inv.id)
			h.Set(HeaderDeadlineMS, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
			h.Set(HeaderFunctionARN, s.FunctionARN())
			h.Set(HeaderTraceID, inv.trace)
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(inv.payload)
			return
		}
		avail := s.avail
		s.mu.Unlock()
		select {
		case <-avail:
		case <-s.done:
		case <-r.Context().Done():
			return
		}
	}
}

// running returns the dispatched invocation of the request's {id}, or
// answers 400 and returns nil.
func (s *Server) running(w http.ResponseWriter, r *http.Request) *invocation {
	id := r.PathValue("id")
	s.mu.Lock()
	inv := s.invs[id]
	s.mu.Unlock()
	if inv == nil {
		writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("no invocation %q was handed out", id), "InvalidRequestID"})
	}
	return inv
}

// settle ends inv with res and answers the runtime: 202, also for an
// invocation that ended already by a timeout or the caller's leaving (the
// answer is dropped); 400 when the runtime already answered it.
func (s *Server) settle(w http.ResponseWriter, inv *invocation, res Result) {
	s.mu.Lock()
	if s.endLocked(inv, res, nil) {
		s.mu.Unlock()
		accepted(w)
		return
	}
	answered := inv.err == nil
	s.mu.Unlock()
	if answered {
		writeJSON(w, http.StatusBadRequest, apiError{"invocation " + inv.id + " was answered already", "InvalidStateTransition"})
		return
	}
	s.opts.Logf("lambdart: late answer for invocation %s dropped (it ended: %v)", inv.id, inv.err)
	accepted(w)
}

func (s *Server) response(w http.ResponseWriter, r *http.Request) {
	inv := s.running(w, r)
	if inv == nil {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(s.opts.MaxResponse)+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"reading the response: " + err.Error(), "InvalidRequest"})
		return
	}
	if len(body) > s.opts.MaxResponse {
		msg := fmt.Sprintf("response payload larger than %d bytes", s.opts.MaxResponse)
		s.end(inv, Result{ErrorType: "Function.ResponseSizeTooLarge", ErrorMessage: msg}, nil)
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{msg, "RequestEntityTooLarge"})
		return
	}
	// A response body that failed while streaming: aws-lambda-go ends it
	// and names the error in trailers, readable once the body is read.
	if et := r.Trailer.Get(HeaderErrorType); et != "" {
		res := Result{ErrorType: et, Payload: body}
		if doc, err := base64.StdEncoding.DecodeString(r.Trailer.Get(HeaderErrorBody)); err == nil {
			var e apiError
			if json.Unmarshal(doc, &e) == nil {
				res.ErrorMessage = e.Message
			}
			res.Payload = doc
		}
		s.settle(w, inv, res)
		return
	}
	s.settle(w, inv, Result{Payload: body})
}

func (s *Server) invocationError(w http.ResponseWriter, r *http.Request) {
	inv := s.running(w, r)
	if inv == nil {
		return
	}
	res, err := readError(r, s.opts.MaxResponse)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error(), "InvalidRequest"})
		return
	}
	s.settle(w, inv, res)
}

// initError records the runtime's init failure and fails the queued events
// (the ones this init would have served).
func (s *Server) initError(w http.ResponseWriter, r *http.Request) {
	res, err := readError(r, s.opts.MaxResponse)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error(), "InvalidRequest"})
		return
	}
	s.mu.Lock()
	s.initErr = &res
	for len(s.queue) > 0 {
		s.endLocked(s.queue[0], res, ErrInitFailed)
	}
	s.mu.Unlock()
	s.opts.Logf("lambdart: init error %s: %s", res.ErrorType, res.ErrorMessage)
	accepted(w)
}

// readError reads an error post: the optional error-type header and the
// error document.
func readError(r *http.Request, limit int) (Result, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return Result{}, fmt.Errorf("reading the error: %w", err)
	}
	if len(body) > limit {
		return Result{}, errors.New("error document too large")
	}
	res := Result{Payload: body, ErrorType: r.Header.Get(HeaderErrorType)}
	var doc apiError
	if json.Unmarshal(body, &doc) == nil {
		res.ErrorMessage = doc.Message
		if res.ErrorType == "" {
			res.ErrorType = doc.Type
		}
	}
	if res.ErrorType == "" {
		res.ErrorType = "Unhandled"
	}
	return res, nil
}

// traceID is an X-Ray trace header of a fresh, unsampled trace.
func traceID() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), hex.EncodeToString(b[:12]), hex.EncodeToString(b[12:]))
}
