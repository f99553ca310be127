package failurestream

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/registry"
)

// Metrics are the worker's Prometheus collectors, on a registry of their
// own (no global state). The stream gauges (lag, pending) are read from
// Redis at scrape time, bounded by one second.
type Metrics struct {
	Registry       *prometheus.Registry
	processed      *prometheus.CounterVec
	retried        prometheus.Counter
	deadLettered   *prometheus.CounterVec
	reclaimed      prometheus.Counter
	auditRecovered prometheus.Counter
	trimmed        prometheus.Counter

	mu     sync.Mutex
	stream *Worker // the worker whose group the gauges describe
}

// NewMetrics registers the worker's collectors with the Go runtime and
// process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idgen_compensate_processed_total",
			Help: "Stream entries finished, by outcome: applied, replayed, null_compensation, dead_lettered.",
		}, []string{"outcome"}),
		retried: newCounter("idgen_compensate_retried_total", "Attempts that failed transiently and were retried (the entry stayed pending)."),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idgen_compensate_dead_lettered_total", Help: "Entries moved to the dead-letter stream, by cause: malformed, max_deliveries, permanent.",
		}, []string{"cause"}),
		reclaimed:      newCounter("idgen_compensate_reclaimed_total", "Entries taken over from other consumers after --claim-idle (XAUTOCLAIM)."),
		auditRecovered: newCounter("idgen_compensate_audit_recovered_total", "Audit entries written on redelivery for effects whose first attempt died before auditing."),
		trimmed:        newCounter("idgen_compensate_trimmed_total", "Entries removed from the failure stream after every consumer group acknowledged them (XTRIM MINID)."),
	}
	for _, o := range []string{registry.Applied.String(), registry.Replayed.String(), registry.Tombstoned.String(), "dead_lettered"} {
		m.processed.WithLabelValues(o)
	}
	for _, c := range []string{causeMalformed, causeMaxDeliveries, causePermanent} {
		m.deadLettered.WithLabelValues(c)
	}
	m.Registry.MustRegister(m.processed, m.retried, m.deadLettered, m.reclaimed, m.auditRecovered, m.trimmed, streamCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// newCounter is one of the worker's counters without labels.
func newCounter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// watch makes w's group the subject of the stream gauges (the first
// worker of these Metrics).
func (m *Metrics) watch(w *Worker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stream == nil {
		m.stream = w
	}
}

var (
	lagDesc = prometheus.NewDesc("idgen_compensate_lag",
		"Entries of the failure stream not yet delivered to the consumer group (XINFO GROUPS lag).", []string{"stream", "group"}, nil)
	pendingDesc = prometheus.NewDesc("idgen_compensate_pending",
		"Entries delivered to the consumer group and not yet acknowledged.", []string{"stream", "group"}, nil)
	dlqDesc = prometheus.NewDesc("idgen_compensate_dlq_length",
		"Entries in the dead-letter stream.", []string{"stream"}, nil)
	lengthDesc = prometheus.NewDesc("idgen_compensate_stream_length",
		"Entries in the failure stream (XLEN): the unhandled ones and at most one acknowledged batch; growth means a consumer group does not acknowledge.", []string{"stream"}, nil)
	upDesc = prometheus.NewDesc("idgen_compensate_stream_up",
		"1 when the stream gauges could be read at this scrape (Redis answered, the group exists), else 0.", []string{"stream", "group"}, nil)
)

type streamCollector struct{ m *Metrics }

func (c streamCollector) Describe(ch chan<- *prometheus.Desc) { describeStream(ch) }

func (c streamCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	w := c.m.stream
	c.m.mu.Unlock()
	if w != nil {
		collectStream(ch, w.rdb, w.cfg.Stream, w.cfg.Group)
	}
}

func describeStream(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- pendingDesc
	ch <- dlqDesc
	ch <- lengthDesc
	ch <- upDesc
}

// collectStream reads the stream gauges at scrape time, within a second.
func collectStream(ch chan<- prometheus.Metric, rdb redis.UniversalClient, stream, group string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := ReadStats(ctx, rdb, stream, group)
	if err != nil {
		// A scrape that fails as a whole would hide the counters too.
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, stream, group)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1, stream, group)
	ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(st.Lag), stream, group)
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(st.Pending), stream, group)
	ch <- prometheus.MustNewConstMetric(dlqDesc, prometheus.GaugeValue, float64(st.DeadLetters), stream)
	ch <- prometheus.MustNewConstMetric(lengthDesc, prometheus.GaugeValue, float64(st.Length), stream)
}

