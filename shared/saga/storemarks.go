package saga

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
)

// MarkStore keeps the done marks of StoreMarks in an embedded store
// (*pebblestore.Store and *boltstore.Store provide it). A key names one
// mark; its value is the time it runs out.
type MarkStore interface {
	// AuditMark returns the expiry (Unix ms) of the mark under key, 0 when
	// there is none; an expired mark not yet purged is returned as well.
	AuditMark(ctx context.Context, key []byte) (int64, error)
	// PutAuditMark stores the mark under key, replacing one there; it is
	// read back once PutAuditMark returns. Errors wrap
	// registry.ErrUnavailable when the store refuses writes (a disk below
	// its free-space threshold).
	PutAuditMark(ctx context.Context, key []byte, expiresMS int64) error
	// PurgeAuditMarks deletes up to limit marks that ran out before
	// cutoffMS and returns how many index entries it removed.
	PurgeAuditMarks(ctx context.Context, cutoffMS int64, limit int) (int, error)
}

// StoreMarks keeps the audit marks of Core for one process that owns its
// embedded store (the data directory is locked): the done marks in the
// store, under the same keys as RedisMarks ("<Prefix><id>", TTL), and the
// leases in memory. A lease needs nothing more: its holder is an attempt
// of this process, so a lease lost with the process had a holder that
// died with it, which is what a Redis lease's expiry stands for. Claim,
// Mark and Release answer as RedisMarks does. Safe for concurrent use; the
// zero value, with Store set, is ready.
//
// Cost: Claim reads one key (no write); Mark writes one key, which the
// store group-commits with the other writes in flight and may leave to
// their sync (pebblestore does). A crash before a mark is synced loses it:
// a later attempt repeats the entry, marked recovered, the same window as a
// RedisMarks mark lost between the entry and its SET.
//
// Done marks outlive TTL in the store until Purge deletes them.
type StoreMarks struct {
	Store MarkStore
	// Prefix of the keys. Default DefaultMarkPrefix.
	Prefix string
	// TTL of a done mark; must exceed Once.RecoverWithin. Default
	// DefaultMarkTTL.
	TTL time.Duration
	// LeaseTTL of a claim. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Now is the clock of the TTLs. Default time.Now.
	Now func() time.Time

	mu     sync.Mutex
	leases map[string]storeLease
}

// storeLease is one attempt's claim; checking while its Claim reads the
// done mark.
type storeLease struct {
	token    string
	expires  time.Time
	checking bool
}

var _ Marker = (*StoreMarks)(nil)

func (m *StoreMarks) key(id idcodec.ID) string { return markKey(m.Prefix, id) }

func (m *StoreMarks) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Claim implements Marker.
//
// Why two attempts never both write an entry (while no lease outlives its
// LeaseTTL): an attempt writes only after Claim answered true, and Claim
// answers true only when (1) it put its lease in the map while no live
// lease was there, (2) its read of the done mark, made after that, found
// none, and (3) the lease is still its own after the read. Another
// attempt's entry was written under a lease of its own; while that lease
// lives, (1) fails; it ends by Release (no entry written) or by Mark,
// which stores the done mark before it drops the lease, so a claim that
// passes (1) afterwards reads the mark in (2). A Mark that drops this
// claim's lease during its read fails (3).
func (m *StoreMarks) Claim(ctx context.Context, id idcodec.ID, token string) (bool, error) {
	key, now := m.key(id), m.now()
	m.mu.Lock()
	if l, ok := m.leases[key]; ok && now.Before(l.expires) {
		m.mu.Unlock()
		if l.token == token && !l.checking {
			return true, nil // asked again (a lost reply)
		}
		return false, fmt.Errorf("%w: %s", ErrAuditBusy, id)
	}
	if m.leases == nil {
		m.leases = map[string]storeLease{}
	}
	m.leases[key] = storeLease{token: token, expires: now.Add(orDefault(m.LeaseTTL, DefaultLeaseTTL)), checking: true}
	m.mu.Unlock()

	exp, err := m.Store.AuditMark(ctx, []byte(key))
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ours := m.leases[key]
	ours = ours && l.token == token
	if err == nil && exp <= now.UnixMilli() {
		if !ours {
			return false, fmt.Errorf("%w: %s", ErrAuditBusy, id)
		}
		l.checking = false
		m.leases[key] = l
		return true, nil
	}
	if ours {
		delete(m.leases, key)
	}
	if err != nil {
		return false, fmt.Errorf("compensate: claim mark %s: %w", id, err)
	}
	return false, nil // done
}

// Mark implements Marker: the done mark replaces whatever the key holds,
// another token's lease included. A mark the store refuses leaves the
// lease to run out, as a failed RedisMarks mark does.
func (m *StoreMarks) Mark(ctx context.Context, id idcodec.ID, _ string) error {
	key := m.key(id)
	if err := m.Store.PutAuditMark(ctx, []byte(key), m.now().Add(orDefault(m.TTL, DefaultMarkTTL)).UnixMilli()); err != nil {
		return fmt.Errorf("compensate: mark %s: %w", id, err)
	}
	// After the write: a claim that finds no lease reads the mark.
	m.mu.Lock()
	delete(m.leases, key)
	m.mu.Unlock()
	return nil
}

// Release implements Marker: it drops the lease of token only.
func (m *StoreMarks) Release(_ context.Context, id idcodec.ID, token string) error {
	key := m.key(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[key]; ok && l.token == token {
		delete(m.leases, key)
	}
	return nil
}

// Purge forgets m's leases that ran out and deletes up to limit done marks
// of the store that ran out, whatever their prefix (the store indexes them
// by expiry); it returns how many marks' index entries it deleted. Call it
// periodically (as PurgeIdempotency is): the marks of a busy day are
// otherwise kept for good.
func (m *StoreMarks) Purge(ctx context.Context, limit int) (int, error) {
	now := m.now()
	m.mu.Lock()
	for k, l := range m.leases {
		if !now.Before(l.expires) {
			delete(m.leases, k)
		}
	}
	m.mu.Unlock()
	n, err := m.Store.PurgeAuditMarks(ctx, now.UnixMilli(), limit)
	if err != nil {
		return n, fmt.Errorf("compensate: purge marks: %w", err)
	}
	return n, nil
}

// Leases returns how many leases m holds (metrics, tests).
func (m *StoreMarks) Leases() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.leases)
}
