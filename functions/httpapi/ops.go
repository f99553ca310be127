package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.uber.org/zap/zapcore"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/platform/logring"
)

func (s *Service) instances(c *fasthttp.RequestCtx, log *reqLog) error {
	if s.d.Membership == nil {
		return writeJSON(c, fasthttp.StatusOK, map[string]any{"instances": []Member{}})
	}
	ctx, cancel := s.requestContext(log)
	defer cancel()
	ms, err := s.d.Membership.Members(ctx)
	if err != nil {
		return Errorf(api.CodeUnavailable, "cannot list instances: %v", err)
	}
	return writeJSON(c, fasthttp.StatusOK, map[string]any{"instances": ms})
}

type checkView struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Status values of /health.
const (
	StatusOK       = "ok"
	StatusDegraded = "degraded"
	StatusDown     = "down"
)

// HealthReport runs every check and folds the result.
func (s *Service) HealthReport(ctx context.Context) (string, map[string]checkView) {
	status := StatusOK
	checks := make(map[string]checkView, len(s.d.Checks)+1)
	for _, ch := range s.d.Checks {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := ch.Run(cctx)
		cancel()
		if err == nil {
			checks[ch.Name] = checkView{Status: StatusOK}
			continue
		}
		v := checkView{Status: StatusDegraded, Error: err.Error()}
		if ch.Critical {
			v.Status = StatusDown
			status = StatusDown
		} else if status == StatusOK {
			status = StatusDegraded
		}
		checks[ch.Name] = v
	}
	if err := s.d.Audit.Healthy(); err != nil {
		v := checkView{Status: StatusDegraded, Error: err.Error()}
		if !s.cfg.AuditFailOpen {
			v.Status, status = StatusDown, StatusDown
		} else if status == StatusOK {
			status = StatusDegraded
		}
		checks["audit"] = v
	}
	if s.draining.Load() {
		checks["shutdown"] = checkView{Status: StatusDown, Error: "draining for shutdown"}
		status = StatusDown
	}
	return status, checks
}

func (s *Service) health(c *fasthttp.RequestCtx, log *reqLog) error {
	if log.path == "/health/live" {
		return writeJSON(c, fasthttp.StatusOK, map[string]string{"status": StatusOK})
	}
	ctx, cancel := s.requestContext(log)
	defer cancel()
	status, checks := s.HealthReport(ctx)
	code := fasthttp.StatusOK
	if status == StatusDown {
		code = fasthttp.StatusServiceUnavailable
		c.Response.Header.Set("Retry-After", "1")
	}
	if log.path == "/health/ready" {
		return writeJSON(c, code, map[string]string{"status": status})
	}
	return writeJSON(c, code, map[string]any{"status": status, "checks": checks})
}

func (s *Service) logs(c *fasthttp.RequestCtx, _ *reqLog) error {
	args := c.QueryArgs()
	q := logring.Query{MinLevel: zapcore.DebugLevel, RequestID: string(args.Peek("request_id")), Limit: 100}
	if lv := args.Peek("level"); len(lv) > 0 {
		if err := q.MinLevel.UnmarshalText(lv); err != nil {
			return Errorf(api.CodeInvalidRequest, "level must be debug, info, warn or error")
		}
	}
	if l := args.Peek("limit"); len(l) > 0 {
		n, err := strconv.Atoi(string(l))
		if err != nil || n < 1 || n > 1000 {
			return Errorf(api.CodeInvalidRequest, "limit must be between 1 and 1000")
		}
		q.Limit = n
	}
	entries := s.d.Logs.Entries(q)
	out := make([]json.RawMessage, len(entries))
	for i, e := range entries {
		out[i] = e.JSON
	}
	return writeJSON(c, fasthttp.StatusOK, map[string]any{"entries": out})
}

func (s *Service) metrics(c *fasthttp.RequestCtx, _ *reqLog) error {
	fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(s.d.Metrics.Registry, promhttp.HandlerOpts{}))(c)
	return nil
}

// RangeCheck is the health check of an ID source: critical when nothing is
// left to issue and the last claim failed.
func RangeCheck(src IDSource) Check {
	return Check{Name: "ranges", Critical: true, Run: func(context.Context) error {
		if st := src.Stats(); st.Headroom == 0 && st.LastError != "" {
			return fmt.Errorf("no counter range left and the last claim failed: %s", st.LastError)
		}
		return nil
	}}
}

// StaticMembership lists a fixed set of instances (embedded mode: itself).
type StaticMembership []Member

// Members implements Membership.
func (m StaticMembership) Members(context.Context) ([]Member, error) { return m, nil }
