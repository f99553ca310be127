package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/functions/generate"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry/boltstore"
	"github.com/idgen/idgen/shared/registry/pebblestore"
)

// localStore is what serve needs of the embedded store: range source,
// registry, sweeper index, high-water mark. Both engines provide it.
type localStore interface {
	generator.RangeSource
	generate.Registry
	Ping(ctx context.Context) error
	RaiseHighWater(ctx context.Context, v uint64) error
	HighWater() (uint64, error)
	Expired(ctx context.Context, nowMS int64, limit int) ([]idcodec.ID, error)
	PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error)
	Close() error
}

var (
	_ localStore = (*boltstore.Store)(nil)
	_ localStore = (*pebblestore.Store)(nil)
)

// openStore opens the embedded store of --store-engine under --data-dir.
func openStore(c ServeConfig, observe func(int, time.Duration), log *zap.Logger) (localStore, error) {
	if c.StoreEngine == "bbolt" {
		return boltstore.Open(boltstore.Config{Dir: c.DataDir, Shard: uint8(c.Shard), Observe: observe})
	}
	return pebblestore.Open(pebblestore.Config{Dir: c.DataDir, Shard: uint8(c.Shard), Observe: observe, Logger: log.Named("pebble")})
}
