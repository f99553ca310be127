// Package allocator coordinates idgen instances through ZooKeeper: it claims
// counter ranges of a shard, a worker slot, and registers the instance as a
// member for discovery.
//
// Znodes under Config.Root (all parents PERSISTENT, never container nodes):
//
//	workers/<slot>          EPHEMERAL, member JSON: the instance's worker slot
//	members/m-<seq>         EPHEMERAL|SEQUENTIAL, member JSON: discovery
//	shards/<shard>/counter  PERSISTENT, {"next": N, "token": "<instance>:<seq>"}
//	cluster-id              PERSISTENT, a UUID naming this ensemble's state
//
// Invariants:
//   - Ranges are never handed out twice. A claim is a compare-and-set of the
//     counter znode on its data version (equality only, never the
//     unconditional -1), committed by ZooKeeper's quorum before it returns. A
//     write whose reply was lost is used only when a later read shows the
//     claim's own unique token; otherwise its range is burnt (see ClaimRange).
//   - The counter only grows and never passes idcodec.MaxCounter+1.
//   - A worker slot is stamped only while this instance's session owns the
//     slot's ephemeral znode and the local lease (2/3 of the session timeout
//     past the last proof of a live session) has not run out. On session
//     expiry stamping stops at once, and resumes only with a slot claimed by
//     the new session.
//   - Uniqueness of IDs never depends on the worker slot; the slot adds
//     traceability. It depends on (shard, counter) alone.
//
// Counter version wrap: ZooKeeper's data version is an int32 that wraps, and
// -1 means "any version". When the counter's version reaches
// VersionAlarmThreshold (2^31-2^20) the allocator raises Stats.VersionAlarm,
// logs a warning and moves the counter to a fresh znode (counter.1,
// counter.2, ...) in one multi-op transaction: the old znode is set,
// conditionally on the version just read, to {"next": N, "moved_to":
// "counter.K"} and counter.K is created with {"next": N}. Every allocator
// follows moved_to, so claims continue from N at version 0, and a claim that
// raced with the move fails its compare-and-set and re-reads. An operator can
// run the same transaction by hand (zkCli has no multi: a few lines of Go
// with zk.Multi) if the automatic move keeps failing; it is safe with instances
// running, because both halves are conditional. A counter found at version
// -1 is refused (ClaimRange errors) rather than written unconditionally.
package allocator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/go-zookeeper/zk"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/generator"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrFenced means the instance must not stamp its worker slot: the
	// session expired (slot lost) or the local lease ran out while ZooKeeper
	// was unreachable.
	ErrFenced = errors.New("allocator: worker slot fenced")
	// ErrNoSlot means every worker slot 0..MaxSlots-1 is taken.
	ErrNoSlot = errors.New("allocator: no free worker slot")
	// ErrBehindHighWater means the shard counter is below the registry's
	// high-water mark: ZooKeeper lost history (restored from an old snapshot)
	// and would hand out used counters again. The service must not issue.
	ErrBehindHighWater = errors.New("allocator: counter behind high-water mark")
	// ErrExhausted means the shard counter cannot grow by the requested
	// range without passing idcodec.MaxCounter.
	ErrExhausted = errors.New("allocator: shard counter exhausted")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("allocator: closed")
)

var (
	_ generator.RangeSource  = (*Allocator)(nil)
	_ generator.WorkerSource = (*Allocator)(nil)
)

// Allocator is one instance's handle on ZooKeeper. It is safe for concurrent
// use.
type Allocator struct {
	cfg       Config
	log       *zap.Logger
	acl       acls
	instance  string    // fresh per Open: the prefix of every claim token
	clusterID string    // UUID of <root>/cluster-id, read by Open
	started   time.Time // advertised start time
	base      time.Time // origin of the monotonic lease readings
	lease     time.Duration

	conn    *zk.Conn
	connPtr atomic.Pointer[zk.Conn] // conn, for the event callback (which may run before Open assigns conn)
	events  <-chan zk.Event         // drained by Close to wait for the client's goroutines

	// Hot path (Worker): atomics only.
	slot       atomic.Int32 // current worker slot, -1 when fenced
	leaseUntil atomic.Int64 // lease deadline, nanoseconds after base
	closed     atomic.Bool

	// sessMu orders publishing a slot against the event callback fencing it.
	sessMu      sync.Mutex
	slotSession atomic.Int64 // session that owns the slot znode; written under sessMu
	connectedAt atomic.Int64 // last StateConnected, nanoseconds after base

	state  atomic.Int32 // last zk.State seen by the callback
	wake   chan struct{}
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// claimSem lets one claim of this instance talk to ZooKeeper at a time:
	// concurrent claims of one instance would only lose compare-and-sets to
	// each other.
	claimSem chan struct{}

	mu          sync.Mutex // guards the fields below
	slotPath    string
	memberPath  string
	pending     pendingSlot // slot created for a session whose member is not registered yet
	memberTried int64       // session of the last member registration attempt
	counter     string      // current counter znode name (follows moved_to)
	lastErr     error
	lastErrAt   time.Time
	highWater   uint64               // claims from a counter below this are refused
	candidates  map[string]candidate // this instance's znode per election role

	// versionAlarmAt is the data version that raises the alarm and moves the
	// counter; tests lower it.
	versionAlarmAt int32

	claimSeq                atomic.Uint64
	claims, claimErrors     atomic.Uint64
	casConflicts            atomic.Uint64
	lostReplies, lostOurs   atomic.Uint64
	lostSkipped, migrations atomic.Uint64
	slotClaims              atomic.Uint64
	lastClaimNS             atomic.Int64
	counterVersion          atomic.Int32
	versionAlarm            atomic.Bool
}

