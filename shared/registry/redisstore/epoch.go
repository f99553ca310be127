package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/registry"
)

// The epoch marker tells a Redis that still holds the registry from one that
// forgot it (restarted without persistence, flushed, failed over to an empty
// replica, evicted) or from another one (a wrong address, a restored
// backup of another deployment). It is a random value written once, when
// the first Store opens a fresh registry, and never changed by a Store
// afterwards:
//
//	P epoch                   standalone and Sentinel: one marker
//	P epoch:{<tag of slot n>} Cluster: one marker in every hash slot
//
// In Cluster mode every slot holds a marker, so every master holds the
// markers of its slots, and they move with their slots when the cluster is
// resharded; a master is checked through the marker of the first slot it
// owns. The marker of slot 0 is the root: it is created first and says when
// the other slots are done.
//
// Values (one line of ASCII):
//
//	idgen-epoch v2 <32 hex>        the epoch
//	idgen-epoch v2 <32 hex> init   root only: the other slots are being written
//	idgen-epoch lost <32 hex> <unix ms> <reason>
//	                               root only: an instance found this epoch's
//	                               marker missing; every Store refuses
//
// The version names the layout of the records: v2 registries hold runs
// (RunsField), which an idgen that writes v1 reads as absent records. A
// Store reads v1 markers as its own epoch and, when it opens on one,
// rewrites every v1 marker of the epoch as v2 (upgradeMarkers): from then
// on a v1 idgen still running against the registry finds its marker
// unreadable within its check interval and refuses every operation
// (ReasonEpochChanged), instead of taking a run's counters for free ones.
//
// Invariants:
//   - Stores opening at once on a fresh registry agree on one epoch: the
//     root is created with SET NX and every Store adopts what the root holds
//     after its own SET NX, winner or not; a root still marked init is
//     completed (SET NX of the other slots) by whichever Store sees it, with
//     the root's epoch, so a Store that dies half-way is no harm.
//   - A Store opening on registry keys without a root marker refuses
//     (ReasonEpochMissing): the marker was lost while the data was not all
//     lost, and it cannot tell which records are gone.
//   - A Store that saw epoch E refuses for the rest of its life once any
//     master's marker is missing or names another epoch, even if the marker
//     comes back: records of E may be gone. On a missing marker it also
//     writes a "lost" root once, so that Stores opened later refuse too
//     instead of starting a new epoch on an emptied Redis.
//   - Only ResetEpoch (an operator's decision) writes a new epoch over an
//     existing marker.
//
// Sentinel failover keeps the marker: it replicates like every key, before
// any registration that follows it on the same connection.
const (
	markerMagic   = "idgen-epoch"
	markerVersion = "v2"
	markerV1      = "v1" // read, and rewritten as markerVersion
	markerLost    = "lost"
	markerInit    = "init"
)

// marker is a parsed marker value.
type marker struct {
	epoch string
	init  bool
	lost  bool
	v1    bool // written by an idgen of the v1 layout
}

func (m marker) String() string {
	switch {
	case m.lost:
		return markerMagic + " " + markerLost + " " + m.epoch
	}
	v := markerVersion
	if m.v1 {
		v = markerV1
	}
	if m.init {
		return markerMagic + " " + v + " " + m.epoch + " " + markerInit
	}
	return markerMagic + " " + v + " " + m.epoch
}

func parseMarker(v string) (marker, error) {
	f := strings.Fields(v)
	switch {
	case len(f) >= 3 && f[0] == markerMagic && f[1] == markerLost:
		return marker{epoch: f[2], lost: true}, nil
	case len(f) == 3 && f[0] == markerMagic && (f[1] == markerVersion || f[1] == markerV1) && validEpoch(f[2]):
		return marker{epoch: f[2], v1: f[1] == markerV1}, nil
	case len(f) == 4 && f[0] == markerMagic && (f[1] == markerVersion || f[1] == markerV1) && validEpoch(f[2]) && f[3] == markerInit:
		return marker{epoch: f[2], init: true, v1: f[1] == markerV1}, nil
	}
	return marker{}, fmt.Errorf("unreadable epoch marker %.64q", v)
}

func validEpoch(e string) bool {
	_, err := hex.DecodeString(e)
	return err == nil && len(e) == 32
}

func newEpoch() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// slotTags returns, for every hash slot, a short hash tag that maps to it.
func slotTags() []string {
	tags := make([]string, clusterSlots)
	for i, n := uint64(0), 0; n < clusterSlots; i++ {
		tag := strconv.FormatUint(i, 36)
		if sl := slot(tag); tags[sl] == "" {
			tags[sl] = tag
			n++
		}
	}
	return tags
}

// rootKey is the marker of a standalone or Sentinel registry, and the
// marker of slot 0 in Cluster mode.
func (s *Store) rootKey() string {
	if s.cluster {
		return s.markerKey(0)
	}
	return s.cfg.Prefix + "epoch"
}

// markerKey is the marker of hash slot sl (Cluster mode).
func (s *Store) markerKey(sl int) string {
	return s.cfg.Prefix + "epoch:{" + s.tags[sl] + "}"
}

