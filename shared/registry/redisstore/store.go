// Package redisstore is the Redis backend of the idgen registry: the records
// of issued IDs with their saga state, idempotency entries, the deadline
// index and the high-water mark of the shard's counter. Standalone, Sentinel
// (failover) and Cluster deployments share one code path through go-redis'
// universal client. Ranges do not come from here (ZooKeeper hands them out).
//
// Invariants:
//   - Group commit: every call enqueues; one flusher sends everything waiting
//     in one round trip (one script for the whole batch; in Cluster mode one
//     script per hash slot, see flushCluster), then answers the waiters.
//     There is no fixed timer: while a flush is in flight the next
//     accumulates; only under load (a previous batch of 8 or more) does it
//     wait, at most one round trip, for as many ops (registry.Gatherer), so
//     latency at low load is one round trip.
//     No call returns success before its writes are acknowledged by Redis
//     and, in durable mode (WaitReplicas > 0), by WAIT on the connection
//     that wrote; a WAIT short of replicas fails the whole batch with
//     registry.ErrUnavailable (the caller answers 503, never an ID).
//   - SETNX semantics: a registration checks all its records before it
//     writes any; a record held by another value is a collision
//     (registry.ErrCollision) and nothing of the issue is written. Values
//     carry a writer nonce (random per Store for registrations), so a value
//     equal to the one to write is a resend of the same write by the same
//     Store (go-redis after a broken connection, the caller after
//     ErrUnavailable), never a collision; the same record from another
//     Store is one.
//   - Transitions run registry.Apply in Go and store its result with a
//     compare-and-set of the record's whole value (its field, or its
//     run's) in a script: no
//     read-modify-write race across instances (see Transition).
//   - Idempotency: the first live entry of a key wins; a loser writes nothing
//     (Cluster: its records are voided) and answers the winner's IDs.
//   - Storage: records live in hashes of 128 counters, a field per record
//     or, for a batch's records of one millisecond, one run-length record
//     (RunsField) per bucket;
//     a bucket lives at least Config.Retention after its last write, a
//     bucket holding a tombstone at least Config.TombstoneTTL after it.
//     Beside each bucket, in its slot, is its state map (one byte per
//     counter, registry.StateOf its record), written by the same script
//     call as the bucket's records and living as long as the bucket (see
//     batchSource, StateMaps); a bucket that held records without a
//     complete map gets none.
//     Redis must run with maxmemory-policy noeviction (CheckEvictionPolicy):
//     a registry that evicts is lying.
//   - A registry that forgets is noticed: a checker reads every master's
//     eviction policy, evictions, persistence (Config.RequirePersistence)
//     and epoch marker (epoch.go) every Config.CheckInterval, and every new
//     connection checks the marker before its first command. While a
//     reason holds (Refusing), every operation fails fast with ErrForgetful
//     wrapped in registry.ErrUnavailable, and Ping fails; a registry that
//     lost records (epoch marker gone or changed, keys evicted) stays
//     refused until the Store is closed, whatever comes back.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/registry"
)

// Sentinel errors of CheckEvictionPolicy.
var (
	// ErrEvictionPolicy means the server may evict keys.
	ErrEvictionPolicy = errors.New("redisstore: maxmemory-policy is not noeviction")
	// ErrPolicyUnknown means the policy could not be read (CONFIG not
	// permitted to this user, or renamed away).
	ErrPolicyUnknown = errors.New("redisstore: cannot read maxmemory-policy")
)