// StreamCollector exports the gauges of a failure stream and its consumer
// group (lag, pending, dead letters, length, up) for a process that is no
// worker itself: idgen serve shows them on its console.
type StreamCollector struct {
	rdb           redis.UniversalClient
	stream, group string
}

// NewStreamCollector reads stream and group ("" for the defaults) with rdb.
func NewStreamCollector(rdb redis.UniversalClient, stream, group string) *StreamCollector {
	return &StreamCollector{rdb: rdb, stream: cmp.Or(stream, DefaultStream), group: cmp.Or(group, DefaultGroup)}
}

// Describe implements prometheus.Collector.
func (c *StreamCollector) Describe(ch chan<- *prometheus.Desc) { describeStream(ch) }

// Collect implements prometheus.Collector.
func (c *StreamCollector) Collect(ch chan<- prometheus.Metric) {
	collectStream(ch, c.rdb, c.stream, c.group)
}

// maxLagCount bounds the fallback count of Stats.Lag.
const maxLagCount = 10000

// Stats describe the worker's stream and group.
type Stats struct {
	Lag         int64 // entries not yet delivered to the group
	Pending     int64 // delivered, not acknowledged
	DeadLetters int64 // length of the dead-letter stream
	Length      int64 // length of the failure stream
}

// Stats reads XINFO GROUPS and XLEN of both streams. When Redis
// cannot compute the group's lag (entries deleted from the middle of the
// stream), Lag counts the stream's entries past the last delivered one, up
// to maxLagCount.
func (w *Worker) Stats(ctx context.Context) (Stats, error) {
	return ReadStats(ctx, w.rdb, w.cfg.Stream, w.cfg.Group)
}

// ReadStats reads the figures of Stats for any stream and group; the
// dead-letter stream is stream+DLQSuffix.
func ReadStats(ctx context.Context, rdb redis.UniversalClient, stream, group string) (Stats, error) {
	var groups *redis.XInfoGroupsCmd
	var dlq, length *redis.IntCmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		groups = p.XInfoGroups(ctx, stream)
		dlq = p.XLen(ctx, stream+DLQSuffix)
		length = p.XLen(ctx, stream)
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	st := Stats{DeadLetters: dlq.Val(), Length: length.Val()}
	found := false
	for _, g := range groups.Val() {
		if g.Name != group {
			continue
		}
		found = true
		st.Pending, st.Lag = g.Pending, g.Lag
		if g.Lag < 0 {
			n, err := rdb.XRangeN(ctx, stream, "("+g.LastDeliveredID, "+", maxLagCount).Result()
			if err != nil {
				return Stats{}, err
			}
			st.Lag = int64(len(n))
		}
	}
	if !found {
		return Stats{}, fmt.Errorf("failurestream: stream %s has no group %s", stream, group)
	}
	return st, nil
}

// Check is one named health check.
type Check func(ctx context.Context) error

// Handler serves /metrics (m's registry) and /health, /health/live,
// /health/ready: {"status": "ok"|"down", "checks": {name: "ok"|error}},
// 200 or 503 (live is always 200 while the process serves).
func Handler(m *Metrics, checks map[string]Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	health := func(rw http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		names := make([]string, 0, len(checks))
		for n := range checks {
			names = append(names, n)
		}
		sort.Strings(names)
		out := struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}{"ok", map[string]string{}}
		for _, n := range names {
			if err := checks[n](ctx); err != nil {
				out.Status, out.Checks[n] = "down", err.Error()
			} else {
				out.Checks[n] = "ok"
			}
		}
		rw.Header().Set("Content-Type", "application/json")
		if out.Status != "ok" {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(rw).Encode(out)
	}
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /health/ready", health)
	mux.HandleFunc("GET /health/live", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return mux
}

// Ping checks that the worker's Redis answers (a health Check).
func (w *Worker) Ping(ctx context.Context) error { return w.rdb.Ping(ctx).Err() }
