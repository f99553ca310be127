// Package apitest checks answers of idgen's HTTP API against its contract,
// the OpenAPI document of package api, with kin-openapi: the status is one
// the operation documents, the documented headers are there and match
// their schemas, and the body matches the schema of its status and media
// type. Only tests import it: kin-openapi stays out of the binary.
//
// The operation is the document's for the request's method and path. A
// request no operation has is held to the answers any path can give: a
// path no operation has answers components.responses.NotFound (or, for a
// path the service refuses as written, BadRequestOrID); a documented path
// with another method answers MethodNotAllowed (or BadRequest). On every
// path the HTTP server may answer RequestTimeout, BodyTooLarge,
// HeaderTooLarge and Unavailable before the handler runs.
//
// Requests are not validated: tests send malformed ones on purpose, and the
// answer to each must still be documented.
//
// kin-openapi loads, validates and routes the document; the schemas of
// every answer's headers and body are compiled once, by New, with the JSON
// Schema 2020-12 validator kin-openapi itself uses for an OpenAPI 3.1
// document (it compiles a schema at each use, about a millisecond). A
// check then costs tens of microseconds, a batch of 1000 IDs about 2 ms,
// so a suite under load checks every answer it receives (Transport). The
// tests hold Check to the verdicts of kin-openapi's own response check
// (openapi3filter.ValidateResponse), example by example and under fuzzing.
package apitest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/idgen/idgen/api"
)

// Validator checks exchanges against one document. Safe for concurrent use.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	// notFound and notAllowed are the operations that stand for a request
	// the document has no operation for: the answers any path can give.
	notFound, notAllowed *openapi3.Operation
	schemas              schemas
}

// The answers of a request no operation has, by component name.
var (
	anyPath       = []string{"RequestTimeout", "BodyTooLarge", "HeaderTooLarge", "Unavailable"}
	unknownPath   = append([]string{"NotFound", "BadRequestOrID"}, anyPath...)
	unknownMethod = append([]string{"MethodNotAllowed", "BadRequest"}, anyPath...)
)

// New loads and validates doc, an OpenAPI 3.1 document (JSON).
func New(doc []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("apitest: load the document: %w", err)
	}
	if err := t.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("apitest: the document is invalid: %w", err)
	}
	r, err := gorillamux.NewRouter(t)
	if err != nil {
		return nil, fmt.Errorf("apitest: route the document: %w", err)
	}
	v := &Validator{doc: t, router: r}
	if v.notFound, err = v.operationOf(unknownPath); err == nil {
		v.notAllowed, err = v.operationOf(unknownMethod)
	}
	if err != nil {
		return nil, err
	}
	ops := []*openapi3.Operation{v.notFound, v.notAllowed}
	for _, item := range t.Paths.Map() {
		for _, op := range item.Operations() {
			ops = append(ops, op)
		}
	}
	if v.schemas, err = compileSchemas(doc, ops); err != nil {
		return nil, err
	}
	return v, nil
}

// operationOf makes an operation whose answers are the named components.
func (v *Validator) operationOf(names []string) (*openapi3.Operation, error) {
	op := &openapi3.Operation{Responses: openapi3.NewResponses()}
	op.Responses.Delete("default")
	if v.doc.Components == nil {
		return nil, errors.New("apitest: the document has no components")
	}
	for _, name := range names {
		ref := v.doc.Components.Responses[name]
		if ref == nil || ref.Value == nil {
			return nil, fmt.Errorf("apitest: the document has no components.responses.%s", name)
		}
		status, err := statusOf(ref.Value)
		if err != nil {
			return nil, fmt.Errorf("apitest: components.responses.%s: %w", name, err)
		}
		if op.Responses.Status(status) != nil {
			return nil, fmt.Errorf("apitest: components.responses.%s: a second answer for status %d", name, status)
		}
		op.Responses.Set(strconv.Itoa(status), ref)
	}
	return op, nil
}

// statusOf reads the status of a component answer from its x-status
// (functions/httpapi's tests hold it to the status of its error codes).
func statusOf(r *openapi3.Response) (int, error) {
	mt := r.Content.Get("application/json")
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
		return 0, errors.New("no application/json schema")
	}
	status, ok := r.Extensions["x-status"]
	if !ok {
		return 0, errors.New("no x-status")
	}
	n, ok := status.(float64)
	if !ok {
		return 0, fmt.Errorf("x-status %v is not a number", status)
	}
	return int(n), nil
}

var std struct {
	once sync.Once
	v    *Validator
	err  error
}

// Default returns the Validator of api.Document, loaded on first use.
func Default() (*Validator, error) {
	std.once.Do(func() { std.v, std.err = New(api.Document()) })
	return std.v, std.err
}