// VersionAlarmThreshold is the counter data version past which the alarm is
// raised and the counter moved to a fresh znode: 2^20 claims before the int32
// version could wrap.
const VersionAlarmThreshold = 1<<31 - 1<<20

// Open connects to ZooKeeper, creates the persistent parents and the shard
// counter if missing, claims the lowest free worker slot and registers the
// instance as a member. It returns ErrNoSlot when all slots are taken, and
// ctx's error when ZooKeeper cannot be reached before ctx ends.
func Open(ctx context.Context, cfg Config) (*Allocator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	now := cfg.Clock()
	a := &Allocator{
		cfg:            cfg,
		log:            cfg.Logger.With(zap.Uint8("shard", cfg.Shard)),
		acl:            newACLs(cfg.Auth),
		instance:       uuid.NewString(),
		started:        now,
		base:           now,
		lease:          cfg.leaseDuration(),
		wake:           make(chan struct{}, 1),
		claimSem:       make(chan struct{}, 1),
		counter:        "counter",
		versionAlarmAt: VersionAlarmThreshold,
	}
	a.slot.Store(-1)
	a.state.Store(int32(zk.StateDisconnected))
	a.ctx, a.cancel = context.WithCancel(context.Background())

	opts := list(
		zk.WithEventCallback(a.onEvent),
		zk.WithLogger(zkLogger{a.log.Named("zk").Sugar()}),
		zk.WithLogInfo(false),
	)
	if cfg.TLS != nil {
		opts = append(opts, zk.WithDialer(tlsDialer(cfg.TLS)))
	}
	conn, events, err := zk.Connect(cfg.Servers, cfg.SessionTimeout, opts...)
	if err != nil {
		a.cancel()
		return nil, fmt.Errorf("allocator: connect: %w", err)
	}
	a.conn, a.events = conn, events
	a.connPtr.Store(conn)
	if err := a.open(ctx); err != nil {
		a.shutdown()
		return nil, fmt.Errorf("allocator: open: %w", err)
	}
	a.wg.Add(1)
	go a.keep()
	a.log.Info("allocator open", zap.String("instance", a.instance), zap.Int32("worker", a.slot.Load()),
		zap.Int64("session", a.conn.SessionID()), zap.String("root", cfg.Root))
	return a, nil
}

func (a *Allocator) open(ctx context.Context) error {
	if au := a.cfg.Auth; au != nil {
		_, err := call(ctx, func() (struct{}, error) {
			return struct{}{}, a.conn.AddAuth("digest", []byte(au.User+":"+au.Password))
		})
		if err != nil {
			return fmt.Errorf("add digest auth: %w", err)
		}
	}
	root := a.cfg.Root
	shard := a.shardPath()
	initial, _ := encodeCounter(counterData{Next: 0})
	// The persistent skeleton, parents first. After the first start every
	// node exists: one pipelined round of Exists replaces a round trip each.
	var nodes []znode
	for _, p := range pathPrefixes(root) {
		nodes = append(nodes, znode{p, nil, a.acl.private})
	}
	nodes = append(nodes, znode{root + "/workers", nil, a.acl.public}, znode{root + "/members", nil, a.acl.public})
	for _, p := range pathPrefixes(shard) {
		if len(p) > len(root) {
			nodes = append(nodes, znode{p, nil, a.acl.private})
		}
	}
	nodes = append(nodes, znode{shard + "/counter", initial, a.acl.private})
	if err := a.ensureNodes(ctx, nodes); err != nil {
		return err
	}
	if err := a.loadClusterID(ctx); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := a.claimSession(ctx)
		if err == nil || !transient(err) {
			return err
		}
		if !backoff.Sleep(ctx, backoff.Equal(attempt, 20*time.Millisecond, time.Second)) {
			return ctx.Err()
		}
	}
}

