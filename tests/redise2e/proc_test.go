package redise2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
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
		client:    proc.NewClient(64, requestTimeout),
	}
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

// instance is one `idgen serve` child process (own process group,
// Pdeathsig=SIGKILL; signalled only by the pid exec gave it).
type instance struct {
	name    string
	url     string
	args    []string
	dataDir string // also holds audit.log
	p       *proc.Process
	once    sync.Once
}

// start starts an instance and waits until /health/ready answers 200. env
// entries (KEY=VALUE) are added to a child environment without IDGEN_*.
func (d *deployment) start(name string, env []string, extra ...string) *instance {
	d.t.Helper()
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		in, err := d.startOnce(name, env, extra)
		if err == nil {
			return in
		}
		last = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	d.t.Fatal(last)
	return nil
}

func (d *deployment) startOnce(name string, env, extra []string) (*instance, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	dataDir := d.t.TempDir()
	args := d.args(addr, dataDir, extra)
	p, err := proc.Start(idgenBin, proc.Options{Args: args, Env: env, DropEnv: []string{"IDGEN_"}})
	if err != nil {
		return nil, err
	}
	in := &instance{name: name, url: "http://" + addr, args: args, dataDir: dataDir, p: p}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := p.WaitHTTP(ctx, d.client, in.url+"/health/ready"); err != nil {
		_ = p.Kill()
		return nil, fmt.Errorf("%s: %w\n%s", name, err, excerpt(p.Stderr(), 30, 30))
	}
	d.t.Cleanup(func() { in.stop(d.t) })
	return in, nil
}

// stop sends SIGTERM, expects exit code 0 within the shutdown grace, and
// shows the instance's stderr when the test failed. Only the first call
// acts.
func (in *instance) stop(t testing.TB) {
	in.once.Do(func() { in.stopOnce(t) })
}

func (in *instance) stopOnce(t testing.TB) {
	code, err := in.p.Terminate(30 * time.Second)
	if err != nil {
		t.Errorf("%s: %v", in.name, err)
		_ = in.p.Kill()
	} else if code != 0 {
		t.Errorf("%s: exit code %d after SIGTERM", in.name, code)
	}
	if t.Failed() || os.Getenv("REDISE2E_LOGS") == "1" {
		t.Logf("---- stderr of %s (%s) ----\n%s", in.name, strings.Join(in.args, " "), excerpt(in.p.Stderr(), 40, 120))
	}
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
		d.t.Fatalf("%s: still running after %v (expected it to refuse to start): %v\n%s", name, timeout, err, excerpt(p.Stderr(), 20, 40))
	}
	return code, p.Stderr()
}

// excerpt returns the first h and the last n lines of s.
func excerpt(s string, h, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= h+n {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:h], "\n") + fmt.Sprintf("\n[... %d lines ...]\n", len(lines)-h-n) + strings.Join(lines[len(lines)-n:], "\n")
}