// Exchange is one request and its answer, as the client saw them.
type Exchange struct {
	// Method and Target are the request line's: Target is the path as
	// sent, with its query.
	Method, Target string
	Status         int
	Header         http.Header
	Body           []byte
}

// Violation is an answer the document does not describe.
type Violation struct {
	// Route is the operation's "METHOD /path/{param}", or the request's
	// method and path when the document has none for it.
	Route  string
	Status int
	Err    error
}

func (e *Violation) Error() string {
	return fmt.Sprintf("apitest: %s answered %d, which the OpenAPI document does not describe: %v", e.Route, e.Status, e.Err)
}

func (e *Violation) Unwrap() error { return e.Err }

// Check returns a *Violation when x's answer is not one the document
// describes for its request, else nil.
func (v *Validator) Check(x Exchange) error {
	req, label := request(x)
	route, _, err := v.router.FindRoute(req)
	op := v.notFound
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
	case errors.Is(err, routers.ErrMethodNotAllowed):
		op = v.notAllowed
	case err != nil:
		return &Violation{Route: label, Status: x.Status, Err: fmt.Errorf("find the operation: %w", err)}
	default:
		op, label = route.Operation, route.Method+" "+route.Path
	}
	switch x.Status {
	case http.StatusMovedPermanently, http.StatusNotModified, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return nil // kin-openapi checks no redirect
	}
	if op.Responses.Len() == 0 {
		return nil
	}
	r := op.Responses.Status(x.Status)
	if r == nil {
		r = op.Responses.Default()
	}
	switch {
	case r == nil:
		err = errors.New("status is not supported")
	case r.Value == nil:
		err = errors.New("response has not been resolved")
	default:
		// A HEAD answer has no body: its status and headers are checked.
		err = v.checkResponse(r.Value, x, req.Method == http.MethodHead)
	}
	if err != nil {
		return &Violation{Route: label, Status: x.Status, Err: err}
	}
	return nil
}

// request is the request x answers, to find its operation by, and the
// label of its route while the document names none: its method and path.
// A target no client sends (the HTTP server refuses it) is a request for
// "/" with a method no operation has.
func request(x Exchange) (*http.Request, string) {
	method := x.Method
	u, err := url.ParseRequestURI(x.Target)
	if err != nil {
		u, method = &url.URL{Path: "/"}, "\x00unparsable"
	}
	req := &http.Request{Method: method, URL: u, Header: http.Header{}, Host: "idgen.test"}
	return req, method + " " + u.EscapedPath()
}

// Check checks x with the Validator of api.Document.
func Check(x Exchange) error {
	v, err := Default()
	if err != nil {
		return err
	}
	return v.Check(x)
}

// TB is what Transport needs of a test: testing.TB satisfies it.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// Transport wraps base (nil: http.DefaultTransport) so that every answer
// it carries is checked against api.Document; an answer the document does
// not describe fails tb (Errorf, so it is safe on any goroutine of the
// test) with the route, the status and the schema error. The answer goes
// on to the caller unchanged, its body read in full first.
//
//	client := &http.Client{Transport: apitest.Transport(nil, t)}
func Transport(base http.RoundTripper, tb TB) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base, tb: tb}
}

// Sampled is Transport checking only a sample of the 2xx answers: every
// answer that is not 2xx is checked, and the first perKind 2xx answers of
// each kind (method, path shape, status). A 2xx past the sample goes
// unchecked: the end-to-end suites use Transport.
func Sampled(base http.RoundTripper, tb TB, perKind int) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base, tb: tb, perKind: perKind, seen: map[string]int{}}
}

type transport struct {
	base http.RoundTripper
	tb   TB

	perKind int // 0: check every answer
	mu      sync.Mutex
	seen    map[string]int // 2xx answers checked, by kind
}

// sample reports whether the answer is to be checked.
func (t *transport) sample(req *http.Request, status int) bool {
	if t.perKind == 0 || status < 200 || status > 299 {
		return true
	}
	// The path's shape: its first segment and how many there are
	// (/ids/<id> and /ids/<other id> are one kind).
	path := strings.TrimPrefix(req.URL.Path, "/")
	first, _, _ := strings.Cut(path, "/")
	kind := req.Method + " /" + first + " " + strconv.Itoa(strings.Count(path, "/")) + " " + strconv.Itoa(status)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[kind] >= t.perKind {
		return false
	}
	t.seen[kind]++
	return true
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err != nil {
		return res, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		// A body cut short is the transport's error, not an answer.
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	if !t.sample(req, res.StatusCode) {
		return res, nil
	}
	if err := Check(Exchange{Method: req.Method, Target: req.URL.RequestURI(), Status: res.StatusCode, Header: res.Header, Body: body}); err != nil {
		t.tb.Errorf("%v", err)
	}
	return res, nil
}