// list returns its arguments as a slice; it names the library's unexported
// option type by inference.
func list[T any](xs ...T) []T { return xs }

func (a *Allocator) shardPath() string {
	return a.cfg.Root + "/shards/" + strconv.Itoa(int(a.cfg.Shard))
}

// Close stops stamping, stops the background work and closes the session.
// Closing the session makes ZooKeeper delete this session's ephemeral znodes
// (worker slot and member) in the same transaction: unlike a delete by path,
// this can never remove a znode that another session created at the same path
// after ours expired. If ZooKeeper is unreachable, they go when the session
// times out. Ranges already claimed stay valid. Close is idempotent.
func (a *Allocator) Close() error {
	if !a.closed.CompareAndSwap(false, true) {
		return nil
	}
	a.slot.Store(-1)
	a.cancel()
	a.wg.Wait()
	a.shutdown()
	a.log.Info("allocator closed", zap.String("instance", a.instance))
	return nil
}

// shutdown closes the session and waits (bounded) until the client library's
// goroutines are gone, so nothing logs or runs after Close returns.
func (a *Allocator) shutdown() {
	a.closed.Store(true)
	a.slot.Store(-1)
	a.cancel()
	a.conn.Close()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-a.events:
			if !ok {
				return
			}
		case <-timeout.C:
			return
		}
	}
}

// Health is a snapshot of the session, for /health.
type Health struct {
	State          string        // ZooKeeper session state, e.g. "StateHasSession"
	Connected      bool          // a live session is established
	SessionID      int64         // current session, 0 when none
	Slot           int           // worker slot, -1 when fenced
	LeaseRemaining time.Duration // time the slot may still be stamped; 0 when fenced
	LastError      string        // last background or claim error, "" when none
	LastErrorAt    time.Time
}

// Health returns the current session health.
func (a *Allocator) Health() Health {
	st := zk.State(a.state.Load())
	h := Health{
		State:     st.String(),
		Connected: st == zk.StateHasSession && !a.closed.Load(),
		SessionID: a.conn.SessionID(),
		Slot:      int(a.slot.Load()),
	}
	if h.Slot >= 0 {
		h.LeaseRemaining = max(0, time.Duration(a.leaseUntil.Load())-a.cfg.Clock().Sub(a.base))
	}
	a.mu.Lock()
	if a.lastErr != nil {
		h.LastError, h.LastErrorAt = a.lastErr.Error(), a.lastErrAt
	}
	a.mu.Unlock()
	return h
}

// Stats are cumulative counters for metrics (the caller exports them).
type Stats struct {
	Claims           uint64        // ranges claimed
	ClaimErrors      uint64        // ClaimRange calls that failed
	CASConflicts     uint64        // compare-and-set attempts lost to another writer
	LostReplies      uint64        // claim writes whose outcome was unknown (reply lost)
	LostRepliesOurs  uint64        // ... resolved as landed: the range was used
	LostRepliesBurnt uint64        // ... not shown as ours: the range, if written, is burnt
	SlotClaims       uint64        // worker slots claimed (1 + re-claims after expiry)
	Migrations       uint64        // counter moves to a fresh znode
	LastClaimLatency time.Duration // duration of the last successful claim
	CounterVersion   int32         // data version of the counter at the last claim
	VersionAlarm     bool          // the counter's version is near the int32 wrap
	SessionState     string        // as Health.State
	Connected        bool
}

// Stats returns a snapshot of the counters.
func (a *Allocator) Stats() Stats {
	st := zk.State(a.state.Load())
	return Stats{
		Claims:           a.claims.Load(),
		ClaimErrors:      a.claimErrors.Load(),
		CASConflicts:     a.casConflicts.Load(),
		LostReplies:      a.lostReplies.Load(),
		LostRepliesOurs:  a.lostOurs.Load(),
		LostRepliesBurnt: a.lostSkipped.Load(),
		SlotClaims:       a.slotClaims.Load(),
		Migrations:       a.migrations.Load(),
		LastClaimLatency: time.Duration(a.lastClaimNS.Load()),
		CounterVersion:   a.counterVersion.Load(),
		VersionAlarm:     a.versionAlarm.Load(),
		SessionState:     st.String(),
		Connected:        st == zk.StateHasSession && !a.closed.Load(),
	}
}

func (a *Allocator) setErr(err error) {
	a.mu.Lock()
	a.lastErr, a.lastErrAt = err, a.cfg.Clock()
	a.mu.Unlock()
}
