package allocator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
)

// counterData is the JSON of a counter znode.
type counterData struct {
	Next    uint64 `json:"next"`               // first counter not yet handed out
	Token   string `json:"token"`              // "<instance>:<seq>" of the last writer
	MovedTo string `json:"moved_to,omitempty"` // set once: the counter lives on in this sibling
}

func encodeCounter(d counterData) ([]byte, error) { return json.Marshal(d) }

func decodeCounter(b []byte) (counterData, error) {
	var d counterData
	if len(b) == 0 {
		return d, errors.New("empty counter znode")
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decode counter: %w", err)
	}
	if d.MovedTo != "" && !validCounterName(d.MovedTo) {
		return d, fmt.Errorf("counter moved_to %q is not a counter name", d.MovedTo)
	}
	return d, nil
}

// validCounterName accepts "counter" and "counter.K" for K ≥ 1.
func validCounterName(s string) bool {
	if s == "counter" {
		return true
	}
	k, ok := strings.CutPrefix(s, "counter.")
	n, err := strconv.ParseUint(k, 10, 32)
	return ok && err == nil && n > 0 && strconv.FormatUint(n, 10) == k
}

// nextCounterName returns the name of the fresh znode a counter moves to.
func nextCounterName(s string) string {
	k, _ := strings.CutPrefix(s, "counter.")
	n, _ := strconv.Atoi(k) // 0 for "counter"
	return "counter." + strconv.Itoa(n+1)
}

// counterRead is one read of the counter znode.
type counterRead struct {
	name string
	path string
	data counterData
	stat *zk.Stat
}

// ClaimRange implements generator.RangeSource: it claims [next, next+n) of
// the shard counter with a compare-and-set and returns once ZooKeeper's
// quorum committed it. It retries version conflicts with jittered exponential
// backoff until ctx ends. Errors: ErrExhausted when the counter would pass
// idcodec.MaxCounter, ErrBehindHighWater when the counter is below a mark
// given to CheckHighWater, ErrClosed after Close, ctx's error, or ZooKeeper's.
//
// Why a range is never handed out twice. Let v be a data version of the
// counter and N_v its "next". Every write is conditional on the version read
// (compared for equality; -1, "any version", is never sent), so each version
// transition v→v+1 is made by exactly one committed write, computed from the
// state at v: N_{v+1} = N_v + n > N_v (a move copies N). The ranges
// [N_v, N_{v+1}) of distinct transitions are therefore disjoint. Each write
// carries a token unique to one claim attempt (fresh instance UUID per Open,
// fresh sequence per attempt) and each attempt sends exactly one write. A
// caller uses [N_v, N_v+n) only when it knows its own write made v→v+1:
//   - the write's reply said success; or
//   - the reply was lost (connection error, ctx ended mid-write) and a later
//     read, after Sync, shows the attempt's token. The token is in the data
//     only if the write committed, and nobody wrote after it (a later write
//     would replace the token), so the data read is exactly ours and our
//     range is [N_v, N_v+n). Stale follower reads cannot show a token that
//     was not committed.
//
// Otherwise the attempt is abandoned and a new attempt with a new token starts
// from a fresh read. If the abandoned write did land (and was overwritten
// before we looked, or lands later from the send queue), its range belongs to
// nobody: burnt, never reused. So each range is used at most once.
func (a *Allocator) ClaimRange(ctx context.Context, n uint64) (generator.Range, error) {
	return a.ClaimRangeIntent(ctx, n, nil)
}

var _ generator.IntentSource = (*Allocator)(nil)