// Store is the Redis registry. Safe for concurrent use.
type Store struct {
	cfg     Config
	client  redis.UniversalClient
	cluster bool
	c       *registry.Committer[*op] // the group commit: one flusher, Do, Close

	nonceBase  uint32
	nonceSeq   atomic.Uint32
	lastBucket atomic.Pointer[bucketName]

	closeOnce sync.Once
	// registers pools the ops of Register: an op goes back once its
	// answer was received with ctx alive (no flush holds it any more).
	registers sync.Pool
	// The flusher's own (no other goroutine touches them): the call
	// flushSingle sends a batch in, addWhole's record indexes, and the
	// batch in the order flush sends it.
	single  *call
	whole   []int
	ordered []*op

	guard      *guard
	epoch      atomic.Pointer[string] // set once Open adopted the registry's epoch
	lostMarked atomic.Bool            // the "lost" root is written
	tags       []string               // Cluster: a hash tag per slot (epoch markers)
	wake       chan struct{}          // the connect hook asks for a check now
	checkStop  chan struct{}
	checkDone  chan struct{}
	evictMu    sync.Mutex
	evicted    map[string]int64 // run_id → evicted_keys last seen

	stats struct {
		batches, ops, roundTrips, collisions, waitFailures, replays, voided, casRetries atomic.Uint64
		// replicasAcked is the answer of the last flush's WAIT (-1 before
		// the first, and without durable mode).
		replicasAcked atomic.Int64
	}
}

// Stats are counters since Open.
type Stats struct {
	Batches      uint64 // flushes
	Ops          uint64 // operations flushed (Ops/RoundTrips is the group size)
	RoundTrips   uint64 // pipelines sent (a Cluster flush takes up to 3)
	Collisions   uint64 // IDs found held by another writer
	WaitFailures uint64 // flushes failed because WAIT was short of replicas
	Replays      uint64 // registrations answered with an earlier entry
	Voided       uint64 // Cluster: records of idempotency losers compensated
	CASRetries   uint64 // transitions that lost a race and re-read
	// ReplicasAcked is how many replicas acknowledged the last durable
	// flush (its WAIT's answer); -1 before the first, and without durable
	// mode.
	ReplicasAcked int64
}

// Open connects (failing fast with registry.ErrUnavailable when Redis does
// not answer within ctx), loads the script, adopts the registry's epoch
// (creating it on a fresh registry), runs the first check and starts the
// flusher and the checker. A registry it must not serve (see Refusing) is
// no error: the Store opens refusing every operation, so that health and
// metrics say why.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var nb [4]byte
	_, _ = rand.Read(nb[:])
	s := &Store{
		cfg:       cfg,
		nonceBase: binary.BigEndian.Uint32(nb[:]),
		guard:     newGuard(cfg.Logger),
		wake:      make(chan struct{}, 1), checkStop: make(chan struct{}), checkDone: make(chan struct{}),
		evicted: map[string]int64{},
	}
	s.stats.replicasAcked.Store(-1)
	// registry.Gatherer closes the batches: an idle registry flushes at
	// once; a busy one sends fewer, larger batches (fewer round trips per
	// ID, less Redis CPU per ID), of at most maxFlushRecords records.
	s.c = registry.NewCommitter(registry.Gatherer[*op]{
		MaxBatch: cfg.MaxBatch, Weigh: func(o *op) int { return len(o.keys) }, MaxWeight: maxFlushRecords,
	}, s.guard.refusal)
	client, cluster, err := connect(ctx, cfg, s.onConnect)
	if err != nil {
		return nil, err
	}
	s.client, s.cluster = client, cluster
	if cluster {
		s.tags = slotTags()
	}
	if err := s.initEpochRetrying(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	s.check()
	if r := s.Refusing(); r != nil {
		cfg.Logger.Error("registry opened refusing every operation", zap.Strings("reasons", r), zap.Error(s.guard.refusal()))
	}
	go s.c.Run(s.flush)
	go s.checker()
	return s, nil
}

