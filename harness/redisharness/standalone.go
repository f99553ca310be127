package redisharness

import (
	"context"
	"errors"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// StartStandalone starts one redis-server (member name "redis0") and returns
// when it answers PING. When it fails to bind its port it starts over on a
// fresh one, up to 3 times. On any error, including ctx ending, it kills
// what it started and removes its temporary directory. The process outlives
// ctx; only Close ends it. Errors: Options.Validate's, ErrNotInstalled,
// ErrPortInUse after the last attempt, the server's exit with the end of its
// log, or ctx's error. In a test binary run with -short it starts nothing
// and ends the binary (proc.SkipShortMain): call it from TestMain there, and
// StartStandaloneT or Shared from a test; so do StartReplicated and
// StartCluster.
func StartStandalone(ctx context.Context, opts Options) (*Server, error) {
	if opts.MinReplicasToWrite > 0 {
		return nil, errors.New("redisharness: MinReplicasToWrite needs a Group with replicas; a standalone server would refuse every write")
	}
	e, err := newEnv(opts, 0)
	if err != nil {
		return nil, err
	}
	s := e.newServer("redis0", kindRedis)
	s.ownsEnv = true
	once := func(ctx context.Context) error {
		if err := e.assignPorts([]*Server{s}, false); err != nil {
			return err
		}
		return launchReady(ctx, []*Server{s}, func(s *Server) string { return e.redisConf(s, 0, false) })
	}
	kill := func() error { return s.Kill() }
	if err := e.start(ctx, "standalone server", once, kill); err != nil {
		return nil, err
	}
	return s, nil
}

// StartStandaloneT is StartStandalone for tests: it fails t (never skips
// it) when the server does not come up within 60 s or the test's context,
// logs lifecycle events through t.Logf unless opts.Logf is set, and closes
// the server in t.Cleanup. Under go test -short it skips t.
func StartStandaloneT(t testing.TB, opts Options) *Server {
	t.Helper()
	return startT(t, &opts, "standalone Redis", func(ctx context.Context) (*Server, error) {
		return StartStandalone(ctx, opts)
	})
}

// startT runs start for a ...T variant: a skip under go test -short
// (proc.SkipShort), t.Logf as the default Logf, then proc.StartT: a bounded
// context, a failure of t, and Close in t.Cleanup.
func startT[T interface{ Close() error }](t testing.TB, opts *Options, what string, start func(context.Context) (T, error)) T {
	t.Helper()
	proc.SkipShort(t, "Redis")
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	return proc.StartT(t, what, startTimeoutT, start)
}
