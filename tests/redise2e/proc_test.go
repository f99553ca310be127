package redise2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/idgen/idgen/api/apitest"
	"github.com/idgen/idgen/tests/internal/apicheck"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/tests/internal/idgenproc"
)

// readyTimeout bounds an idgen start (ZooKeeper session, worker slot, first
// range claim, Redis connection) on a busy box.
const readyTimeout = 60 * time.Second

// deployment is what the idgen instances of one test share: ZooKeeper (and
// a root of the test's own), the Redis flags and one metadata key file.
type deployment struct {
	t         testing.TB
	zk, root  string
	keyFile   string
	redisArgs []string
	client    *http.Client
}

// newDeployment prepares instances using redisArgs (--redis-addr and
// friends).
func newDeployment(t testing.TB, redisArgs ...string) *deployment {
	t.Helper()
	zkConnect, root := zooKeeper(t)
	return &deployment{
		t: t, zk: zkConnect, root: root,
		keyFile:   writeKeyFile(t),
		redisArgs: redisArgs,
		client:    checkedClient(t, proc.NewClient(64, requestTimeout)),
	}
}

// standaloneDeployment starts a standalone Redis with o for the test and
// prepares instances using it (--redis-addr).
func standaloneDeployment(t testing.TB, o redisharness.Options) (*redisharness.Server, *deployment) {
	t.Helper()
	srv := redisharness.StartStandaloneT(t, o)
	return srv, newDeployment(t, "--redis-addr", srv.Addr())
}

// checkedClient is c with every answer checked against api/openapi.json
// (apitest.Transport): one the document does not describe fails tb.
func checkedClient(tb apitest.TB, c *http.Client) *http.Client {
	c.Transport = apitest.Transport(c.Transport, tb)
	return c
}

// writeKeyFile writes a metadata key file ("<key-id> <64 hex>") shared by
// the instances of a test.
func writeKeyFile(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	path := filepath.Join(t.TempDir(), "metadata.keys")
	if err := os.WriteFile(path, []byte("k1 "+hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// args returns the full command line of an instance listening on listen.
func (d *deployment) args(listen, dataDir string, extra []string) []string {
	a := []string{"serve", "--dev",
		"--listen", listen, "--data-dir", dataDir,
		"--zookeeper", d.zk, "--zookeeper-root", d.root,
		"--metadata-key-file", d.keyFile,
		"--audit-log", filepath.Join(dataDir, "audit.log"),
	}
	a = append(a, d.redisArgs...)
	return append(a, extra...)
}

// instance is one `idgen serve` child process (idgenproc).
type instance struct {
	name    string
	url     string
	args    []string
	dataDir string // also holds audit.log
	p       *proc.Process
	c       *idgenproc.Child
}

// start starts an instance and waits until /health/ready answers 200. env
// entries (KEY=VALUE) are added to a child environment without IDGEN_*.
func (d *deployment) start(name string, env []string, extra ...string) *instance {
	d.t.Helper()
	c, err := idgenproc.Launch(context.Background(), idgenproc.Options{
		Name: name, Bin: idgenBin, Env: env, Client: d.client, ReadyTimeout: readyTimeout, DataDir: d.t.TempDir,
		Args: func(listen, dataDir string) []string { return d.args(listen, dataDir, extra) },
	})
	if err != nil {
		d.t.Fatal(err)
	}
	in := &instance{name: name, url: c.URL, args: c.Args, dataDir: c.DataDir, p: c.Proc, c: c}
	d.t.Cleanup(func() { in.stop(d.t) })
	return in
}

// startTwo starts idgen-a and idgen-b (start), both with extra flags.
func (d *deployment) startTwo(extra ...string) []*instance {
	d.t.Helper()
	return []*instance{d.start("idgen-a", nil, extra...), d.start("idgen-b", nil, extra...)}
}

// stop sends SIGTERM, expects exit code 0 within the shutdown grace, and
// shows the instance's stderr when the test failed. Only the first call
// acts.
func (in *instance) stop(t testing.TB) {
	in.c.Stop(t, os.Getenv("REDISE2E_LOGS") == "1", 40, 120)
}

// runToExit runs an instance that is expected to refuse to start and
// returns its exit code and stderr. It fails t when the process is still
// running after timeout (it is killed then).
func (d *deployment) runToExit(name string, env []string, timeout time.Duration, extra ...string) (int, string) {
	d.t.Helper()
	addr, err := proc.FreeAddr()
	if err != nil {
		d.t.Fatal(err)
	}
	p, err := proc.Start(idgenBin, proc.Options{Args: d.args(addr, d.t.TempDir(), extra), Env: env, DropEnv: []string{"IDGEN_"}})
	if err != nil {
		d.t.Fatal(err)
	}
	code, err := p.Wait(timeout)
	if err != nil {
		_ = p.Kill()
		d.t.Fatalf("%s: still running after %v (expected it to refuse to start): %v\n%s", name, timeout, err, idgenproc.Excerpt(p.Stderr(), 20, 40))
	}
	return code, p.Stderr()
}

// TestClientChecksEveryAnswer: the suite's client holds every answer to
// the OpenAPI document, not a sample, and fails the test on one it does
// not describe.
func TestClientChecksEveryAnswer(t *testing.T) {
	apicheck.Prove(t, false, func(tb apitest.TB, _ *httptest.Server) *http.Client {
		return checkedClient(tb, proc.NewClient(4, requestTimeout))
	})
}
