package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/allocator"
	"github.com/idgen/idgen/functions/httpapi"
)

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
	tlsCfg, err := c.ZK.TLS.config() // TLS to the secureClientPort
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

type zkMembership struct{ a *allocator.Allocator }

// zkRunName names a run of an instance coordinated by ZooKeeper in the
// claim ledger and in /instances: its address and its allocator's
// instance name, fresh per start.
func zkRunName(address, id string) string { return address + "/" + id }

func (z zkMembership) Members(ctx context.Context) ([]httpapi.Member, error) {
	ms, err := z.a.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]httpapi.Member, len(ms))
	for i, m := range ms {
		out[i] = httpapi.Member{Worker: m.Worker, Address: m.Address, Version: m.Version, StartedAt: m.StartedAt, Instance: zkRunName(m.Address, m.Instance)}
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
