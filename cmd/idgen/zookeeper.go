package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/idgen/idgen/allocator"
	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/generator"
)

// zkTLS builds the client TLS config for ZooKeeper's secureClientPort.
func zkTLS(c ServeConfig) (*tls.Config, error) {
	return clientTLS("--zookeeper-tls", c.ZK.TLSCA, c.ZK.TLSCert, c.ZK.TLSKey)
}

// zkAuth reads the digest password from a file (never a flag value).
func zkAuth(c ServeConfig) (*allocator.DigestAuth, error) {
	if c.ZK.User == "" && c.ZK.PasswordFile == "" {
		return nil, nil
	}
	if c.ZK.User == "" || c.ZK.PasswordFile == "" {
		return nil, errors.New("--zookeeper-user and --zookeeper-password-file go together")
	}
	pw, err := os.ReadFile(c.ZK.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("--zookeeper-password-file: %w", err)
	}
	return &allocator.DigestAuth{User: c.ZK.User, Password: strings.TrimSpace(string(pw))}, nil
}

// openAllocator joins the ZooKeeper ensemble: session, worker slot, member
// znode.
func openAllocator(ctx context.Context, c ServeConfig, log *zap.Logger, clock func() time.Time, advertise string) (*allocator.Allocator, error) {
	tlsCfg, err := zkTLS(c)
	if err != nil {
		return nil, err
	}
	auth, err := zkAuth(c)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, c.ZK.SessionTimeout+5*time.Second)
	defer cancel()
	a, err := allocator.Open(octx, allocator.Config{
		Servers: strings.Split(c.ZK.Servers, ","), Root: c.ZK.Root, Shard: uint8(c.Shard),
		SessionTimeout: c.ZK.SessionTimeout, Address: advertise, Version: version,
		Auth: auth, TLS: tlsCfg, Logger: log.Named("allocator"), Clock: clock,
	})
	if err != nil {
		return nil, fmt.Errorf("zookeeper %s: %w", c.ZK.Servers, err)
	}
	return a, nil
}

// openAllocatorAsync runs openAllocator on its own goroutine, so that the
// ZooKeeper handshake overlaps opening the registry. The caller must
// receive from the channel, and close the allocator if it does not use it.
func openAllocatorAsync(ctx context.Context, c ServeConfig, log *zap.Logger, clock func() time.Time, advertise string) <-chan allocOpened {
	ch := make(chan allocOpened, 1)
	go func() {
		a, err := openAllocator(ctx, c, log, clock, advertise)
		ch <- allocOpened{a, err}
	}()
	return ch
}

type allocOpened struct {
	a   *allocator.Allocator
	err error
}

// checkHighWater refuses to issue when the ZooKeeper counter is below the
// mark the registry remembers (an ensemble restored from an old snapshot).
func checkHighWater(ctx context.Context, a *allocator.Allocator, marks registryStore) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hw, err := marks.HighWater(ctx)
	if err == nil {
		err = a.CheckHighWater(ctx, hw)
	}
	if err != nil {
		return fmt.Errorf("start-up check: refusing to issue: %w", err)
	}
	return nil
}

// markedSource claims ranges from ZooKeeper and records each range's end in
// the local store, the high-water mark of the next start-up check.
type markedSource struct {
	src   generator.RangeSource
	marks registryStore
	log   *zap.Logger
}

func (m markedSource) ClaimRange(ctx context.Context, n uint64) (generator.Range, error) {
	r, err := m.src.ClaimRange(ctx, n)
	if err != nil {
		return r, err
	}
	if err := m.marks.RaiseHighWater(ctx, r.End); err != nil {
		// The range is quorum-committed and ours; the mark is a safety net.
		m.log.Warn("could not record the high-water mark", zap.Uint64("end", r.End), zap.Error(err))
	}
	return r, nil
}

type zkMembership struct{ a *allocator.Allocator }

func (z zkMembership) Members(ctx context.Context) ([]httpapi.Member, error) {
	ms, err := z.a.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]httpapi.Member, len(ms))
	for i, m := range ms {
		out[i] = httpapi.Member{Worker: m.Worker, Address: m.Address, Version: m.Version, StartedAt: m.StartedAt}
	}
	return out, nil
}

// zkChecks: a lost session degrades the service (claimed ranges still
// serve); a fenced worker slot takes it down (nothing may be stamped). now
// is the clock the generator stamps with: the lease must be read on the
// allocator's own clock (allocator.Worker), which an injected clock moves.
func zkChecks(a *allocator.Allocator, now func() time.Time) []httpapi.Check {
	return []httpapi.Check{
		{Name: "zookeeper", Run: func(context.Context) error {
			if h := a.Health(); !h.Connected {
				return fmt.Errorf("session %s (issuing from claimed ranges until they run out)", h.State)
			}
			return nil
		}},
		{Name: "worker_slot", Critical: true, Run: func(context.Context) error {
			if _, err := a.Worker(now()); err != nil {
				return err
			}
			return nil
		}},
	}
}

// registerZKMetrics exports the allocator's counters.
func registerZKMetrics(reg *prometheus.Registry, a *allocator.Allocator) {
	g := func(name, help string, f func(allocator.Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(a.Stats()) }))
	}
	c := func(name, help string, f func(allocator.Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(a.Stats()) }))
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	g("idgen_zookeeper_connected", "1 while the ZooKeeper session is established.", func(s allocator.Stats) float64 { return b(s.Connected) })
	g("idgen_zookeeper_counter_version", "Data version of the shard counter znode at the last claim.", func(s allocator.Stats) float64 { return float64(s.CounterVersion) })
	g("idgen_zookeeper_counter_version_alarm", "1 when the counter version nears the int32 wrap.", func(s allocator.Stats) float64 { return b(s.VersionAlarm) })
	g("idgen_zookeeper_claim_seconds", "Latency of the last successful range claim.", func(s allocator.Stats) float64 { return s.LastClaimLatency.Seconds() })
	c("idgen_zookeeper_cas_conflicts_total", "Range claims lost to another writer's compare-and-set.", func(s allocator.Stats) float64 { return float64(s.CASConflicts) })
	c("idgen_zookeeper_lost_replies_total", "Range claim writes whose reply was lost.", func(s allocator.Stats) float64 { return float64(s.LostReplies) })
	c("idgen_zookeeper_slot_claims_total", "Worker slots claimed (1 + re-claims after session expiry).", func(s allocator.Stats) float64 { return float64(s.SlotClaims) })
}
