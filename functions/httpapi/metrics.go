package httpapi

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the service's Prometheus collectors, on a registry of their own
// (no global state).
type Metrics struct {
	Registry    *prometheus.Registry
	requests    *prometheus.HistogramVec
	issued      prometheus.Counter
	collisions  prometheus.Counter
	transitions *prometheus.CounterVec
	batchSize   prometheus.Histogram
	flushTime   prometheus.Histogram

	// observers caches requests' children: routes and statuses are a small
	// fixed set, and WithLabelValues hashes its labels on every call. The
	// map is never changed once stored: a miss stores a copy with the new
	// child (under obsMu), so a hit takes no lock, whose shared counter
	// every request would write.
	obsMu     sync.Mutex
	observers atomic.Pointer[map[routeStatus]prometheus.Observer]
}

type routeStatus struct {
	route  string
	status int
}

// NewMetrics registers the service's collectors, the Go runtime and process
// collectors, and gauges reading src's stats at scrape time.
func NewMetrics(src IDSource) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idgen_http_request_duration_seconds",
			Help:    "HTTP requests by route and status, with their latency.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route", "status"}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idgen_ids_issued_total", Help: "IDs returned to clients (replays not counted).",
		}),
		collisions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idgen_registry_collisions_total", Help: "Registrations refused because one of their IDs was already held by another writer (the batch is burnt, never returned).",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idgen_transitions_total", Help: "Saga transitions by target state and outcome.",
		}, []string{"state", "outcome"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "idgen_registry_batch_size", Help: "Operations per group-committed registry write.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		flushTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "idgen_registry_flush_seconds", Help: "Duration of one group-committed registry write.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
	}
	reg.MustRegister(m.requests, m.issued, m.collisions, m.transitions, m.batchSize, m.flushTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	counter("idgen_range_claims_total", "Counter ranges claimed from the range source.", func() float64 { return float64(src.Stats().Claims) })
	counter("idgen_range_claim_errors_total", "Failed range claims.", func() float64 { return float64(src.Stats().ClaimErrors) })
	gauge("idgen_range_headroom", "Counters left in the current and prefetched ranges.", func() float64 { return float64(src.Stats().Headroom) })
	gauge("idgen_range_step", "Size of the next range claim (adaptive).", func() float64 { return float64(src.Stats().Step) })
	gauge("idgen_range_claim_seconds", "Duration of the last range claim.", func() float64 { return src.Stats().LastClaimDur.Seconds() })
	return m
}

// ObserveFlush records one registry batch; pass it to the store.
func (m *Metrics) ObserveFlush(ops int, seconds float64) {
	m.batchSize.Observe(float64(ops))
	m.flushTime.Observe(seconds)
}

func (m *Metrics) observeRequest(route string, status int, seconds float64) {
	k := routeStatus{route, status}
	if obs := m.observers.Load(); obs != nil {
		if o, ok := (*obs)[k]; ok {
			o.Observe(seconds)
			return
		}
	}
	o := m.requests.WithLabelValues(route, strconv.Itoa(status))
	m.obsMu.Lock()
	next := map[routeStatus]prometheus.Observer{k: o}
	if obs := m.observers.Load(); obs != nil {
		maps.Copy(next, *obs)
	}
	m.observers.Store(&next)
	m.obsMu.Unlock()
	o.Observe(seconds)
}
