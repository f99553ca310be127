package auth

import (
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"time"
)

// Key rotation. An identity provider publishes a new key (a new kid in its
// JWKS) before it signs with it, and removes the old one after the tokens
// it signed have expired, or at once when the key leaked. The Verifier
// follows the file:
//
//   - The file is re-read by the first Verify after ReloadInterval (and by
//     Reload, which a SIGHUP handler can call). Its content is compared by
//     hash, not by modification time: a rewrite within the same clock tick,
//     or a Kubernetes ConfigMap swap that keeps old times, is still seen.
//   - New content that parses into at least one usable key replaces the key
//     set whole, under a new generation number. Cached verifications carry
//     the generation that made them and are served only for the current
//     one, so a token signed by a removed key stops verifying with the
//     swap, even when a Verify that started before it stores its result
//     afterwards.
//   - New content that does not parse, holds no usable key (an empty JWKS,
//     a 1024-bit RSA key), or cannot be read (a missing file) is refused:
//     the keys in use stay, the error is reported once (OnReload,
//     ReloadStatus, Reload), and a later fix is picked up by the next
//     check. The Verifier never runs with an empty key set.

// ReloadEvent is what a key file check found.
type ReloadEvent struct {
	File   string
	KeyIDs []string // key IDs in use after the check ("" for a PEM key or a secret)
	// Changed: a new key set is in use.
	Changed bool
	// Err, when set, is why the file's content was refused (the previous
	// keys stay in use); nil when the file's content is the key set in use.
	Err error
}

// reloadState is the key file bookkeeping; mu serialises checks.
type reloadState struct {
	mu       sync.Mutex
	seen     [32]byte  // hash of the content last examined (zero after a read error)
	inUse    [32]byte  // hash of the content the key set in use came from
	loadedAt time.Time // when the key set in use was loaded
	err      error     // why the file's current content is not in use; nil when it is
}

func (r *reloadState) init(b []byte, now time.Time) {
	r.seen = sha256.Sum256(b)
	r.inUse, r.loadedAt = r.seen, now
}

func (v *Verifier) scheduleCheck(now time.Time) {
	if v.cfg.ReloadInterval > 0 {
		v.nextCheck.Store(now.Add(v.cfg.ReloadInterval).UnixNano())
	}
}

// keys returns the key set to verify with at now, checking the key file
// first when a check is due. One caller checks; the others go on with the
// keys in use meanwhile (a check reads a small file: microseconds).
func (v *Verifier) keys(now time.Time) *keySet {
	if v.cfg.ReloadInterval > 0 && now.UnixNano() >= v.nextCheck.Load() && v.reload.mu.TryLock() {
		var ev *ReloadEvent
		if now.UnixNano() >= v.nextCheck.Load() { // not done meanwhile by another caller
			ev = v.checkLocked(now)
			v.scheduleCheck(now)
		}
		v.reload.mu.Unlock()
		v.report(ev)
	}
	return v.set.Load()
}

// Reload checks the key file now (for a SIGHUP handler). It reports
// whether a new key set is in use, and the error that keeps the file's
// content out of use, also when it was reported before.
func (v *Verifier) Reload() (changed bool, err error) {
	now := v.now()
	v.reload.mu.Lock()
	ev := v.checkLocked(now)
	v.scheduleCheck(now)
	err = v.reload.err
	v.reload.mu.Unlock()
	v.report(ev)
	return ev != nil && ev.Changed, err
}

// ReloadStatus returns the key IDs in use, when they were loaded, and why
// the key file's content is not in use (nil when it is): a health check
// reports the error while the previous keys keep serving.
func (v *Verifier) ReloadStatus() (keyIDs []string, loadedAt time.Time, err error) {
	v.reload.mu.Lock()
	defer v.reload.mu.Unlock()
	return v.set.Load().kids(), v.reload.loadedAt, v.reload.err
}

func (v *Verifier) report(ev *ReloadEvent) {
	if ev != nil && v.cfg.OnReload != nil {
		v.cfg.OnReload(*ev)
	}
}

// checkLocked reads the key file and swaps in its keys when its content is
// new and usable. It returns an event for every new content (or new read
// error), nil when nothing changed. The caller holds v.reload.mu.
func (v *Verifier) checkLocked(now time.Time) *ReloadEvent {
	r := &v.reload
	cur := v.set.Load()
	ev := &ReloadEvent{File: v.path}
	b, err := os.ReadFile(v.path)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrConfig, err)
		if r.err != nil && r.err.Error() == err.Error() {
			return nil // reported already
		}
		r.seen, r.err = [32]byte{}, err
		ev.KeyIDs, ev.Err = cur.kids(), r.err
		return ev
	}
	sum := sha256.Sum256(b)
	if sum == r.seen {
		return nil
	}
	r.seen = sum
	if sum == r.inUse { // back to the content in use, after a refused one
		prev := r.err
		r.err = nil
		if prev == nil {
			return nil
		}
		ev.KeyIDs = cur.kids()
		return ev
	}
	set, err := v.newKeySet(b, cur.gen+1)
	if err != nil {
		r.err = fmt.Errorf("%w: %s: %w; keeping the %d key(s) loaded at %s", ErrConfig, v.path, err, len(cur.keys), r.loadedAt.UTC().Format(time.RFC3339))
		ev.KeyIDs, ev.Err = cur.kids(), r.err
		return ev
	}
	v.set.Store(set)
	r.inUse, r.loadedAt, r.err = sum, now, nil
	// Entries of the old generation are never served again; dropping them
	// now frees the memory.
	v.mu.Lock()
	clear(v.cache)
	v.mu.Unlock()
	ev.KeyIDs, ev.Changed = set.kids(), true
	return ev
}