// Epoch returns the epoch the Store opened with, "" when it refused to
// adopt one (see Refusing).
func (s *Store) Epoch() string {
	if p := s.epoch.Load(); p != nil {
		return *p
	}
	return ""
}

// initEpoch adopts the registry's epoch, creating it on a fresh registry;
// a registry it must not adopt latches a reason instead. Errors:
// registry.ErrUnavailable when Redis does not answer.
func (s *Store) initEpoch(ctx context.Context) error {
	root := s.rootKey()
	v, err := s.client.Get(ctx, root).Result()
	if errors.Is(err, redis.Nil) {
		present, perr := s.registryKeysPresent(ctx)
		if perr != nil {
			return fmt.Errorf("redisstore: epoch: %w: %w", registry.ErrUnavailable, perr)
		}
		if present != "" {
			s.guard.latch(ReasonEpochMissing, fmt.Sprintf("registry keys (%s) without an epoch marker (%s)", present, root))
			return nil
		}
		if serr := s.client.SetNX(ctx, root, marker{epoch: newEpoch(), init: true}.String(), 0).Err(); serr != nil {
			return fmt.Errorf("redisstore: epoch: %w: %w", registry.ErrUnavailable, serr)
		}
		v, err = s.client.Get(ctx, root).Result()
	}
	if err != nil {
		return fmt.Errorf("redisstore: epoch: %w: %w", registry.ErrUnavailable, err)
	}
	m, err := parseMarker(v)
	switch {
	case err != nil:
		s.guard.latch(ReasonEpochChanged, fmt.Sprintf("%s: %v", root, err))
		return nil
	case m.lost:
		s.guard.latch(ReasonEpochMissing, fmt.Sprintf("%s: an instance found epoch %s lost (%s)", root, m.epoch, v))
		return nil
	case m.init:
		if err := s.completeEpoch(ctx, m.epoch); err != nil {
			return fmt.Errorf("redisstore: epoch: %w: %w", registry.ErrUnavailable, err)
		}
	}
	if m.v1 {
		if err := s.upgradeMarkers(ctx, m.epoch); err != nil {
			return fmt.Errorf("redisstore: epoch: %w: %w", registry.ErrUnavailable, err)
		}
		s.cfg.Logger.Warn("registry markers rewritten for the v2 record layout; idgen instances of the v1 layout refuse from now on",
			zap.String("epoch", m.epoch))
	}
	s.epoch.Store(&m.epoch)
	s.cfg.Logger.Info("registry epoch", zap.String("epoch", m.epoch), zap.String("marker", root))
	return nil
}