// ClaimRangeIntent is ClaimRange that calls intent (when not nil) with the
// range of each compare-and-set before sending it; an error of intent ends
// the claim with nothing written (generator.IntentSource).
func (a *Allocator) ClaimRangeIntent(ctx context.Context, n uint64, intent func(context.Context, generator.Range) error) (generator.Range, error) {
	if a.closed.Load() {
		return generator.Range{}, ErrClosed
	}
	if n == 0 || n > idcodec.MaxCounter {
		return generator.Range{}, fmt.Errorf("allocator: claim range: size %d not in 1..%d", n, uint64(idcodec.MaxCounter))
	}
	t0 := time.Now()
	var (
		r        generator.Range
		attempts int
		version  int32
		err      error
	)
	select {
	case a.claimSem <- struct{}{}:
		r, attempts, version, err = a.claim(ctx, n, intent)
		<-a.claimSem
	case <-ctx.Done():
		err = ctx.Err()
	}
	dur := time.Since(t0)
	if err != nil {
		a.claimErrors.Add(1)
		err = fmt.Errorf("allocator: claim range of %d: %w", n, a.closedOr(err))
		if !errors.Is(err, ErrClosed) {
			a.setErr(err)
		}
		a.log.Warn("range claim failed", zap.Uint64("n", n), zap.Int("attempts", attempts),
			zap.Duration("latency", dur), zap.Error(err))
		return generator.Range{}, err
	}
	a.claims.Add(1)
	a.lastClaimNS.Store(int64(dur))
	a.log.Info("range claimed", zap.Uint64("start", r.Start), zap.Uint64("end", r.End),
		zap.Uint64("n", n), zap.Duration("latency", dur), zap.Int("attempts", attempts),
		zap.Int32("version", version))
	return r, nil
}

func (a *Allocator) claim(ctx context.Context, n uint64, intent func(context.Context, generator.Range) error) (generator.Range, int, int32, error) {
	var (
		next      *counterRead // a fresh read carried over from resolving a lost reply
		conflicts int
		migrated  bool
	)
	for attempt := 1; ; attempt++ {
		rd := next
		next = nil
		if rd == nil {
			var err error
			if rd, err = a.readCounter(ctx, false); err != nil {
				if !transient(err) {
					return generator.Range{}, attempt, 0, err
				}
				if !backoff.Sleep(ctx, backoff.Equal(attempt, 10*time.Millisecond, time.Second)) {
					return generator.Range{}, attempt, 0, ctx.Err()
				}
				continue
			}
		}
		v := rd.stat.Version
		if v == -1 {
			return generator.Range{}, attempt, v, fmt.Errorf("counter %s at version -1: a conditional write would be unconditional; move the counter to a fresh znode", rd.path)
		}
		if a.versionAlarm.Load() && !migrated {
			migrated = true
			if err := a.migrate(ctx, rd); err == nil {
				continue
			} else if ctx.Err() != nil {
				return generator.Range{}, attempt, v, err
			}
		}
		a.mu.Lock()
		hw := a.highWater
		a.mu.Unlock()
		if rd.data.Next < hw {
			return generator.Range{}, attempt, v, fmt.Errorf("%w: counter %d below mark %d", ErrBehindHighWater, rd.data.Next, hw)
		}
		if rd.data.Next > idcodec.MaxCounter+1-n {
			return generator.Range{}, attempt, v, fmt.Errorf("%w: next %d + %d passes %d", ErrExhausted, rd.data.Next, n, uint64(idcodec.MaxCounter))
		}
		token := a.instance + ":" + strconv.FormatUint(a.claimSeq.Add(1), 10)
		want := counterData{Next: rd.data.Next + n, Token: token}
		buf, err := encodeCounter(want)
		if err != nil {
			return generator.Range{}, attempt, v, err
		}
		r := generator.Range{Start: rd.data.Next, End: want.Next}
		if intent != nil {
			if err := intent(ctx, r); err != nil {
				return generator.Range{}, attempt, v, fmt.Errorf("announce claim [%d, %d): %w", r.Start, r.End, err)
			}
		}
		t1, sid := a.cfg.Clock(), a.conn.SessionID()
		_, err = call(ctx, func() (*zk.Stat, error) { return a.conn.Set(rd.path, buf, v) })
		a.alive(t1, sid, err)
		switch {
		case err == nil:
			return r, attempt, v, nil
		case errors.Is(err, zk.ErrBadVersion):
			a.casConflicts.Add(1)
			if !backoff.Sleep(ctx, backoff.Equal(conflicts, time.Millisecond, 200*time.Millisecond)) {
				return generator.Range{}, attempt, v, ctx.Err()
			}
			conflicts++
			continue
		case fromServer(err):
			return generator.Range{}, attempt, v, fmt.Errorf("set %s: %w", rd.path, err)
		}

		// The reply was lost: the write may or may not have committed.
		a.lostReplies.Add(1)
		if a.closed.Load() || errors.Is(err, zk.ErrClosing) {
			return generator.Range{}, attempt, v, ErrClosed
		}
		a.log.Warn("claim write outcome unknown; re-reading the counter", zap.String("token", token), zap.Error(err))
		fresh, rerr := a.resolve(ctx)
		if rerr != nil {
			// We cannot learn the outcome: never assume, the range is burnt.
			a.lostSkipped.Add(1)
			return generator.Range{}, attempt, v, fmt.Errorf("outcome of claim %s unknown (range burnt): %w", token, rerr)
		}
		if fresh.path == rd.path && fresh.data.Token == token {
			if fresh.data.Next != want.Next {
				return generator.Range{}, attempt, v, fmt.Errorf("counter %s carries our token %s with next %d, want %d", rd.path, token, fresh.data.Next, want.Next)
			}
			a.lostOurs.Add(1)
			a.log.Info("lost claim reply resolved: the write landed", zap.String("token", token))
			return r, attempt, v, nil
		}
		a.lostSkipped.Add(1)
		a.log.Info("lost claim reply resolved: not ours now; claiming again (range burnt if it landed)",
			zap.String("token", token), zap.Uint64("start", r.Start), zap.Uint64("end", r.End))
		next = fresh
	}
}

