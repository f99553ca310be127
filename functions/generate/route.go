package generate

import (
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/shared/auth"
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
	if len(raw) == 1 {
		return "/", nil
	}
	for seg := range strings.SplitSeq(string(raw[1:]), "/") {
		switch seg {
		case "":
			return "", Errorf(CodeInvalidRequest, "the path has an empty segment (a doubled or trailing /)")
		case ".", "..":
			return "", Errorf(CodeInvalidRequest, "the path has a dot segment (. or ..)")
		}
	}
	return string(raw), nil
}

// checkRequest refuses, on every route and before authentication, query
// parameters that are not valid UTF-8 (decoded: "%ff" is a byte, not
// text).
func (s *Service) checkRequest(c *fasthttp.RequestCtx, log *reqLog) error {
	for k, v := range c.QueryArgs().All() {
		if !utf8.Valid(k) || !utf8.Valid(v) {
			return Errorf(CodeInvalidRequest, "a query parameter is not valid UTF-8")
		}
	}
	return nil
}
