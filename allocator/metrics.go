package allocator

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics exports the allocator's Stats on reg: the session, the
// counter znode's version and its wrap alarm, the last claim's latency,
// compare-and-set conflicts, lost replies and worker-slot claims.
func (a *Allocator) RegisterMetrics(reg prometheus.Registerer) {
	g := func(name, help string, f func(Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(a.Stats()) }))
	}
	c := func(name, help string, f func(Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(a.Stats()) }))
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	g("idgen_zookeeper_connected", "1 while the ZooKeeper session is established.", func(s Stats) float64 { return b(s.Connected) })
	g("idgen_zookeeper_counter_version", "Data version of the shard counter znode at the last claim.", func(s Stats) float64 { return float64(s.CounterVersion) })
	g("idgen_zookeeper_counter_version_alarm", "1 when the counter version nears the int32 wrap.", func(s Stats) float64 { return b(s.VersionAlarm) })
	g("idgen_zookeeper_claim_seconds", "Latency of the last successful range claim.", func(s Stats) float64 { return s.LastClaimLatency.Seconds() })
	c("idgen_zookeeper_cas_conflicts_total", "Range claims lost to another writer's compare-and-set.", func(s Stats) float64 { return float64(s.CASConflicts) })
	c("idgen_zookeeper_lost_replies_total", "Range claim writes whose reply was lost.", func(s Stats) float64 { return float64(s.LostReplies) })
	c("idgen_zookeeper_slot_claims_total", "Worker slots claimed (1 + re-claims after session expiry).", func(s Stats) float64 { return float64(s.SlotClaims) })
}