// readCounter reads the counter znode, following moved_to to the current one.
// With sync it first asks the server to catch up with the leader, so the read
// reflects every write committed before it.
func (a *Allocator) readCounter(ctx context.Context, sync bool) (*counterRead, error) {
	for hops := 0; hops < 64; hops++ {
		a.mu.Lock()
		name := a.counter
		a.mu.Unlock()
		path := a.shardPath() + "/" + name
		t0, sid := a.cfg.Clock(), a.conn.SessionID()
		if sync {
			_, err := call(ctx, func() (string, error) { return a.conn.Sync(path) })
			a.alive(t0, sid, err)
			if err != nil {
				return nil, fmt.Errorf("sync %s: %w", path, err)
			}
		}
		data, st, err := call2(ctx, func() ([]byte, *zk.Stat, error) { return a.conn.Get(path) })
		a.alive(t0, sid, err)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", path, err)
		}
		d, err := decodeCounter(data)
		if err != nil {
			return nil, fmt.Errorf("counter %s: %w", path, err)
		}
		if d.MovedTo != "" {
			a.mu.Lock()
			if a.counter == name {
				a.counter = d.MovedTo
			}
			a.mu.Unlock()
			continue
		}
		a.observeVersion(path, st.Version)
		return &counterRead{name: name, path: path, data: d, stat: st}, nil
	}
	return nil, errors.New("counter moved_to chain too long")
}

// resolve reads the counter after a lost reply, retrying connection errors
// until ctx ends (the client reconnects meanwhile).
func (a *Allocator) resolve(ctx context.Context) (*counterRead, error) {
	for attempt := 0; ; attempt++ {
		rd, err := a.readCounter(ctx, true)
		if err == nil || !transient(err) {
			return rd, err
		}
		if !backoff.Sleep(ctx, backoff.Equal(attempt, 20*time.Millisecond, time.Second)) {
			return nil, ctx.Err()
		}
	}
}

