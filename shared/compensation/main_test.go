package compensation_test

import (
	"os"
	"testing"

	"github.com/idgen/idgen/shared/compensation/compensationtest"
)

// redisAddr is one standalone Redis for every test; each test gets its own
// key prefix (compensationtest.NewEnv).
var redisAddr string

func TestMain(m *testing.M) { os.Exit(compensationtest.RunWithRedis(m, &redisAddr)) }