// initEpochRetrying retries initEpoch while Redis refuses the write for
// a while (NOREPLICAS until a replica has synced, a failover in progress):
// until ctx ends, then with initEpoch's last error.
func (s *Store) initEpochRetrying(ctx context.Context) error {
	wait := 50 * time.Millisecond
	for {
		err := s.initEpoch(ctx)
		if err == nil || !errors.Is(err, registry.ErrUnavailable) {
			return err
		}
		s.cfg.Logger.Info("registry epoch not written yet; retrying", zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// connect builds the client (Cluster detected with INFO for a single
// address) and loads the script.
func connect(ctx context.Context, cfg Config, hook func(context.Context, *redis.Conn) error) (redis.UniversalClient, bool, error) {
	cluster := cfg.Cluster || (cfg.MasterName == "" && len(cfg.Addrs) > 1)
	client := redis.NewUniversalClient(options(cfg, cluster, hook))
	if !cluster && cfg.MasterName == "" {
		info, err := client.Info(ctx, "cluster").Result()
		if redis.HasErrorPrefix(err, "NOPERM") {
			info, err = "", nil // a user without INFO: assume standalone
		}
		if err != nil {
			_ = client.Close()
			return nil, false, fmt.Errorf("redisstore: %w: %w", registry.ErrUnavailable, err)
		}
		if strings.Contains(info, "cluster_enabled:1") {
			_ = client.Close()
			cluster = true
			client = redis.NewUniversalClient(options(cfg, true, hook))
		}
	}
	if err := client.ScriptLoad(ctx, batchSource).Err(); err != nil {
		_ = client.Close()
		return nil, false, fmt.Errorf("redisstore: %w: %w", registry.ErrUnavailable, err)
	}
	return client, cluster, nil
}

func options(cfg Config, cluster bool, hook func(context.Context, *redis.Conn) error) *redis.UniversalOptions {
	o := &redis.UniversalOptions{
		OnConnect:        hook,
		Addrs:            cfg.Addrs,
		MasterName:       cfg.MasterName,
		IsClusterMode:    cluster,
		Username:         cfg.Username,
		Password:         cfg.Password,
		SentinelUsername: cfg.SentinelUsername,
		SentinelPassword: cfg.SentinelPassword,
		TLSConfig:        cfg.TLS,
		PoolSize:         cfg.PoolSize,
		ConnMaxIdleTime:  cfg.ConnMaxIdleTime,
		DisableIdentity:  true, // CLIENT SETINFO is 7.2+
		// No client-side retries: the flusher resends where that is safe,
		// and a retried pipeline would repeat its WAIT (NOREPLICAS makes
		// go-redis retry 3 times: 4 s of a durable refusal instead of 1).
		MaxRetries: -1,
		// Deadlines of the caller's ctx (and of a flush) bound socket reads.
		ContextTimeoutEnabled: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	if cfg.WaitReplicas > 0 {
		// A WAIT blocks its connection up to WaitTimeout.
		o.ReadTimeout = 3*time.Second + cfg.WaitTimeout
	}
	return o
}

// nonce returns a nonce for one transition: distinct per call (and from
// nonceBase, the registrations' nonce, until 2^32 calls), so that a resend
// of the same compare-and-set finds its own value while an identical
// transition of another call does not (it re-reads: Replayed).
func (s *Store) nonce() uint32 { return s.nonceBase + s.nonceSeq.Add(1) }

// do runs o in the next flush and waits for it, or for ctx (the op may still
// be flushed later in that case; its writes then reach no client).
func (s *Store) do(ctx context.Context, o *op) error {
	if o.done == nil {
		o.done = make(chan struct{}, 1)
	}
	if err := s.c.Do(ctx, o, o.done); err != nil {
		return err
	}
	return o.err
}

// Close stops accepting work, flushes what is queued and closes the client.
// Later calls return registry.ErrClosed; Close itself returns nil after the
// first time.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		_ = s.c.Close(0)
		close(s.checkStop)
		<-s.checkDone
		err = s.client.Close()
	})
	return err
}

// Stats returns the counters since Open.
func (s *Store) Stats() Stats {
	return Stats{
		Batches:      s.stats.batches.Load(),
		Ops:          s.stats.ops.Load(),
		RoundTrips:   s.stats.roundTrips.Load(),
		Collisions:   s.stats.collisions.Load(),
		WaitFailures: s.stats.waitFailures.Load(),
		Replays:      s.stats.replays.Load(),
		Voided:       s.stats.voided.Load(),
		CASRetries:   s.stats.casRetries.Load(),

		ReplicasAcked: s.stats.replicasAcked.Load(),
	}
}

// WaitReplicas is the replicas each flush waits for (Config.WaitReplicas):
// 0 without durable mode.
func (s *Store) WaitReplicas() int { return s.cfg.WaitReplicas }

// Cluster reports whether the Store runs in Cluster mode.
func (s *Store) Cluster() bool { return s.cluster }

// eachMaster runs fn on every master (Cluster) or on the client.
func (s *Store) eachMaster(ctx context.Context, fn func(context.Context, redis.Cmdable) error) error {
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return fn(ctx, c) })
	}
	return fn(ctx, s.client)
}

