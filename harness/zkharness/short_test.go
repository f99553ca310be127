package zkharness

import (
	"context"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// A TestMain that starts ZooKeeper ends a -short test binary before it
// looks for Java, so make check passes on a machine without ZooKeeper.
func TestStartUnderShortNeedsNoZooKeeper(t *testing.T) {
	proc.CheckShortMain(t, func() error {
		_, err := Start(context.Background(), Options{})
		return err
	})
}
