package httpapi

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
)

// Route is one route of the API, as the service matches it and as
// api/openapi.json documents it: the table the router dispatches on is the
// table Routes returns, so a test that compares Routes with the document
// compares the document with what is served.
type Route struct {
	// Path is the path template: literal segments and one {name}
	// parameter at most, which matches one non-empty segment. It labels
	// the route's metrics.
	Path string
	// Method is the one method of the route; another answers 405
	// method_not_allowed with Allow.
	Method string
	// Scope is the token scope the route needs; "" for an open route.
	Scope string
}

// route is a Route with its handler.
type route struct {
	Route
	// rest lets the last parameter take the rest of the path, "/"
	// included: "/ids/{id}/x" names no ID, and answers 400 invalid_id
	// rather than 404.
	rest   bool
	handle func(*Service, *fasthttp.RequestCtx, *reqLog) error
}

// table is every route, in the order route tries them (no two match the
// same path).
var table = [...]route{
	{Route: Route{"/generate", fasthttp.MethodPost, auth.ScopeGenerate}, handle: (*Service).generate},
	{Route: Route{"/commit", fasthttp.MethodPost, auth.ScopeCommit}, handle: (*Service).commit},
	{Route: Route{"/compensate", fasthttp.MethodPost, auth.ScopeCompensate}, handle: (*Service).compensate},
	{Route: Route{"/ids/{id}", fasthttp.MethodGet, auth.ScopeRead}, rest: true, handle: (*Service).getID},
	{Route: Route{"/instances", fasthttp.MethodGet, auth.ScopeRead}, handle: (*Service).instances},
	{Route: Route{"/health", fasthttp.MethodGet, ""}, handle: (*Service).health},
	{Route: Route{"/health/live", fasthttp.MethodGet, ""}, handle: (*Service).health},
	{Route: Route{"/health/ready", fasthttp.MethodGet, ""}, handle: (*Service).health},
	{Route: Route{"/subjects/{subject}/key", fasthttp.MethodDelete, auth.ScopeAdmin}, handle: (*Service).eraseSubject},
	{Route: Route{"/logs", fasthttp.MethodGet, auth.ScopeOpsRead}, handle: (*Service).logs},
	{Route: Route{"/metrics", fasthttp.MethodGet, auth.ScopeOpsRead}, handle: (*Service).metrics},
	{Route: Route{"/reconcile", fasthttp.MethodGet, auth.ScopeOpsRead}, handle: (*Service).reconcileReport},
	{Route: Route{"/openapi.json", fasthttp.MethodGet, ""}, handle: (*Service).openAPI},
}

// Routes returns every route the service serves, in matching order.
func Routes() []Route {
	out := make([]Route, len(table))
	for i, r := range table {
		out[i] = r.Route
	}
	return out
}

// match reports whether path, checked by checkPath, is one of r's, and
// returns where its parameter is in path (start = end for a route without
// one). Segments compare literally; checkPath leaves no empty segment, so
// a parameter is never empty.
func (r *route) match(path []byte) (start, end int, ok bool) {
	tpl, at := r.Path, 0
	for tpl != "" {
		if at == len(path) {
			return 0, 0, false
		}
		tseg, trest := cutSegment(tpl[1:])
		pend := len(path)
		if i := bytes.IndexByte(path[at+1:], '/'); i >= 0 {
			pend = at + 1 + i
		}
		switch {
		case len(tseg) > 1 && tseg[0] == '{' && tseg[len(tseg)-1] == '}':
			if r.rest && trest == "" {
				return at + 1, len(path), true
			}
			start, end = at+1, pend
		case tseg != string(path[at+1:pend]):
			return 0, 0, false
		}
		tpl, at = trest, pend
	}
	return start, end, at == len(path)
}

// cutSegment splits s, a path after a "/", at its next "/".
func cutSegment(s string) (seg, rest string) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// route dispatches and returns the route label for metrics.
//
// It routes on the path as the client sent it (URI().PathOriginal(): the
// request line's, or the Lambda event's rawPath), never on fasthttp's
// Path(), which is percent-decoded and normalised ("//" and dot segments
// folded): there "/subjects//key" and "/subjects/%2f/key" both become
// "/subjects/key", and a destructive call would hit another resource than
// the one named. checkPath refuses every path whose decoded or normalised
// form could differ from the raw one, so the two never disagree on which
// resource a call names, whatever the server's settings.
func (s *Service) route(c *fasthttp.RequestCtx, log *reqLog) string {
	raw := c.URI().PathOriginal()
	if perr := checkPath(raw); perr != nil {
		s.fail(c, log, perr)
		return "other"
	}
	var r *route
	for i := range table {
		if start, end, ok := table[i].match(raw); ok {
			r = &table[i]
			if start == end {
				// The path is the template, segment for segment: no
				// string of the request's bytes is needed.
				log.path = r.Path
			} else {
				log.path = string(raw)
				log.param = log.path[start:end]
			}
			break
		}
	}
	if r == nil {
		log.path = string(raw)
		s.fail(c, log, Errorf(api.CodeNotFound, "no route %s", log.path))
		return "other"
	}
	if string(c.Method()) != r.Method {
		c.Response.Header.Set("Allow", r.Method)
		s.fail(c, log, Errorf(api.CodeMethodNotAllowed, "%s needs %s", r.Path, r.Method))
		return r.Path
	}
	if err := s.checkRequest(c, log); err != nil {
		s.fail(c, log, err)
		return r.Path
	}
	if r.Scope != "" {
		if err := s.authorize(c, log, r.Scope); err != nil {
			s.fail(c, log, err)
			return r.Path
		}
	}
	if err := r.handle(s, c, log); err != nil {
		s.fail(c, log, err)
	}
	return r.Path
}

