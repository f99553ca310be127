package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/idgen/idgen/shared/idcodec"
)

// Claim is one range [Start, End) of a shard's counter handed to one
// instance: the durable record that reconciliation accounts for, counter by
// counter. It is written once the range source committed the claim and
// before any ID of it is issued (see Recorded).
type Claim struct {
	Shard    uint8  `json:"shard"`
	Start    uint64 `json:"start"`
	End      uint64 `json:"end"`
	Worker   uint16 `json:"worker"`   // worker slot of the claimer when it claimed
	Instance string `json:"instance"` // advertised name of the claimer
	Source   string `json:"source"`   // SourceZooKeeper or SourceClockFloor
	AtMS     int64  `json:"at_ms"`
	// Unconfirmed marks the announcement of a claim about to be committed
	// (generator.IntentSource), written before the commit; the confirmed
	// claim of the same range follows once it is. An announcement that a
	// confirmed claim overlaps was not committed, or was and is recorded;
	// one that none overlaps may have been committed by a process that died
	// before confirming it, and nothing of it was issued.
	Unconfirmed bool `json:"unconfirmed,omitempty"`
}

// Range sources of a Claim. ZooKeeper hands out a shard's counter without
// gaps, so a gap between two ZooKeeper claims is a claim the registry never
// heard of; the clock floor of an embedded store skips counters at each
// start (generator.ClockFloor), so a gap before one of its claims is the
// skip.
const (
	SourceZooKeeper  = "zookeeper"
	SourceClockFloor = "clock-floor"
)

// Release is a part of a claim its instance gave up without issuing it.
type Release struct {
	Start  uint64 `json:"start"`
	End    uint64 `json:"end"`
	Reason string `json:"reason"` // one of the Released* reasons
	AtMS   int64  `json:"at_ms"`
}

// Reasons of a Release (the generator gives up counters for the first
// five; the claim recorder for the last).
const (
	// ReleasedAtShutdown: the unissued tail of the range in use when the
	// instance stopped.
	ReleasedAtShutdown = "released_at_shutdown"
	// ReleasedPrefetch: a prefetched range still unused when the instance
	// stopped.
	ReleasedPrefetch = "unissued_prefetch"
	// ReleasedBatchTail: the tail of a range too short for the batch that
	// reached it (the batch came whole from the next range).
	ReleasedBatchTail = "batch_tail"
	// ReleasedLeaseLost: counters taken for IDs that were never stamped,
	// because the worker lease ran out meanwhile.
	ReleasedLeaseLost = "lease_lost"
	// ReleasedTooShort: a range shorter than the largest batch, refused.
	ReleasedTooShort = "range_too_short"
	// ReleasedUnused: a range whose claim could not be recorded in time,
	// never handed out.
	ReleasedUnused = "never_used"
)

// ReleaseReasons are the valid reasons of a Release.
var ReleaseReasons = []string{ReleasedAtShutdown, ReleasedPrefetch, ReleasedBatchTail, ReleasedLeaseLost, ReleasedTooShort, ReleasedUnused}

// ClaimEntry is a claim with what was released of it.
type ClaimEntry struct {
	Claim
	Releases []Release `json:"releases,omitempty"`
}

// Len is the number of counters of the claim.
func (c Claim) Len() uint64 { return c.End - c.Start }

// Contains reports whether counter is in the claim.
func (c Claim) Contains(counter uint64) bool { return c.Start <= counter && counter < c.End }

// Validate checks the claim's fields. Errors: ErrBadClaim.
func (c Claim) Validate() error {
	switch {
	case c.Shard > idcodec.MaxShard:
		return fmt.Errorf("%w: shard %d", ErrBadClaim, c.Shard)
	case c.Start >= c.End || c.End > idcodec.MaxCounter+1:
		return fmt.Errorf("%w: range [%d, %d)", ErrBadClaim, c.Start, c.End)
	case c.Worker > idcodec.MaxWorker:
		return fmt.Errorf("%w: worker %d", ErrBadClaim, c.Worker)
	case c.Source != SourceZooKeeper && c.Source != SourceClockFloor:
		return fmt.Errorf("%w: source %q", ErrBadClaim, c.Source)
	case len(c.Instance) > 256:
		return fmt.Errorf("%w: instance name of %d bytes", ErrBadClaim, len(c.Instance))
	}
	return nil
}

// Validate checks that the release lies within claim c. Errors: ErrBadClaim.
func (r Release) Validate(c Claim) error {
	if r.Start >= r.End || r.Start < c.Start || r.End > c.End {
		return fmt.Errorf("%w: release [%d, %d) outside claim [%d, %d)", ErrBadClaim, r.Start, r.End, c.Start, c.End)
	}
	if !slices.Contains(ReleaseReasons, r.Reason) {
		return fmt.Errorf("%w: release reason %q", ErrBadClaim, r.Reason)
	}
	return nil
}

// ErrBadClaim means a claim or release to record is malformed.
var ErrBadClaim = errors.New("registry: malformed claim")

// ClaimLedger is the registry's durable record of claims and releases,
// and the reads of its state maps and records in counter order that
// reconciliation needs. Every backend implements it for the shard it serves.
type ClaimLedger interface {
	// RecordClaim stores c (its Shard is the store's). Recording the same
	// claim again changes nothing.
	RecordClaim(ctx context.Context, c Claim) error
	// RecordRelease stores r as released of the claim starting at
	// claimStart. Recording the same release again changes nothing.
	RecordRelease(ctx context.Context, claimStart uint64, r Release) error
	// Claims returns the claims made from fromMS to toMS (inclusive), in
	// order of Start, each with its releases.
	Claims(ctx context.Context, fromMS, toMS int64) ([]ClaimEntry, error)
	// ScanCounters calls fn with every record of the shard whose counter
	// is in [start, end), in no particular order, until fn returns an
	// error, which it returns.
	ScanCounters(ctx context.Context, start, end uint64, fn func(Record) error) error
	// StateMapper reads the tallies of the records (state maps).
	StateMapper
}

// EncodeClaim and DecodeClaim are the stored form of a claim (JSON: an
// operator reading the backend sees what it is).
func EncodeClaim(c Claim) ([]byte, error) { return json.Marshal(c) }

// DecodeClaim decodes and validates a stored claim. Errors: ErrCorrupt.
func DecodeClaim(b []byte) (Claim, error) {
	var c Claim
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: claim: %w", ErrCorrupt, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return c, nil
}

// EncodeReleases and DecodeReleases are the stored form of a claim's
// releases.
func EncodeReleases(rs []Release) ([]byte, error) { return json.Marshal(rs) }

// DecodeReleases decodes stored releases. Errors: ErrCorrupt.
func DecodeReleases(b []byte) ([]Release, error) {
	var rs []Release
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("%w: releases: %w", ErrCorrupt, err)
	}
	return rs, nil
}

// AddRelease returns rs with r added unless an equal release is there.
func AddRelease(rs []Release, r Release) ([]Release, bool) {
	for _, o := range rs {
		if o.Start == r.Start && o.End == r.End && o.Reason == r.Reason {
			return rs, false
		}
	}
	return append(rs, r), true
}
