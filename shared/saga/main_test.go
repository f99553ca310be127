package saga_test

import (
	"os"
	"testing"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// sharedRedis is one standalone Redis for every test, started by the first
// that needs it; each test gets its own key prefix (sagatest.NewEnv).
var sharedRedis = &redisharness.Shared{}

func TestMain(m *testing.M) { os.Exit(sagatest.RunWithRedis(m, sharedRedis)) }