// openAPI serves the API's OpenAPI document, api/openapi.json.
func (s *Service) openAPI(c *fasthttp.RequestCtx, _ *reqLog) error {
	c.Response.Header.SetContentType("application/json")
	c.SetBody(api.Document())
	return nil
}

// checkPath returns nil when the raw request path names one resource
// unambiguously, else the 400 that says why. Refused: a path that does not
// start with "/"; any byte outside printable ASCII (so a path parameter is
// valid UTF-8 by construction); percent-encoding (no route needs it, and
// "%2f", "%5c" or "%2e" would become a separator or a dot after decoding);
// a backslash (a separator to some proxies and filesystems); an empty
// segment ("//", a trailing "/"); a dot segment ("." or ".."). "/" alone is
// a path (no route: 404).
func checkPath(raw []byte) *Error {
	if len(raw) == 0 || raw[0] != '/' {
		return Errorf(api.CodeInvalidRequest, "the path must start with /")
	}
	for _, ch := range raw {
		switch {
		case ch < 0x21 || ch > 0x7e:
			return Errorf(api.CodeInvalidRequest, "the path may hold printable ASCII characters only")
		case ch == '%':
			return Errorf(api.CodeInvalidRequest, "the path must not be percent-encoded (an encoded separator or dot could name another resource)")
		case ch == '\\':
			return Errorf(api.CodeInvalidRequest, "the path must not hold a backslash")
		}
	}
	if len(raw) == 1 {
		return nil
	}
	for rest := raw[1:]; ; {
		seg := rest
		i := bytes.IndexByte(rest, '/')
		if i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		}
		switch string(seg) {
		case "":
			return Errorf(api.CodeInvalidRequest, "the path has an empty segment (a doubled or trailing /)")
		case ".", "..":
			return Errorf(api.CodeInvalidRequest, "the path has a dot segment (. or ..)")
		}
		if i < 0 {
			return nil
		}
	}
}

// checkRequest refuses, on every route and before authentication, what
// would be read ambiguously: a header the service reads once
// (Authorization, Idempotency-Key, Content-Type) given more than once
// (fasthttp keeps the first for Peek, or only the last for Content-Type,
// while a proxy in front may have read another copy), and query
// parameters that are not valid UTF-8 (decoded: "%ff" is a byte, not
// text). A repeated Authorization header is audited (auth.failure): it is
// how a second token is slipped past a proxy that checked the first.
func (s *Service) checkRequest(c *fasthttp.RequestCtx, log *reqLog) error {
	hdr := &c.Request.Header
	if n := len(hdr.PeekAll(fasthttp.HeaderAuthorization)); n > 1 {
		s.audit(c, log, audit.Event{Action: audit.ActionAuthFailure, Resource: log.path, Outcome: audit.OutcomeDenied, Reason: "repeated Authorization header"})
		return Errorf(api.CodeInvalidRequest, "the Authorization header is given %d times; send it once", n)
	}
	if n := len(hdr.PeekAll("Idempotency-Key")); n > 1 {
		return Errorf(api.CodeInvalidRequest, "the Idempotency-Key header is given %d times; send it once", n)
	}
	// fasthttp keeps one Content-Type (the last): count the copies in the
	// header block as received. It is empty on the Lambda path, where API
	// Gateway joins repeated headers into one value, which
	// mime.ParseMediaType then refuses (415).
	if n := rawHeaderCount(hdr.RawHeaders(), fasthttp.HeaderContentType); n > 1 {
		return Errorf(api.CodeInvalidRequest, "the Content-Type header is given %d times; send it once", n)
	}
	for k, v := range c.QueryArgs().All() {
		if !utf8.Valid(k) || !utf8.Valid(v) {
			return Errorf(api.CodeInvalidRequest, "a query parameter is not valid UTF-8")
		}
	}
	return nil
}

// rawHeaderCount counts the header lines named name (ASCII,
// case-insensitive) in a raw header block. A continuation line (obs-fold)
// starts with a space or tab and never matches.
func rawHeaderCount(block []byte, name string) int {
	n := 0
	for len(block) > 0 {
		line := block
		if i := bytes.IndexByte(block, '\n'); i >= 0 {
			line, block = block[:i], block[i+1:]
		} else {
			block = nil
		}
		if len(line) > len(name) && line[len(name)] == ':' && asciiEqualFold(line[:len(name)], name) {
			n++
		}
	}
	return n
}

func asciiEqualFold(b []byte, s string) bool {
	lower := func(c byte) byte {
		if c >= 'A' && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}
