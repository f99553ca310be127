package audit

import (
	"errors"
	"time"
)

// Defaults of Settings.
const (
	DefaultRetryInterval = time.Second
	DefaultWait          = time.Second
	DefaultMaxBacklog    = 4096
)

// Settings tunes a Log's handling of write failures. The zero value means
// the defaults.
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
}

// Validate reports a negative setting.
func (s Settings) Validate() error {
	if s.RetryInterval < 0 || s.Wait < 0 || s.MaxBacklog < 0 {
		return errors.New("audit: negative setting")
	}
	return nil
}

// withDefaults fills in the zero fields.
func (s Settings) withDefaults() Settings {
	if s.RetryInterval == 0 {
		s.RetryInterval = DefaultRetryInterval
	}
	if s.Wait == 0 {
		s.Wait = DefaultWait
	}
	if s.MaxBacklog == 0 {
		s.MaxBacklog = DefaultMaxBacklog
	}
	return s
}
