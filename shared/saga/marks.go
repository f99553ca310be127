package saga

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/idcodec"
)

// Defaults of RedisMarks.
const (
	DefaultMarkPrefix = "idgen:compensate:audited:"
	// DefaultMarkTTL outlives DefaultRecoverWithin with a day to spare.
	DefaultMarkTTL = 48 * time.Hour
	// DefaultLeaseTTL bounds how long a claim stays held by an attempt that
	// neither marked nor released it (it died): a redelivery waits that
	// long before it writes the entry itself. It must exceed the time a
	// live attempt takes from its claim to its mark (an audit fsync and
	// markTimeout).
	DefaultLeaseTTL = 30 * time.Second
	// DefaultMarkWaitTimeout bounds the WAIT of a mark in durable mode.
	DefaultMarkWaitTimeout = time.Second
)

// markDone is the value of a mark whose entry is written; a lease holds
// its attempt's token instead.
const markDone = "1"

// claimScript takes the lease (KEYS[1], token ARGV[1], ARGV[2] ms) unless
// the key holds another attempt's lease (-1) or the done mark (0). Asked
// again by the same attempt (a lost reply) it answers 1 again.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then return 1 end
if v == '` + markDone + `' then return 0 end
return -1`)

// releaseScript deletes a lease only while it holds the token ARGV[1].
var releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// NewToken returns a random token that identifies one attempt's lease.
func NewToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RedisMarks keeps the audit marks of Core in Redis: one small key per
// audited ID ("<Prefix><id>") that holds the token of the attempt writing
// the entry (a lease, LeaseTTL), then "1" (done, TTL). Safe for concurrent
// use.
//
// Durable mode (WaitReplicas > 0): Mark ends with WAIT on the connection
// that wrote it (in a Redis Cluster, on the master of the key's slot) and
// fails when fewer replicas acknowledged it, so that a failover does not
// lose the mark of a written entry (a lost mark lets a later redelivery
// write the entry again).
type RedisMarks struct {
	Client redis.Cmdable
	// Prefix of the keys. Default DefaultMarkPrefix.
	Prefix string
	// TTL of a done mark; must exceed Once.RecoverWithin. Default DefaultMarkTTL.
	TTL time.Duration
	// LeaseTTL of a claim. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// WaitReplicas > 0: durable marks (see the type). WaitTimeout bounds the
	// WAIT; default DefaultMarkWaitTimeout.
	WaitReplicas int
	WaitTimeout  time.Duration
}

var _ Marker = (*RedisMarks)(nil)

func (m *RedisMarks) key(id idcodec.ID) string { return markKey(m.Prefix, id) }

// markKey is the key of id's mark under prefix (default
// DefaultMarkPrefix).
func markKey(prefix string, id idcodec.ID) string {
	return cmp.Or(prefix, DefaultMarkPrefix) + id.String()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Claim implements Marker.
func (m *RedisMarks) Claim(ctx context.Context, id idcodec.ID, token string) (bool, error) {
	var n int64
	err := retryMark(ctx, func() (err error) {
		n, err = claimScript.Run(ctx, m.Client, []string{m.key(id)}, token, orDefault(m.LeaseTTL, DefaultLeaseTTL).Milliseconds()).Int64()
		return err
	})
	switch {
	case err != nil:
		return false, fmt.Errorf("saga: claim mark %s: %w", id, err)
	case n < 0:
		return false, fmt.Errorf("%w: %s", ErrAuditBusy, id)
	}
	return n == 1, nil
}

// Mark implements Marker: the done mark replaces whatever the key holds.
func (m *RedisMarks) Mark(ctx context.Context, id idcodec.ID, _ string) error {
	return retryMark(ctx, func() error { return m.mark(ctx, id) })
}

func (m *RedisMarks) mark(ctx context.Context, id idcodec.ID) error {
	key, ttl := m.key(id), orDefault(m.TTL, DefaultMarkTTL)
	if m.WaitReplicas <= 0 {
		if err := m.Client.Set(ctx, key, markDone, ttl).Err(); err != nil {
			return fmt.Errorf("saga: mark %s: %w", id, err)
		}
		return nil
	}
	// WAIT counts the replicas that acknowledged the writes of its own
	// connection: one pipeline is one connection, on the key's master.
	client := m.Client
	if cc, ok := m.Client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("saga: mark %s: %w", id, err)
		}
		client = node
	}
	p := client.Pipeline()
	set := p.Set(ctx, key, markDone, ttl)
	wait := p.Do(ctx, "WAIT", m.WaitReplicas, orDefault(m.WaitTimeout, DefaultMarkWaitTimeout).Milliseconds())
	_, _ = p.Exec(ctx)
	if err := set.Err(); err != nil {
		return fmt.Errorf("saga: mark %s: %w", id, err)
	}
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("saga: mark %s: WAIT: %w", id, err)
	}
	if n < int64(m.WaitReplicas) {
		return fmt.Errorf("saga: mark %s: %d of %d replicas acknowledged", id, n, m.WaitReplicas)
	}
	return nil
}

// Release implements Marker: it deletes the lease of token only.
func (m *RedisMarks) Release(ctx context.Context, id idcodec.ID, token string) error {
	if err := retryMark(ctx, func() error { return releaseScript.Run(ctx, m.Client, []string{m.key(id)}, token).Err() }); err != nil {
		return fmt.Errorf("saga: release mark %s: %w", id, err)
	}
	return nil
}

// markAttempts bounds the tries of one mark command. The marks share the
// registry's Redis client, which does not retry (a registry pipeline sent
// twice would repeat its WAIT); every mark command is idempotent for its
// attempt (Claim with the same token answers 1 again, Mark writes the same
// value, Release deletes only that token's lease), so a connection error or
// a failover reply is retried here, within ctx.
const markAttempts = 3

func retryMark(ctx context.Context, f func() error) error {
	var err error
	for attempt := range markAttempts {
		if err = f(); err == nil || !transient(err) || attempt == markAttempts-1 {
			return err
		}
		if !backoff.Sleep(ctx, backoff.Equal(attempt, 8*time.Millisecond, 512*time.Millisecond)) {
			return err
		}
	}
	return err
}

// transient reports an error a retry can cure: the connection failed, or
// the server is loading, read-only or between masters (a failover).
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		return true
	}
	for _, prefix := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}
