package saga

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRetryMark: a mark command that fails on the connection or on a
// failover reply is tried again, up to markAttempts; a refusal by the
// server (any other reply) or an ended context is not.
func TestRetryMark(t *testing.T) {
	for _, tc := range []struct {
		name  string
		errs  []error
		calls int
		ok    bool
	}{
		{"EOF twice, then ok", []error{io.EOF, io.ErrUnexpectedEOF, nil}, 3, true},
		{"failover reply, then ok", []error{redisErr("READONLY You can't write against a read only replica."), nil}, 2, true},
		{"always EOF", []error{io.EOF, io.EOF, io.EOF, io.EOF}, markAttempts, false},
		{"NOSCRIPT is no transient", []error{redisErr("NOSCRIPT No matching script"), nil}, 1, false},
		{"deadline is final", []error{context.DeadlineExceeded, nil}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := retryMark(context.Background(), func() error {
				calls++
				return tc.errs[calls-1]
			})
			if calls != tc.calls || (err == nil) != tc.ok {
				t.Fatalf("%d calls, err %v; want %d calls, ok %v", calls, err, tc.calls, tc.ok)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	if err := retryMark(ctx, func() error { calls++; return io.EOF }); !errors.Is(err, io.EOF) || calls != 1 {
		t.Fatalf("ended context: %d calls, %v; want 1 call", calls, err)
	}
}

// redisErr is a reply error as go-redis returns it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

var _ redis.Error = redisErr("")
