package compensation_test

import (
	"os"
	"testing"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/compensation/compensationtest"
)

// sharedRedis is one standalone Redis for every test, started by the first
// that needs it; each test gets its own key prefix (compensationtest.NewEnv).
var sharedRedis = &redisharness.Shared{}

func TestMain(m *testing.M) { os.Exit(compensationtest.RunWithRedis(m, sharedRedis)) }
