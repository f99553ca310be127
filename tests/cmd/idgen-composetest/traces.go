package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// otlpEndpoint is the IDGEN_OTLP_ENDPOINT of a run with -traces: the
// monitoring profile's Jaeger, as docker-compose.yml documents it.
const otlpEndpoint = "http://jaeger:4318"

// tracedServices are what `up` starts with -traces: the whole default
// stack through their dependencies, and Jaeger alone of the monitoring
// profile (Prometheus and Grafana have no offline image).
var tracedServices = []string{"lb", "compensate", "jaeger"}

// jaegerTrace is the part of a trace of Jaeger's query API
// (/api/traces) the check reads.
type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
		Tags        []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"processes"`
}

type jaegerSpan struct {
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	ProcessID     string      `json:"processID"`
	References    []jaegerRef `json:"references"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	SpanID  string `json:"spanID"`
}

// jaegerGet decodes the data of one query API answer into v.
func (r *run) jaegerGet(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", r.jaegerPort, path), nil)
	if err != nil {
		return err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(&struct {
		Data any `json:"data"`
	}{v})
}

// traces checks that the run's work reached Jaeger: a /generate request's
// server span with its registry.register child in one trace, and the
// worker's compensate span. Spans leave every instance in batches (every
// 5 s), so it polls for up to 30 s.
func (r *run) traces(ctx context.Context) error {
	t0 := time.Now()
	deadline := t0.Add(30 * time.Second)
	var last error
	for {
		summary, err := r.tracesSeen(ctx)
		if err == nil {
			r.logf("phase traces: Jaeger has %s (%.1f s after the last request)", summary, time.Since(t0).Seconds())
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("after 30 s: %w", last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (r *run) tracesSeen(ctx context.Context) (string, error) {
	var services, ops []string
	if err := r.jaegerGet(ctx, "/api/services", &services); err != nil {
		return "", err
	}
	if !slices.Contains(services, "idgen") {
		return "", fmt.Errorf("services %v, no idgen", services)
	}
	if err := r.jaegerGet(ctx, "/api/services/idgen/operations", &ops); err != nil {
		return "", err
	}
	sort.Strings(ops)
	var gen, comp []jaegerTrace
	if err := r.jaegerGet(ctx, "/api/traces?service=idgen&limit=50&lookback=1h&operation="+url.QueryEscape("POST /generate"), &gen); err != nil {
		return "", err
	}
	if err := r.jaegerGet(ctx, "/api/traces?service=idgen&limit=5&lookback=1h&operation=compensate", &comp); err != nil {
		return "", err
	}
	spans, withChild := 0, 0
	instances := map[string]bool{}
	for _, tr := range gen {
		server := map[string]bool{}
		for _, s := range tr.Spans {
			if s.OperationName == "POST /generate" {
				spans++
				server[s.SpanID] = true
				for _, tag := range tr.Processes[s.ProcessID].Tags {
					if tag.Key == "service.instance.id" {
						instances[fmt.Sprint(tag.Value)] = true
					}
				}
			}
		}
		for _, s := range tr.Spans {
			if s.OperationName == "registry.register" && slices.ContainsFunc(s.References, func(ref jaegerRef) bool {
				return ref.RefType == "CHILD_OF" && server[ref.SpanID]
			}) {
				withChild++
				break
			}
		}
	}
	switch {
	case spans == 0:
		return "", fmt.Errorf("no POST /generate span (operations %v)", ops)
	case withChild == 0:
		return "", fmt.Errorf("%d POST /generate traces, none with a registry.register child", len(gen))
	case len(comp) == 0:
		return "", fmt.Errorf("no compensate span from the worker (operations %v)", ops)
	}
	ids := make([]string, 0, len(instances))
	for id := range instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return fmt.Sprintf("operations [%s]; %d of %d POST /generate traces with a registry.register child, service.instance.id %v; %d compensate trace(s)",
		strings.Join(ops, ", "), withChild, len(gen), ids, len(comp)), nil
}
