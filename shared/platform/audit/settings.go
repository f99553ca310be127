package audit

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"time"
)

// Defaults of Settings.
const (
	DefaultRetryInterval      = time.Second
	DefaultWait               = time.Second
	DefaultMaxBacklog         = 4096
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
)

// Settings tunes a Log's handling of write failures and its checkpoints.
// The zero value means the defaults, and a chain without checkpoints.
type Settings struct {
	// RetryInterval is how often the log retries its backlog (and, with
	// nothing else waiting, the audit.resume line that ends an outage)
	// after a failed write. It is how soon the log turns healthy once space
	// returns. Default DefaultRetryInterval (1 s).
	RetryInterval time.Duration
	// Wait is how long an entry whose write failed stays in the backlog,
	// retried, before Record gives it back to its caller with the error:
	// an outage shorter than Wait delays Record, longer ones fail it.
	// Record fails at the first retry at least Wait after its entry's
	// first failed write. Default DefaultWait (1 s). Keep Wait plus
	// RetryInterval well under the lease of an audit claim
	// (compensation.DefaultLeaseTTL): an entry still waiting when its
	// claim expires can be written by another attempt too.
	Wait time.Duration
	// MaxBacklog bounds the entries accepted and not yet written (queued or
	// retried); beyond it Record fails at once with ErrBacklogFull.
	// Default DefaultMaxBacklog (4096).
	MaxBacklog int

	// SigningKey signs checkpoints (see Checkpoint). Nil: the log writes
	// its hash chain and no checkpoints, and a verifier can tell that the
	// chain is consistent but not that it is the one this process wrote.
	SigningKey ed25519.PrivateKey
	// KeyID names SigningKey in each checkpoint. Default KeyID of its
	// public key.
	KeyID string
	// CheckpointEvery is how many lines a checkpoint covers at most: one
	// is written after every CheckpointEvery lines. Default
	// DefaultCheckpointEvery (1000).
	CheckpointEvery int
	// CheckpointInterval is how long a line stays without a checkpoint at
	// most while the log is writable: one is written every interval in
	// which lines were written, and at Close. Default
	// DefaultCheckpointInterval (1 min).
	CheckpointInterval time.Duration
	// Checkpoint, when set, receives each checkpoint once its line is
	// durable, to keep it in a second place (a store the writer of the
	// file cannot rewrite). It runs on the log's writer goroutine, between
	// two writes: it must return at once (hand the checkpoint to a
	// goroutine or a buffered channel for anything that does I/O).
	Checkpoint func(Checkpoint)
}

// Validate reports a negative setting or a signing key of the wrong size.
func (s Settings) Validate() error {
	if s.RetryInterval < 0 || s.Wait < 0 || s.MaxBacklog < 0 || s.CheckpointEvery < 0 || s.CheckpointInterval < 0 {
		return errors.New("audit: negative setting")
	}
	if s.SigningKey != nil && len(s.SigningKey) != ed25519.PrivateKeySize {
		return errors.New("audit: the signing key is not an Ed25519 private key")
	}
	return nil
}

// withDefaults fills in the zero fields.
func (s Settings) withDefaults() Settings {
	s.RetryInterval = cmp.Or(s.RetryInterval, DefaultRetryInterval)
	s.Wait = cmp.Or(s.Wait, DefaultWait)
	s.MaxBacklog = cmp.Or(s.MaxBacklog, DefaultMaxBacklog)
	s.CheckpointEvery = cmp.Or(s.CheckpointEvery, DefaultCheckpointEvery)
	s.CheckpointInterval = cmp.Or(s.CheckpointInterval, DefaultCheckpointInterval)
	if s.SigningKey != nil && s.KeyID == "" {
		s.KeyID = KeyID(s.SigningKey.Public().(ed25519.PublicKey))
	}
	return s
}