// completeEpoch writes epoch into every slot's marker that has none
// (Cluster mode), then marks the root done.
func (s *Store) completeEpoch(ctx context.Context, epoch string) error {
	v := marker{epoch: epoch}.String()
	if s.cluster {
		p := s.client.Pipeline()
		for sl := 1; sl < clusterSlots; sl++ {
			p.SetNX(ctx, s.markerKey(sl), v, 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
	}
	return s.client.Set(ctx, s.rootKey(), v, 0).Err()
}

// upgradeSource rewrites KEYS[1] as ARGV[2] when it holds ARGV[1].
const upgradeSource = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end return 0`

// upgradeMarkers rewrites every v1 marker of epoch as v2, the root first:
// a marker holding anything else is left to the checks.
func (s *Store) upgradeMarkers(ctx context.Context, epoch string) error {
	keys := []string{s.rootKey()}
	if s.cluster {
		for sl := 1; sl < clusterSlots; sl++ {
			keys = append(keys, s.markerKey(sl))
		}
	}
	for _, init := range []bool{false, true} {
		from, to := marker{epoch: epoch, init: init, v1: true}.String(), marker{epoch: epoch, init: init}.String()
		p := s.client.Pipeline()
		for _, k := range keys {
			p.Eval(ctx, upgradeSource, []string{k}, from, to)
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// registryKeyKinds are the sub-prefixes of the registry's data keys (see
// keys.go and keystore.go).
var registryKeyKinds = []string{"r:{", "s:{", "k:{", "deadlines:{", "hw:{", "key:{"}

// scanRounds bounds the SCAN calls per master of registryKeysPresent:
// a registry holds mostly its own keys, so a few thousand visited keys
// find one; a Redis of other data with no registry key in the first
// scanRounds*1000 is taken for a fresh registry.
const scanRounds = 16

// registryKeysPresent returns the name of a registry data key on some
// master, or "".
func (s *Store) registryKeysPresent(ctx context.Context) (string, error) {
	match := globEscape(s.cfg.Prefix) + "*"
	found := make(chan string, 1)
	err := s.eachMaster(ctx, func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for range scanRounds {
			keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				rest := strings.TrimPrefix(k, s.cfg.Prefix)
				for _, kind := range registryKeyKinds {
					if strings.HasPrefix(rest, kind) {
						select {
						case found <- k:
						default:
						}
						return nil
					}
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	select {
	case k := <-found:
		return k, nil
	default:
		return "", nil
	}
}

// globEscape escapes the glob characters of SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// checkMarker reads the marker of the node c talks to and compares it with
// the Store's epoch; it returns a reason and what was seen, or "" when the
// marker is right or the node owns no slot. Errors are Redis's (the
// marker's state is then unknown).
func (s *Store) checkMarker(ctx context.Context, c redis.Cmdable, epoch string) (reason, detail string, err error) {
	key := s.rootKey()
	if s.cluster {
		sl, ok, err := firstOwnedSlot(ctx, c)
		if err != nil || !ok {
			return "", "", err
		}
		key = s.markerKey(sl)
	}
	v, err := c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return ReasonEpochMissing, fmt.Sprintf("marker %s of epoch %s is gone", key, epoch), nil
	}
	if err != nil {
		return "", "", err
	}
	m, err := parseMarker(v)
	switch {
	case err != nil:
		return ReasonEpochChanged, fmt.Sprintf("%s: %v", key, err), nil
	case m.lost:
		return ReasonEpochMissing, fmt.Sprintf("%s: an instance found epoch %s lost (%s)", key, m.epoch, v), nil
	case m.epoch != epoch:
		return ReasonEpochChanged, fmt.Sprintf("marker %s holds epoch %s, this instance opened epoch %s", key, m.epoch, epoch), nil
	}
	return "", "", nil
}

// firstOwnedSlot returns the first slot the node c talks to serves as a
// master, from CLUSTER NODES; false when it serves none.
func firstOwnedSlot(ctx context.Context, c redis.Cmdable) (int, bool, error) {
	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return 0, false, err
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "myself") || !strings.Contains(f[2], "master") {
			continue
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated or imported
			}
			lo, _, _ := strings.Cut(r, "-")
			if n, err := strconv.Atoi(lo); err == nil && n >= 0 && n < clusterSlots {
				return n, true, nil
			}
		}
	}
	return 0, false, nil
}

// checkerCtx marks the checker's commands: the connect hook lets them
// through when it latches a reason (the Store's gate refuses the others).
type checkerCtx struct{}

// onConnect checks the marker on every new connection to a data node, so
// that the first command after a reconnect (to a restarted server, or a
// new master) never runs against a forgotten registry: it fails with the
// refusal instead. A connection to a Sentinel (GET unknown there) or a
// failed read passes: the command then fails or succeeds on its own, and
// the checker looks again.
func (s *Store) onConnect(ctx context.Context, cn *redis.Conn) error {
	ep := s.epoch.Load()
	if ep == nil || s.c.Closed() {
		return nil
	}
	reason, detail, err := s.checkMarker(ctx, cn, *ep)
	if err != nil || reason == "" {
		return nil
	}
	s.guard.latch(reason, detail+" (seen on reconnect)")
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if ctx.Value(checkerCtx{}) != nil {
		return nil
	}
	return s.guard.refusal()
}

// markLost writes the "lost" root once, so that Stores opened later on
// this Redis refuse too. Best effort: the Store refuses either way.
func (s *Store) markLost(ctx context.Context) {
	ep := s.epoch.Load()
	if ep == nil || !s.lostMarked.CompareAndSwap(false, true) {
		return
	}
	v := fmt.Sprintf("%s %s %s %d %s", markerMagic, markerLost, *ep, time.Now().UnixMilli(), ReasonEpochMissing)
	if err := s.client.Set(ctx, s.rootKey(), v, 0).Err(); err != nil {
		s.lostMarked.Store(false)
		s.cfg.Logger.Warn("registry: writing the lost-epoch marker failed; retrying at the next check", zap.Error(err))
		return
	}
	s.cfg.Logger.Error("registry: marked epoch lost; every instance refuses until an operator resets the epoch",
		zap.String("epoch", *ep), zap.String("marker", s.rootKey()))
}

// ResetEpoch writes a new epoch over every marker of the registry cfg
// describes and returns it: the operator's statement that the registry as
// it is now is the one to serve (after a loss was investigated, or to
// adopt a registry written before markers existed). Stores open meanwhile
// keep refusing (their epoch changed): restart them. It never touches
// records. Errors: Config.Validate's, registry.ErrUnavailable.
func ResetEpoch(ctx context.Context, cfg Config) (string, error) {
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	cfg = cfg.withDefaults()
	client, cluster, err := connect(ctx, cfg, nil)
	if err != nil {
		return "", err
	}
	defer client.Close()
	s := &Store{cfg: cfg, client: client, cluster: cluster}
	if cluster {
		s.tags = slotTags()
	}
	epoch := newEpoch()
	v := marker{epoch: epoch}.String()
	p := client.Pipeline()
	if cluster {
		for sl := 1; sl < clusterSlots; sl++ {
			p.Set(ctx, s.markerKey(sl), v, 0)
		}
	}
	p.Set(ctx, s.rootKey(), v, 0)
	if _, err := p.Exec(ctx); err != nil {
		return "", fmt.Errorf("redisstore: reset epoch: %w: %w", registry.ErrUnavailable, err)
	}
	cfg.Logger.Warn("registry epoch reset by an operator", zap.String("epoch", epoch), zap.String("marker", s.rootKey()))
	return epoch, nil
}
