package redisharness

import (
	"context"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// A TestMain that starts Redis ends a -short test binary before it looks
// for redis-server, so make check passes on a machine without Redis.
func TestStartUnderShortNeedsNoRedis(t *testing.T) {
	proc.CheckShortMain(t, func() error {
		_, err := StartStandalone(context.Background(), Options{})
		return err
	})
}
