package redise2e

import (
	"context"
	"crypto/tls"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/tests/internal/idledger"
)

// keyPrefix starts every key of the registry (idledger.BucketOf).
const keyPrefix = redisstore.DefaultPrefix

// bucketOf is where the registry holds id.
func bucketOf(id idcodec.ID) (key, field string) { return idledger.BucketOf(id) }

// redisOpts are how the tests' own client connects.
type redisOpts struct {
	username, password string
	tls                *tls.Config
}

func clientOptions(addrs []string, o redisOpts) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs: addrs, Username: o.username, Password: o.password, TLSConfig: o.tls,
		DisableIdentity: true, ReadTimeout: 10 * time.Second,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// rawClient is a plain client of one server, for inspecting what idgen
// wrote; closed at the end of the test.
func rawClient(t testing.TB, addr string, o redisOpts) *redis.Client {
	t.Helper()
	c := redis.NewClient(clientOptions([]string{addr}, o).Simple())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// clusterClient is a Redis Cluster client over addrs.
func clusterClient(t testing.TB, addrs []string) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(clientOptions(addrs, redisOpts{}).Cluster())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// checkRegistered fails t unless every ID of ids is registered in c.
func checkRegistered(t testing.TB, c redis.Cmdable, ids []idcodec.ID, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bad, err := idledger.Unregistered(ctx, c, ids)
	if err != nil {
		t.Fatalf("reading the registry: %v", err)
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d %s are not in the registry, e.g.:\n%s", len(bad), len(ids), what, strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
}

// usedMemory is INFO memory's used_memory.
func usedMemory(t testing.TB, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}
