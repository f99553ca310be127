package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/sealer"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/boltstore"
	"github.com/idgen/idgen/shared/registry/datadir"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/pebblestore"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/saga"
)

// registryStore is what serve needs of a registry backend: the API's
// registry, the sweeper's deadline index, and the high-water mark of the
// ZooKeeper start-up check. The embedded stores and Redis provide it.
type registryStore interface {
	httpapi.Registry
	Ping(ctx context.Context) error
	RaiseHighWater(ctx context.Context, v uint64) error
	HighWater(ctx context.Context) (uint64, error)
	Expired(ctx context.Context, nowMS int64, limit int) ([]idcodec.ID, error)
	PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error)
	sealer.KeyStore
	registry.ClaimLedger
	Close() error
}

// localStore is an embedded store: a registry and a range source whose
// counter can be read (the clock floor needs it).
type localStore interface {
	registryStore
	generator.CounterStore
	saga.MarkStore
}

var (
	_ localStore    = (*boltstore.Store)(nil)
	_ localStore    = (*pebblestore.Store)(nil)
	_ registryStore = (*redisstore.Store)(nil)
)

// openStore locks --data-dir, checks its identity (engine, shard, mode)
// and opens the embedded store of --store-engine in it. The directory stays
// locked until the returned Dir is closed, after the store.
func openStore(c ServeConfig, observe func(int, time.Duration), log *zap.Logger) (localStore, *datadir.Dir, error) {
	mode := datadir.ModeEmbedded
	if c.ZK.Servers != "" {
		mode = datadir.ModeZooKeeper
	}
	ballast := pebblestore.BallastName
	if c.StoreEngine == "bbolt" {
		ballast = boltstore.BallastName
	}
	// The free-space check comes first: on a full disk even the identity
	// file cannot be written, and the guard's refusal names the free and
	// the needed bytes.
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("--data-dir: %w", err)
	}
	g, err := diskguard.New(c.diskGuard(log), c.DataDir, filepath.Join(c.DataDir, ballast))
	if err != nil {
		return nil, nil, err
	}
	g.Close()
	dir, err := datadir.Open(c.DataDir, datadir.Want{
		Engine: c.StoreEngine, Shard: uint8(c.Shard), Mode: mode,
		EngineFiles: map[string]string{"pebble": pebblestore.DirName, "bbolt": boltstore.FileName},
	}, 2*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("--data-dir: %w", err)
	}
	var s localStore
	if c.StoreEngine == "bbolt" {
		s, err = boltstore.Open(boltstore.Config{Dir: c.DataDir, Shard: uint8(c.Shard), Observe: observe, Logger: log.Named("bbolt"), Disk: c.diskGuard(log)})
	} else {
		s, err = pebblestore.Open(pebblestore.Config{Dir: c.DataDir, Shard: uint8(c.Shard), Observe: observe, Logger: log.Named("pebble"), Disk: c.diskGuard(log)})
	}
	if err != nil {
		_ = dir.Close()
		return nil, nil, err
	}
	return s, dir, nil
}