// Ping checks that the Store serves (see Refusing) and that every master
// answers. Errors: ErrClosed, ErrUnavailable (wrapping ErrForgetful while
// the Store refuses).
func (s *Store) Ping(ctx context.Context) error {
	if s.c.Closed() {
		return registry.ErrClosed
	}
	if err := s.guard.refusal(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	err := s.eachMaster(ctx, func(ctx context.Context, c redis.Cmdable) error { return c.Ping(ctx).Err() })
	if err != nil {
		return fmt.Errorf("redisstore: ping: %w: %w", registry.ErrUnavailable, err)
	}
	return nil
}

// CheckEvictionPolicy fails with ErrEvictionPolicy when a master's
// maxmemory-policy is not noeviction, and with ErrPolicyUnknown when CONFIG
// GET is not permitted (check the policy by other means then).
func (s *Store) CheckEvictionPolicy(ctx context.Context) error {
	if s.c.Closed() {
		return registry.ErrClosed
	}
	return s.eachMaster(ctx, func(ctx context.Context, c redis.Cmdable) error {
		m, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
		switch {
		case err != nil && (redis.HasErrorPrefix(err, "NOPERM") || strings.Contains(strings.ToLower(err.Error()), "unknown command")):
			return fmt.Errorf("%w: CONFIG GET is not permitted (%v): make sure the server runs with maxmemory-policy noeviction", ErrPolicyUnknown, err)
		case err != nil:
			return fmt.Errorf("redisstore: config get: %w: %w", registry.ErrUnavailable, err)
		case m["maxmemory-policy"] != "noeviction":
			return fmt.Errorf("%w: it is %q; set noeviction (an evicting registry loses records)", ErrEvictionPolicy, m["maxmemory-policy"])
		}
		return nil
	})
}

// RaiseHighWater records that counters below v were handed out (by
// ZooKeeper), so that a ZooKeeper restored from an old snapshot is noticed
// at the next start. It never lowers the mark; it rides a group commit (and
// its WAIT in durable mode).
func (s *Store) RaiseHighWater(ctx context.Context, v uint64) error {
	if err := s.do(ctx, &op{kind: opRaise, hw: hwValue(v)}); err != nil {
		return fmt.Errorf("redisstore: raise high water: %w", err)
	}
	return nil
}

// HighWater returns the mark RaiseHighWater recorded for Config.Shard, or 0.
func (s *Store) HighWater(ctx context.Context) (uint64, error) {
	if err := s.readable(); err != nil {
		return 0, fmt.Errorf("redisstore: high water: %w", err)
	}
	v, err := s.client.Get(ctx, s.highWaterKey()).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redisstore: high water: %w", s.readErr(err))
	}
	hw, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("redisstore: high water %q: %w", v, registry.ErrCorrupt)
	}
	return hw, nil
}

// readErr maps a client error of a read.
func (s *Store) readErr(err error) error {
	if s.c.Closed() || errors.Is(err, redis.ErrClosed) {
		return registry.ErrClosed
	}
	return fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
}

// readable is the gate of reads: ErrClosed after Close, the refusal while
// the Store refuses (a forgotten record would read as not found).
func (s *Store) readable() error {
	if s.c.Closed() {
		return registry.ErrClosed
	}
	return s.guard.refusal()
}
