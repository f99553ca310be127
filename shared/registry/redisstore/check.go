package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/registry"
)

// Sentinel errors of CheckPersistence.
var (
	// ErrNoPersistence means a master has neither appendonly nor save
	// points: a restart empties it.
	ErrNoPersistence = errors.New("redisstore: the server has neither appendonly nor save points")
	// ErrPersistenceUnknown means the persistence settings could not be
	// read (CONFIG not permitted to this user, or renamed away).
	ErrPersistenceUnknown = errors.New("redisstore: cannot read appendonly and save")
)

// Refusing returns the reasons (Reason* constants, sorted) for which the
// Store refuses every operation now, nil when it serves. Export it as the
// gauge idgen_registry_forgetful{reason} (1 while a reason holds).
func (s *Store) Refusing() []string { return s.guard.reasons() }

// CheckPersistence fails with ErrNoPersistence when a master has neither
// appendonly yes nor save points, and with ErrPersistenceUnknown when
// CONFIG GET is not permitted. Config.RequirePersistence makes the Store
// check it continuously.
func (s *Store) CheckPersistence(ctx context.Context) error {
	if s.c.Closed() {
		return registry.ErrClosed
	}
	return s.eachMaster(ctx, func(ctx context.Context, c redis.Cmdable) error {
		m, err := c.ConfigGet(ctx, "save").Result()
		var a map[string]string
		if err == nil {
			a, err = c.ConfigGet(ctx, "appendonly").Result()
		}
		switch {
		case err != nil && configDenied(err):
			return fmt.Errorf("%w: CONFIG GET is not permitted (%v): make sure the server runs with appendonly yes or save points", ErrPersistenceUnknown, err)
		case err != nil:
			return fmt.Errorf("redisstore: config get: %w: %w", registry.ErrUnavailable, err)
		case !persistent(m["save"], a["appendonly"]):
			return fmt.Errorf("%w: a restart empties it and every acknowledged ID is lost; set appendonly yes (appendfsync always in durable mode)", ErrNoPersistence)
		}
		return nil
	})
}

func persistent(save, appendonly string) bool {
	return appendonly == "yes" || strings.TrimSpace(save) != ""
}

func configDenied(err error) bool {
	return redis.HasErrorPrefix(err, "NOPERM") || strings.Contains(strings.ToLower(err.Error()), "unknown command")
}

// checker runs check every Config.CheckInterval (and at once when the
// connect hook latched a reason) until Close.
func (s *Store) checker() {
	defer close(s.checkDone)
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.checkStop:
			return
		case <-t.C:
		case <-s.wake:
		}
		s.check()
	}
}

// check reads the eviction policy, persistence, evictions and epoch marker
// of every master and updates the guard. A master that does not answer
// changes nothing (Ping reports that); only what was read counts.
func (s *Store) check() {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), checkerCtx{}, true), max(s.cfg.CheckInterval, time.Second))
	defer cancel()
	var mu sync.Mutex
	found := map[string]string{}
	complete := true
	err := s.eachMaster(ctx, func(ctx context.Context, c redis.Cmdable) error {
		f, ok := s.checkNode(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		for r, d := range f {
			found[r] = d
		}
		complete = complete && ok
		return nil
	})
	if err != nil || !complete {
		if err != nil {
			s.logCheckFailure(err)
		}
		// What could not be read keeps what the last check found.
		for r, d := range s.guard.liveNow() {
			if _, ok := found[r]; !ok {
				found[r] = d
			}
		}
	}
	s.guard.setLive(found)
	if s.guard.latched(ReasonEpochMissing) {
		s.markLost(ctx)
	}
}

// checkNode checks one master: non-sticky findings are returned, sticky
// ones latched. ok is false when some setting could not be read.
func (s *Store) checkNode(ctx context.Context, c redis.Cmdable) (found map[string]string, ok bool) {
	found = map[string]string{}
	ok = true
	var policy, save, aof *redis.MapStringStringCmd
	var server, stats *redis.StringCmd
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		policy = p.ConfigGet(ctx, "maxmemory-policy")
		if s.cfg.RequirePersistence {
			save = p.ConfigGet(ctx, "save")
			aof = p.ConfigGet(ctx, "appendonly")
		}
		server = p.Info(ctx, "server")
		stats = p.Info(ctx, "stats")
		return nil
	})
	switch m, err := policy.Result(); {
	case err != nil:
		ok = ok && configDenied(err)
	case m["maxmemory-policy"] != "noeviction":
		found[ReasonEvictionPolicy] = fmt.Sprintf("maxmemory-policy is %s", m["maxmemory-policy"])
	}
	if save != nil {
		sm, err1 := save.Result()
		am, err2 := aof.Result()
		switch {
		case err1 != nil || err2 != nil:
			ok = ok && configDenied(errors.Join(err1, err2))
		case !persistent(sm["save"], am["appendonly"]):
			found[ReasonNoPersistence] = "appendonly no and no save points"
		}
	}
	if runID, n, err := evictedKeys(server, stats); err == nil {
		s.evictMu.Lock()
		before, seen := s.evicted[runID]
		s.evicted[runID] = n
		s.evictMu.Unlock()
		if seen && n > before {
			s.guard.latch(ReasonEvicted, fmt.Sprintf("evicted_keys went from %d to %d (run_id %s)", before, n, runID))
		}
	}
	if ep := s.epoch.Load(); ep != nil {
		reason, detail, err := s.checkMarker(ctx, c, *ep)
		switch {
		case err != nil:
			ok = false
		case reason != "":
			s.guard.latch(reason, detail)
		}
	}
	return found, ok
}

// evictedKeys reads run_id and evicted_keys from INFO server and stats: a
// counter is compared only with earlier values of the same process (a
// restarted or promoted server counts from its own start).
func evictedKeys(server, stats *redis.StringCmd) (string, int64, error) {
	sv, err := server.Result()
	if err != nil {
		return "", 0, err
	}
	st, err := stats.Result()
	if err != nil {
		return "", 0, err
	}
	runID, n := infoField(sv, "run_id"), infoField(st, "evicted_keys")
	if runID == "" || n == "" {
		return "", 0, errors.New("no run_id or evicted_keys in INFO")
	}
	v, err := strconv.ParseInt(n, 10, 64)
	return runID, v, err
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// logCheckFailure is how a check that could not run is reported: at debug
// level, since Ping reports an unreachable Redis.
func (s *Store) logCheckFailure(err error) {
	s.cfg.Logger.Debug("registry check failed", zap.Error(err))
}
