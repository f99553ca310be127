package httpapi

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
)

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
	path, perr := checkPath(c.URI().PathOriginal())
	if perr != nil {
		s.fail(c, log, perr)
		return "other"
	}
	log.path = path
	var (
		route  string
		method = fasthttp.MethodGet
		scope  string // "" = open
		h      func(*fasthttp.RequestCtx, *reqLog) error
	)
	switch {
	case path == "/generate":
		route, method, scope, h = path, fasthttp.MethodPost, auth.ScopeGenerate, s.generate
	case path == "/commit":
		route, method, scope, h = path, fasthttp.MethodPost, auth.ScopeCommit, s.commit
	case path == "/compensate":
		route, method, scope, h = path, fasthttp.MethodPost, auth.ScopeCompensate, s.compensate
	case strings.HasPrefix(path, "/ids/"):
		// checkPath leaves no empty segment: the ID is not empty. A
		// longer rest ("{id}/x") is not an ID: invalid_id.
		route, scope, h = "/ids/{id}", auth.ScopeRead, s.getID
		log.param = path[len("/ids/"):]
	case path == "/instances":
		route, scope, h = path, auth.ScopeRead, s.instances
	case path == "/health", path == "/health/live", path == "/health/ready":
		route, h = path, s.health
	case subjectKeyPath(path) != "":
		route, method, scope, h = "/subjects/{subject}/key", fasthttp.MethodDelete, auth.ScopeAdmin, s.eraseSubject
		log.param = subjectKeyPath(path)
	case path == "/logs":
		route, scope, h = path, auth.ScopeOpsRead, s.logs
	case path == "/metrics":
		route, scope, h = path, auth.ScopeOpsRead, s.metrics
	default:
		s.fail(c, log, Errorf(CodeNotFound, "no route %s", path))
		return "other"
	}
	if string(c.Method()) != method {
		c.Response.Header.Set("Allow", method)
		s.fail(c, log, Errorf(CodeMethodNotAllowed, "%s needs %s", route, method))
		return route
	}
	if err := s.checkRequest(c, log); err != nil {
		s.fail(c, log, err)
		return route
	}
	if scope != "" {
		if err := s.authorize(c, log, scope); err != nil {
			s.fail(c, log, err)
			return route
		}
	}
	if err := h(c, log); err != nil {
		s.fail(c, log, err)
	}
	return route
}

// subjectKeyPath returns the {subject} of "/subjects/{subject}/key", or ""
// when path is not of that form (exactly three segments).
func subjectKeyPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/subjects/")
	if !ok {
		return ""
	}
	subject, ok := strings.CutSuffix(rest, "/key")
	if !ok || strings.Contains(subject, "/") {
		return ""
	}
	return subject
}

// checkPath returns the raw request path as a string when it names one
// resource unambiguously, else the 400 that says why. Refused: a path that
// does not start with "/"; any byte outside printable ASCII (so a path
// parameter is valid UTF-8 by construction); percent-encoding (no route
// needs it, and "%2f", "%5c" or "%2e" would become a separator or a dot
// after decoding); a backslash (a separator to some proxies and
// filesystems); an empty segment ("//", a trailing "/"); a dot segment
// ("." or ".."). "/" alone is a path (no route: 404).
func checkPath(raw []byte) (string, *Error) {
	if len(raw) == 0 || raw[0] != '/' {
		return "", Errorf(CodeInvalidRequest, "the path must start with /")
	}
	for _, ch := range raw {
		switch {
		case ch < 0x21 || ch > 0x7e:
			return "", Errorf(CodeInvalidRequest, "the path may hold printable ASCII characters only")
		case ch == '%':
			return "", Errorf(CodeInvalidRequest, "the path must not be percent-encoded (an encoded separator or dot could name another resource)")
		case ch == '\\':
			return "", Errorf(CodeInvalidRequest, "the path must not hold a backslash")
		}
	}
	path := string(raw)
	if path == "/" {
		return path, nil
	}
	for seg := range strings.SplitSeq(path[1:], "/") {
		switch seg {
		case "":
			return "", Errorf(CodeInvalidRequest, "the path has an empty segment (a doubled or trailing /)")
		case ".", "..":
			return "", Errorf(CodeInvalidRequest, "the path has a dot segment (. or ..)")
		}
	}
	return path, nil
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
		return Errorf(CodeInvalidRequest, "the Authorization header is given %d times; send it once", n)
	}
	if n := len(hdr.PeekAll("Idempotency-Key")); n > 1 {
		return Errorf(CodeInvalidRequest, "the Idempotency-Key header is given %d times; send it once", n)
	}
	// fasthttp keeps one Content-Type (the last): count the copies in the
	// header block as received. It is empty on the Lambda path, where API
	// Gateway joins repeated headers into one value, which
	// mime.ParseMediaType then refuses (415).
	if n := rawHeaderCount(hdr.RawHeaders(), fasthttp.HeaderContentType); n > 1 {
		return Errorf(CodeInvalidRequest, "the Content-Type header is given %d times; send it once", n)
	}
	for k, v := range c.QueryArgs().All() {
		if !utf8.Valid(k) || !utf8.Valid(v) {
			return Errorf(CodeInvalidRequest, "a query parameter is not valid UTF-8")
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
