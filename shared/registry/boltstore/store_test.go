package boltstore

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/shared/registry/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRegistry runs the registry conformance suite.
func TestRegistry(t *testing.T) {
	registrytest.Run(t, func(_ *testing.T, dir string) (*Store, error) {
		return Open(Config{Dir: dir, Shard: registrytest.Shard})
	})
}

func TestSecondOpenTimesOut(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(Config{Dir: dir, OpenTimeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("a second process could open the same store")
	}
}

func TestConfigValidate(t *testing.T) {
	registrytest.ValidateConfig(t, func(shard uint8, maxBatch int) Config { return Config{Shard: shard, MaxBatch: maxBatch} },
		registrytest.ConfigCase[Config]{Name: "negative close timeout", Cfg: Config{CloseTimeout: -1}},
		registrytest.ConfigCase[Config]{Name: "negative open timeout", Cfg: Config{OpenTimeout: -1}})
}