// observeVersion records the counter's data version and raises the alarm
// when it nears the int32 wrap (negative versions have wrapped already).
func (a *Allocator) observeVersion(path string, v int32) {
	a.counterVersion.Store(v)
	alarm := uint32(v) >= uint32(a.versionAlarmAt)
	if alarm && !a.versionAlarm.Swap(true) {
		a.log.Warn("counter data version near the int32 wrap: moving the counter to a fresh znode",
			zap.String("path", path), zap.Int32("version", v), zap.Int32("threshold", a.versionAlarmAt))
	}
	if !alarm {
		a.versionAlarm.Store(false)
	}
}

// migrate moves the counter read in rd to a fresh sibling znode in one
// transaction: rd's znode is set, conditionally on its version, to
// {next, moved_to}, and the sibling is created with the same next. Claims
// that race with it fail their compare-and-set and follow moved_to. A lost
// reply needs no resolution: the next read follows moved_to if it landed.
func (a *Allocator) migrate(ctx context.Context, rd *counterRead) error {
	to := nextCounterName(rd.name)
	token := a.instance + ":move:" + strconv.FormatUint(a.claimSeq.Add(1), 10)
	oldData, _ := encodeCounter(counterData{Next: rd.data.Next, Token: token, MovedTo: to})
	newData, _ := encodeCounter(counterData{Next: rd.data.Next, Token: token})
	toPath := a.shardPath() + "/" + to
	t0, sid := a.cfg.Clock(), a.conn.SessionID()
	res, err := call(ctx, func() ([]zk.MultiResponse, error) {
		return a.conn.Multi(
			&zk.SetDataRequest{Path: rd.path, Data: oldData, Version: rd.stat.Version},
			&zk.CreateRequest{Path: toPath, Data: newData, Acl: a.acl.private, Flags: zk.FlagPersistent},
		)
	})
	a.alive(t0, sid, err)
	for _, r := range res {
		if err == nil && r.Error != nil {
			err = r.Error
		}
	}
	if err != nil {
		lvl := zap.WarnLevel
		if errors.Is(err, zk.ErrBadVersion) {
			lvl = zap.InfoLevel // another instance moved it or claimed first
		}
		a.log.Log(lvl, "counter move failed; the next read follows it if another instance moved it",
			zap.String("from", rd.path), zap.String("to", toPath), zap.Error(err))
		return fmt.Errorf("move counter %s to %s: %w", rd.path, toPath, err)
	}
	a.migrations.Add(1)
	a.mu.Lock()
	if a.counter == rd.name {
		a.counter = to
	}
	a.mu.Unlock()
	a.log.Warn("counter moved to a fresh znode", zap.String("from", rd.path), zap.String("to", toPath),
		zap.Uint64("next", rd.data.Next), zap.Int32("old_version", rd.stat.Version))
	return nil
}

// CheckHighWater verifies that the shard counter is at or above hw, one past
// the highest counter the registry has seen (0 for an empty registry). It
// returns an error wrapping ErrBehindHighWater when the counter is below it:
// ZooKeeper lost history (restored from an old snapshot) and would hand out
// used ranges again, so the service must refuse to issue. The mark is also
// remembered: ClaimRange refuses to claim from a counter below the highest
// mark checked.
func (a *Allocator) CheckHighWater(ctx context.Context, hw uint64) error {
	if a.closed.Load() {
		return ErrClosed
	}
	a.mu.Lock()
	a.highWater = max(a.highWater, hw)
	a.mu.Unlock()
	rd, err := a.resolve(ctx)
	if err != nil {
		return fmt.Errorf("allocator: check high-water mark: %w", a.closedOr(err))
	}
	if rd.data.Next < hw {
		err := fmt.Errorf("%w: shard %d counter %s is at %d but the registry has seen counters up to %d; "+
			"ZooKeeper may have been restored from an old snapshot: refusing to issue until an operator raises the counter",
			ErrBehindHighWater, a.cfg.Shard, rd.path, rd.data.Next, hw-1)
		a.setErr(err)
		a.log.Error("counter behind the registry's high-water mark", zap.Uint64("counter", rd.data.Next),
			zap.Uint64("high_water", hw), zap.String("path", rd.path))
		return err
	}
	return nil
}
