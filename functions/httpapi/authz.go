package httpapi

import (
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
)

type principalKey struct{}

// devPrincipal is the caller in development mode: every scope.
var devPrincipal = auth.Principal{Subject: "dev", Scopes: map[string]bool{
	auth.ScopeGenerate: true, auth.ScopeRead: true, auth.ScopeCommit: true,
	auth.ScopeCompensate: true, auth.ScopeOpsRead: true, auth.ScopeAdmin: true,
}}

// authorize verifies the bearer token and the route's scope, and keeps the
// principal on the request: 401 without a valid token, 403 without the scope.
func (s *Service) authorize(c *fasthttp.RequestCtx, log *reqLog, scope string) error {
	p := devPrincipal
	if !s.cfg.Dev {
		h := string(c.Request.Header.Peek("Authorization"))
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			token = ""
		}
		var err error
		if p, err = s.d.Auth.Verify(strings.TrimSpace(token)); err != nil {
			if token == "" {
				c.Response.Header.Set("WWW-Authenticate", `Bearer realm="idgen"`)
				s.audit(c, log, audit.Event{Action: audit.ActionAuthFailure, Resource: log.path, Outcome: audit.OutcomeDenied, Reason: "no bearer token"})
				return Errorf(api.CodeUnauthorized, "a bearer token is required")
			}
			c.Response.Header.Set("WWW-Authenticate", `Bearer realm="idgen", error="invalid_token"`)
			log.L().Warn("auth: invalid token", zap.String("path", log.path), zap.Error(err))
			s.audit(c, log, audit.Event{Action: audit.ActionAuthFailure, Resource: log.path, Outcome: audit.OutcomeDenied, Reason: "invalid token"})
			return Errorf(api.CodeUnauthorized, "the bearer token is invalid or expired")
		}
	}
	if !p.Has(scope) {
		c.Response.Header.Set("WWW-Authenticate", `Bearer realm="idgen", error="insufficient_scope", scope="`+scope+`"`)
		s.audit(c, log, audit.Event{Actor: p.Subject, Action: audit.ActionScopeDenied, Resource: log.path, Outcome: audit.OutcomeDenied, Reason: "missing scope " + scope})
		return Errorf(api.CodeForbidden, "the token lacks the %s scope", scope)
	}
	if s.limits != nil { // no clock read without a limit
		if ok, retry := s.limits.allow(p.Subject, time.Now()); !ok {
			c.Response.Header.Set("Retry-After", retry)
			return Errorf(api.CodeRateLimited, "too many requests for %s; retry after %s s", p.Subject, retry)
		}
	}
	if s.cfg.Dev {
		c.SetUserValue(principalKey{}, s.devPrincipalVal) // boxed once
	} else {
		c.SetUserValue(principalKey{}, p)
	}
	return nil
}

// principal is the caller authorize accepted.
func principal(c *fasthttp.RequestCtx) auth.Principal {
	p, _ := c.UserValue(principalKey{}).(auth.Principal)
	return p
}

// subject is the authenticated caller's sub ("dev" in development mode).
func (s *Service) subject(c *fasthttp.RequestCtx) string { return principal(c).Subject }

// audit records e with the request's source and ID; a failing sink is logged
// (and reported by /health) and the error returned: the saga transitions
// answer 503 for an entry they owe (unless Config.AuditFailOpen), other
// callers go on.
func (s *Service) audit(c *fasthttp.RequestCtx, log *reqLog, e audit.Event) error {
	e.Source, e.RequestID, e.TraceID, e.Instance = c.RemoteIP().String(), log.requestID(), log.traceID(), s.cfg.Instance
	err := s.d.Audit.Record(e)
	if err != nil {
		log.L().Error("audit: record failed", zap.String("action", e.Action), zap.Error(err))
	}
	return err
}

// auditGate refuses state-changing calls while the audit sink fails, unless
// configured to fail open.
func (s *Service) auditGate() error {
	if err := s.d.Audit.Healthy(); err != nil && !s.cfg.AuditFailOpen {
		return Errorf(api.CodeUnavailable, "the audit log cannot be written; state changes are refused until it recovers")
	}
	return nil
}
