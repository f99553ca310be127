package main

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/redisstore"
)

// diskStater is an embedded store with a free-space and stall guard.
type diskStater interface{ DiskState() diskguard.State }

// refuser is a Redis registry that refuses while it may have lost records.
type refuser interface{ Refusing() []string }

// durable is a Redis registry whose flushes may wait for replicas.
type durable interface {
	Stats() redisstore.Stats
	WaitReplicas() int
}

// registerStoreMetrics exports the registry's guards: the embedded store's
// disk (free space, threshold, ballast, refusing, stalled, failed) and the
// Redis registry's reasons for refusing (idgen_registry_forgetful) and, in
// durable mode, the replicas its flushes were acknowledged by.
func registerStoreMetrics(reg prometheus.Registerer, store any) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	if d, ok := store.(diskStater); ok {
		g := func(name, help string, f func(diskguard.State) float64) {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(d.DiskState()) }))
		}
		g("idgen_disk_free_bytes", "Free bytes of the embedded store's filesystem at the last measure.", func(s diskguard.State) float64 { return float64(s.FreeBytes) })
		g("idgen_disk_threshold_bytes", "Free bytes below which the embedded store refuses new writes.", func(s diskguard.State) float64 { return float64(s.ThresholdBytes) })
		g("idgen_disk_ballast_bytes", "Bytes of the emergency ballast file held on disk (0 while refusing).", func(s diskguard.State) float64 { return float64(s.BallastBytes) })
		g("idgen_disk_guard_refusing", "1 while the embedded store refuses new writes for lack of free space.", func(s diskguard.State) float64 { return b(s.Refusing) })
		g("idgen_disk_stalled", "1 while a store commit has been in flight past --disk-stall-timeout.", func(s diskguard.State) float64 { return b(s.Stalled) })
		g("idgen_registry_failed", "1 once the embedded store met an error it cannot recover from; it refuses every request until restarted.", func(s diskguard.State) float64 { return b(s.Failed != nil) })
	}
	if d, ok := store.(durable); ok && d.WaitReplicas() > 0 {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idgen_registry_replicas_acknowledged",
			Help: "Replicas that acknowledged the last durable flush of the Redis registry (its WAIT); -1 before the first.",
		}, func() float64 { return float64(d.Stats().ReplicasAcked) }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "idgen_registry_wait_failures_total",
			Help: "Durable flushes of the Redis registry that failed because fewer replicas than --redis-wait-replicas acknowledged in time.",
		}, func() float64 { return float64(d.Stats().WaitFailures) }))
	}
	if r, ok := store.(refuser); ok {
		for _, reason := range redisstore.Reasons() {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "idgen_registry_forgetful", ConstLabels: prometheus.Labels{"reason": reason},
				Help: "1 while the Redis registry refuses every operation for this reason: it may have lost acknowledged records.",
			}, func() float64 { return b(slices.Contains(r.Refusing(), reason)) }))
		}
	}
}

// registerAuditMetrics exports whether the audit log is writable: while it
// is not, every state change is refused with 503 (unless
// --audit-fail-open).
func registerAuditMetrics(reg prometheus.Registerer, log interface{ Healthy() error }) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "idgen_audit_writable", Help: "1 while the audit log accepts entries; 0 while writes fail (full or failing volume) and state changes answer 503.",
	}, func() float64 {
		if log.Healthy() != nil {
			return 0
		}
		return 1
	}))
}

// registerInstanceInfo exports the instance's fixed facts as the labels of
// a gauge that is always 1 (the Prometheus info pattern): the mode
// (embedded, zookeeper, zookeeper+redis), the embedded engine, the replicas
// a durable Redis write waits for, the version and the advertised address
// (behind a load balancer, the console tells the answering instance by
// it). The console reads it.
func registerInstanceInfo(reg prometheus.Registerer, mode, engine, address string, waitReplicas int) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "idgen_instance_info", Help: "Always 1; the labels say how this instance runs.",
		ConstLabels: prometheus.Labels{"mode": mode, "engine": engine, "wait_replicas": strconv.Itoa(waitReplicas), "version": version, "address": address},
	}, func() float64 { return 1 }))
}

// expiringSoonLimit bounds the count of idgen_ids_expiring_soon: one
// scrape reads at most this many IDs of the deadline index.
const expiringSoonLimit = 1000

// registerExpiringSoon exports, at scrape time, how many pending IDs have a
// deadline within the next minute (or already past, not yet swept),
// counted up to expiringSoonLimit; -1 when the registry does not answer
// within a second.
func registerExpiringSoon(reg prometheus.Registerer, store interface {
	Expired(ctx context.Context, nowMS int64, limit int) ([]idcodec.ID, error)
}) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "idgen_ids_expiring_soon", Help: "Pending IDs whose deadline is within the next minute or past (not yet compensated by the sweeper), counted up to 1000; -1 when the registry did not answer.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ids, err := store.Expired(ctx, time.Now().Add(time.Minute).UnixMilli(), expiringSoonLimit)
		if err != nil {
			return -1
		}
		return float64(len(ids))
	}))
}
