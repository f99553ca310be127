package infra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/zkharness"
)

// The backup scripts are tested against real servers started by the
// harnesses: a backup is taken, verified by the server's own tools, and
// restored into a fresh server that must hold the same data.

var (
	redisBackupScript = filepath.Join("..", "scripts", "backup-redis.sh")
	zkBackupScript    = filepath.Join("..", "scripts", "backup-zookeeper.sh")
	// backupLib is sourced by both scripts.
	backupLib = filepath.Join("..", "scripts", "backup-lib.sh")
)

// scriptResult is one run of a backup script.
type scriptResult struct {
	stdout, stderr string
	code           int
}

// backupPath is the path the script printed last on stdout.
func (r scriptResult) backupPath() string {
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	return lines[len(lines)-1]
}

// runScript runs a script with the test's environment plus env, bounded by
// four minutes. A non-zero exit is returned in code, not as a failure.
func runScript(t *testing.T, script string, env []string, args ...string) scriptResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := scriptResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v\n%s", script, err, errb.String())
	}
	return res
}

// mustBackup runs script and fails unless it kept a backup.
func mustBackup(t *testing.T, script string, env []string, args ...string) string {
	t.Helper()
	res := runScript(t, script, env, args...)
	if res.code != 0 {
		t.Fatalf("%s %v: exit %d\nstderr:\n%s", script, args, res.code, res.stderr)
	}
	dir := res.backupPath()
	if _, err := os.Stat(filepath.Join(dir, "backup.info")); err != nil {
		t.Fatalf("%s printed %q, which is not a backup: %v\nstderr:\n%s", script, dir, err, res.stderr)
	}
	t.Logf("%s: %s", filepath.Base(script), dir)
	return dir
}

// backupDirs lists the backups named name under root, oldest first.
func backupDirs(t *testing.T, root, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), name+"-") {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

func TestBackupScriptsLint(t *testing.T) {
	t.Parallel()
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		shellcheck = "/usr/bin/shellcheck"
	}
	if _, err := os.Stat(shellcheck); err != nil {
		t.Fatalf("shellcheck is missing (scripts/install-deps.sh installs it): %v", err)
	}
	for _, script := range []string{redisBackupScript, zkBackupScript} {
		t.Run(filepath.Base(script), func(t *testing.T) {
			if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
				t.Errorf("bash -n: %v\n%s", err, out)
			}
			if out, err := exec.Command(shellcheck, "--severity=info", "--external-sources", script).CombinedOutput(); err != nil {
				t.Errorf("shellcheck: %v\n%s", err, out)
			}
			src, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(src), "set -euo pipefail") {
				t.Error("missing set -euo pipefail")
			}
			if st, err := os.Stat(script); err != nil || st.Mode()&0o111 == 0 {
				t.Errorf("%s is not executable", script)
			}
		})
	}
	t.Run(filepath.Base(backupLib), func(t *testing.T) {
		if out, err := exec.Command(shellcheck, "--severity=info", backupLib).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	})
}

// redisData writes a known data set and returns the string keys' values.
func redisData(t *testing.T, ctx context.Context, c *redis.Client) map[string]string {
	t.Helper()
	want := map[string]string{}
	p := c.Pipeline()
	for i := range 500 {
		k, v := fmt.Sprintf("idgen:test:%03d", i), fmt.Sprintf("value-%d", i*7)
		want[k] = v
		p.Set(ctx, k, v, 0)
	}
	p.HSet(ctx, "idgen:r:{0:1}", "5", "record-5", "6", "record-6")
	p.Set(ctx, "idgen:hw:{0}", "00000000000f4240", 0)
	p.XAdd(ctx, &redis.XAddArgs{Stream: "idgen:failures", Values: map[string]any{"id": "x", "reason": "test"}})
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	want["idgen:hw:{0}"] = "00000000000f4240"
	return want
}

// checkRedisData fails t unless c holds want (and the hash and stream of
// redisData); with exact, nothing else either.
func checkRedisData(t *testing.T, ctx context.Context, c *redis.Client, want map[string]string, exact bool) {
	t.Helper()
	for k, v := range want {
		got, err := c.Get(ctx, k).Result()
		if err != nil || got != v {
			t.Fatalf("restored %s = %q, %v; want %q", k, got, err, v)
		}
	}
	if got, err := c.HGet(ctx, "idgen:r:{0:1}", "6").Result(); err != nil || got != "record-6" {
		t.Fatalf("restored hash field = %q, %v", got, err)
	}
	if n, err := c.XLen(ctx, "idgen:failures").Result(); err != nil || n != 1 {
		t.Fatalf("restored stream length = %d, %v", n, err)
	}
	if exact {
		n, err := c.DBSize(ctx).Result()
		if err != nil || n != int64(len(want)+2) {
			t.Fatalf("restored DBSIZE = %d, %v; want %d", n, err, len(want)+2)
		}
	}
}

// restoreRedis starts a fresh redis-server, stops it, puts the backup's
// files into its data directory and starts it again on them.
func restoreRedis(t *testing.T, ctx context.Context, backup string, aof bool) *redis.Client {
	t.Helper()
	fresh := redisharness.StartStandaloneT(t, redisharness.Options{AppendFsyncAlways: aof})
	if err := fresh.Kill(); err != nil {
		t.Fatal(err)
	}
	if aof {
		dst := filepath.Join(fresh.Dir(), "appendonlydir")
		if err := os.RemoveAll(dst); err != nil {
			t.Fatal(err)
		}
		copyDir(t, filepath.Join(backup, "appendonlydir"), dst)
	} else {
		copyFile(t, filepath.Join(backup, "dump.rdb"), filepath.Join(fresh.Dir(), "dump.rdb"))
	}
	if err := fresh.Restart(ctx); err != nil {
		t.Fatalf("restart on the backup: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: fresh.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestBackupRedis(t *testing.T) {
	t.Parallel()
	const password = "backup-test-secret-0123"
	srv := redisharness.StartStandaloneT(t, redisharness.Options{Password: password})
	ctx := t.Context()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: password})
	t.Cleanup(func() { c.Close() })
	want := redisData(t, ctx, c)

	pwFile := filepath.Join(t.TempDir(), "redis.password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(srv.Addr(), ":")
	root := t.TempDir()
	env := []string{"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + port, "REDIS_PASSWORD_FILE=" + pwFile,
		"REDISCLI_AUTH=", "REDIS_PASSWORD="}
	common := []string{"--backup-dir", root, "--name", "registry", "--keep", "3"}

	var first string
	t.Run("bgsave", func(t *testing.T) {
		// A stale dump.rdb on disk, more writes, and a slow BGSAVE (2 ms a
		// key): a script that does not wait for its own BGSAVE copies the
		// stale file and loses the late keys.
		if err := c.Save(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			k := fmt.Sprintf("idgen:late:%02d", i)
			want[k] = "late"
			if err := c.Set(ctx, k, "late", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.ConfigSet(ctx, "rdb-key-save-delay", "2000").Err(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		dir := mustBackup(t, redisBackupScript, env, common...)
		if err := c.ConfigSet(ctx, "rdb-key-save-delay", "0").Err(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d < 500*time.Millisecond {
			t.Errorf("backup took %v: it cannot have waited for a BGSAVE of %d keys at 2 ms each", d, len(want))
		}
		first = dir
		dump := filepath.Join(dir, "dump.rdb")
		if out, err := exec.Command("redis-check-rdb", dump).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("RDB looks OK")) {
			t.Fatalf("redis-check-rdb %s: %v\n%s", dump, err, out)
		}
		info, err := os.ReadFile(filepath.Join(dir, "backup.info"))
		if err != nil || !bytes.Contains(info, []byte("method=bgsave")) || !bytes.Contains(info, []byte("keys read")) {
			t.Fatalf("backup.info: %v\n%s", err, info)
		}
		cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("SHA256SUMS: %v\n%s", err, out)
		}
		checkRedisData(t, ctx, restoreRedis(t, ctx, dir, false), want, true)
	})

	t.Run("remote", func(t *testing.T) {
		dir := mustBackup(t, redisBackupScript, env, append(common, "--method", "remote")...)
		checkRedisData(t, ctx, restoreRedis(t, ctx, dir, false), want, true)
	})

	t.Run("password only from file or environment", func(t *testing.T) {
		res := runScript(t, redisBackupScript, env, append(common, "--password", password)...)
		if res.code != 2 || !strings.Contains(res.stderr, "never taken on the command line") {
			t.Fatalf("--password: exit %d, stderr:\n%s", res.code, res.stderr)
		}
		src, err := os.ReadFile(redisBackupScript)
		if err != nil {
			t.Fatal(err)
		}
		// redis-cli gets the password through REDISCLI_AUTH, never -a.
		for _, bad := range []string{` -a "`, ` --pass "`, `-a "$`} {
			if strings.Contains(string(src), bad) {
				t.Errorf("script passes a password on argv (%q)", bad)
			}
		}
		// Without the password Redis refuses, and nothing is kept.
		noPW := []string{"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + port, "REDIS_PASSWORD_FILE=", "REDISCLI_AUTH=", "REDIS_PASSWORD="}
		before := backupDirs(t, root, "registry")
		res = runScript(t, redisBackupScript, noPW, common...)
		if res.code != 1 || !strings.Contains(res.stderr, "NOAUTH") {
			t.Fatalf("no password: exit %d, stderr:\n%s", res.code, res.stderr)
		}
		if after := backupDirs(t, root, "registry"); len(after) != len(before) {
			t.Fatalf("a failed run left a backup: %v", after)
		}
		// REDIS_PASSWORD works as well.
		withEnv := []string{"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + port, "REDIS_PASSWORD_FILE=", "REDISCLI_AUTH=", "REDIS_PASSWORD=" + password}
		mustBackup(t, redisBackupScript, withEnv, "--backup-dir", t.TempDir(), "--keep", "1")
	})

	t.Run("a backup that does not verify is not kept", func(t *testing.T) {
		stub := t.TempDir()
		fake := "#!/bin/sh\necho 'fake redis-check-rdb: CRC error'\nexit 1\n"
		if err := os.WriteFile(filepath.Join(stub, "redis-check-rdb"), []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
		before := backupDirs(t, root, "registry")
		res := runScript(t, redisBackupScript, append(env, "PATH="+stub+":"+os.Getenv("PATH")), common...)
		if res.code == 0 || !strings.Contains(res.stderr, "redis-check-rdb failed") {
			t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
		}
		if after := backupDirs(t, root, "registry"); len(after) != len(before) {
			t.Fatalf("an unverified backup was kept: %v (before %v)", after, before)
		}
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".partial") {
				t.Errorf("partial directory left behind: %s", e.Name())
			}
		}
	})

	t.Run("retention", func(t *testing.T) {
		// Not backups of this name: never touched.
		decoys := []string{filepath.Join(root, "registry-notes"), filepath.Join(root, "other-20200101T000000Z")}
		// Older backups of this name, made within one second: deleted in
		// the order <time>, <time>-2, <time>-10.
		f0 := filepath.Join(root, "registry-20200101T000000Z")
		f2, f10 := f0+"-2", f0+"-10"
		for _, d := range append([]string{f0, f2, f10}, decoys...) {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "backup.info"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		exists := func(d string) bool { _, err := os.Stat(d); return err == nil }
		// 2 real + 3 old + 1 new = 6 with --keep 5: f0 goes.
		mustBackup(t, redisBackupScript, env, "--backup-dir", root, "--name", "registry", "--keep", "5")
		if exists(f0) || !exists(f2) || !exists(f10) {
			t.Fatalf("--keep 5: want only %s deleted; now %v", f0, backupDirs(t, root, "registry"))
		}
		mustBackup(t, redisBackupScript, env, "--backup-dir", root, "--name", "registry", "--keep", "5")
		if exists(f2) || !exists(f10) {
			t.Fatalf("--keep 5 again: want %s deleted before %s; now %v", f2, f10, backupDirs(t, root, "registry"))
		}
		// --keep 3 of 6: f10 and the first real backup go.
		mustBackup(t, redisBackupScript, env, "--backup-dir", root, "--name", "registry", "--keep", "3")
		if exists(f10) || exists(first) {
			t.Fatalf("--keep 3: %s and %s should be gone; now %v", f10, first, backupDirs(t, root, "registry"))
		}
		var kept []string
		for _, d := range backupDirs(t, root, "registry") {
			if d != decoys[0] {
				kept = append(kept, d)
			}
		}
		if len(kept) != 3 {
			t.Fatalf("kept %d backups, want 3: %v", len(kept), kept)
		}
		// Age: a backup made "ten days ago" goes with --max-age-days 5.
		old := kept[0]
		tenDays := time.Now().Add(-240 * time.Hour)
		if err := os.Chtimes(filepath.Join(old, "backup.info"), tenDays, tenDays); err != nil {
			t.Fatal(err)
		}
		newest := mustBackup(t, redisBackupScript, env, append(common, "--keep", "0", "--max-age-days", "5")...)
		if exists(old) {
			t.Fatalf("backup older than --max-age-days survived: %s", old)
		}
		if !exists(kept[1]) || !exists(newest) {
			t.Fatalf("a recent backup was deleted: %v", backupDirs(t, root, "registry"))
		}
		for _, d := range decoys {
			if !exists(d) {
				t.Fatalf("retention deleted %s, which is not one of its backups", d)
			}
		}
	})

	t.Run("require replica", func(t *testing.T) {
		res := runScript(t, redisBackupScript, env, append(common, "--require-replica")...)
		if res.code != 3 {
			t.Fatalf("--require-replica against a primary: exit %d, stderr:\n%s", res.code, res.stderr)
		}
	})
}

func TestBackupRedisAOF(t *testing.T) {
	t.Parallel()
	srv := redisharness.StartStandaloneT(t, redisharness.Options{AppendFsyncAlways: true})
	ctx := t.Context()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	want := redisData(t, ctx, c)

	// Writes go on while the backup copies the AOF: the copy must still
	// verify and hold everything written before the backup started.
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		written atomic.Int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if err := c.Set(ctx, "idgen:live:"+strconv.Itoa(i), i, 0).Err(); err != nil {
				return
			}
			written.Add(1)
		}
	}()
	_, port, _ := strings.Cut(srv.Addr(), ":")
	env := []string{"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + port, "REDISCLI_AUTH=", "REDIS_PASSWORD=", "REDIS_PASSWORD_FILE="}
	dir := mustBackup(t, redisBackupScript, env, "--backup-dir", t.TempDir(), "--method", "aof")
	stop.Store(true)
	wg.Wait()
	t.Logf("%d writes during the backup", written.Load())

	manifests, _ := filepath.Glob(filepath.Join(dir, "appendonlydir", "*.manifest"))
	if len(manifests) != 1 {
		t.Fatalf("manifests in the backup: %v", manifests)
	}
	if out, err := exec.Command("redis-check-aof", manifests[0]).CombinedOutput(); err != nil {
		t.Fatalf("redis-check-aof: %v\n%s", err, out)
	}
	restored := restoreRedis(t, ctx, dir, true)
	checkRedisData(t, ctx, restored, want, false)
}

// zkConnect opens a session to addrs and waits until it is established.
func zkConnect(t *testing.T, addrs []string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect(addrs, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(zkTestLogger{t}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return conn
			}
		case <-timeout:
			t.Fatalf("no ZooKeeper session with %v", addrs)
		}
	}
}

type zkTestLogger struct{ t *testing.T }

func (l zkTestLogger) Printf(format string, args ...any) { l.t.Logf("zk: "+format, args...) }

func TestBackupZooKeeper(t *testing.T) {
	t.Parallel()
	ens := zkharness.StartT(t, zkharness.Options{Servers: 3})
	ctx := t.Context()
	conn := zkConnect(t, ens.Addrs())
	acl := zk.WorldACL(zk.PermAll)
	for _, p := range []string{"/idgen", "/idgen/shards", "/idgen/shards/0", "/bulk"} {
		if _, err := conn.Create(p, nil, 0, acl); err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
	}
	if _, err := conn.Create("/idgen/shards/0/counter", []byte(`{"next":1000,"token":"a:1"}`), 0, acl); err != nil {
		t.Fatal(err)
	}
	// More transactions than snapCount (1000 in the harness), so every
	// server has written a snapshot beyond the initial one and the backup
	// needs both a snapshot and the logs after it.
	const bulk = 1200
	for i := range bulk {
		if _, err := conn.Create(fmt.Sprintf("/bulk/n-%04d", i), []byte(strconv.Itoa(i)), 0, acl); err != nil {
			t.Fatalf("create bulk %d: %v", i, err)
		}
	}
	follower, leader := -1, -1
	for i := range 3 {
		mode, err := ens.Mode(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		switch mode {
		case "leader":
			leader = i
		case "follower":
			follower = i
		}
	}
	if follower < 0 || leader < 0 {
		t.Fatalf("no leader/follower in the ensemble (leader %d, follower %d)", leader, follower)
	}
	dataDir := func(i int) string { return filepath.Join(ens.Dir(), "zk"+strconv.Itoa(i), "data") }

	// Filler writes until the follower starts a new snapshot (at most
	// snapCount of them); the next snapshot is then at least snapCount/2
	// transactions away, so the last writes below are only in a log that
	// starts after the backup's snapshot: a backup without the logs after
	// its snapshot loses them.
	snapBefore := newestZxid(t, dataDir(follower), "snapshot.*")
	if _, err := conn.Create("/filler", nil, 0, acl); err != nil {
		t.Fatal(err)
	}
	for i := 0; newestZxid(t, dataDir(follower), "snapshot.*") == snapBefore; i++ {
		if i == 2000 {
			t.Fatalf("follower wrote no new snapshot after %d writes", i)
		}
		if _, err := conn.Create(fmt.Sprintf("/filler/f-%04d", i), nil, 0, acl); err != nil {
			t.Fatal(err)
		}
	}
	counter := []byte(`{"next":987654321,"token":"b:7"}`)
	if _, err := conn.Set("/idgen/shards/0/counter", counter, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create("/after", []byte("last write"), 0, acl); err != nil {
		t.Fatal(err)
	}
	// The follower has applied everything up to /after once a sync through
	// it returns.
	fconn := zkConnect(t, []string{ens.Addrs()[follower]})
	if _, err := fconn.Sync("/after"); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := fconn.Exists("/after"); err != nil || !ok {
		t.Fatalf("follower has no /after: %v %v", ok, err)
	}

	root := t.TempDir()
	args := func(i int, extra ...string) []string {
		return append([]string{"--data-dir", dataDir(i), "--server", ens.Addrs()[i],
			"--backup-dir", root, "--name", "zk", "--keep", "2"}, extra...)
	}

	var first, backup string
	t.Run("follower", func(t *testing.T) {
		backup = mustBackup(t, zkBackupScript, nil, args(follower, "--require-follower")...)
		first = backup
		info, err := os.ReadFile(filepath.Join(backup, "backup.info"))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("backup.info:\n%s", info)
		for _, w := range []string{"mode=follower", "loaded_zxid=0x", "snapshot=snapshot."} {
			if !bytes.Contains(info, []byte(w)) {
				t.Errorf("backup.info lacks %q:\n%s", w, info)
			}
		}
		snaps, _ := filepath.Glob(filepath.Join(backup, "version-2", "snapshot.*"))
		logs, _ := filepath.Glob(filepath.Join(backup, "version-2", "log.*"))
		if len(snaps) != 1 || len(logs) == 0 {
			t.Fatalf("backup holds snapshots %v and logs %v; want one snapshot and its logs", snaps, logs)
		}
		if filepath.Base(snaps[0]) == "snapshot.0" {
			t.Errorf("backup took the initial empty snapshot; a newer one was expected after %d writes", bulk)
		}
		cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
		cmd.Dir = backup
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("SHA256SUMS: %v\n%s", err, out)
		}
	})
	if backup == "" {
		t.FailNow()
	}

	t.Run("leader refused with --require-follower", func(t *testing.T) {
		before := backupDirs(t, root, "zk")
		res := runScript(t, zkBackupScript, nil, args(leader, "--require-follower")...)
		if res.code != 3 || !strings.Contains(res.stderr, "not a follower") {
			t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
		}
		if after := backupDirs(t, root, "zk"); len(after) != len(before) {
			t.Fatalf("refused run left a backup: %v", after)
		}
	})

	t.Run("corrupt log is not kept", func(t *testing.T) {
		// A copy of a data dir whose newest log has a flipped byte in a
		// transaction: TxnLogToolkit reports a CRC error on every try.
		bad := t.TempDir()
		copyDir(t, dataDir(follower), bad)
		logs, _ := filepath.Glob(filepath.Join(bad, "version-2", "log.*"))
		sort.Slice(logs, func(i, j int) bool { return zxidOf(logs[i]) < zxidOf(logs[j]) })
		f, err := os.OpenFile(logs[len(logs)-1], os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, 40); err != nil {
			t.Fatal(err)
		}
		f.Close()
		res := runScript(t, zkBackupScript, nil, "--data-dir", bad, "--backup-dir", t.TempDir(), "--name", "bad")
		if res.code != 1 || !strings.Contains(res.stderr, "CRC") {
			t.Fatalf("corrupt log: exit %d, stderr:\n%s", res.code, res.stderr)
		}
	})

	// restored starts a fresh standalone ZooKeeper on a copy of a backup's
	// version-2/ and checks it holds everything written above.
	restored := func(t *testing.T, backup string) {
		t.Helper()
		dir := t.TempDir()
		dst := filepath.Join(dir, "zk0", "data", "version-2")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		copyDir(t, filepath.Join(backup, "version-2"), dst)
		fresh := zkharness.StartT(t, zkharness.Options{Servers: 1, Dir: dir})
		rc := zkConnect(t, fresh.Addrs())
		got, st, err := rc.Get("/idgen/shards/0/counter")
		if err != nil || !bytes.Equal(got, counter) || st.Version != 1 {
			t.Fatalf("restored counter = %s (version %v), %v; want %s at version 1", got, st, err, counter)
		}
		kids, _, err := rc.Children("/bulk")
		if err != nil || len(kids) != bulk {
			t.Fatalf("restored /bulk has %d children, %v; want %d", len(kids), err, bulk)
		}
		if v, _, err := rc.Get("/after"); err != nil || string(v) != "last write" {
			t.Fatalf("restored /after = %q, %v", v, err)
		}
	}

	t.Run("restore into a fresh ZooKeeper", func(t *testing.T) { restored(t, backup) })

	t.Run("incomplete newest snapshot", func(t *testing.T) {
		// A snapshot still being written (here: cut in half) must be passed
		// over for the one before, and then every log after that one is
		// needed to reach the last writes.
		dir := t.TempDir()
		copyDir(t, dataDir(follower), dir)
		snaps, _ := filepath.Glob(filepath.Join(dir, "version-2", "snapshot.*"))
		if len(snaps) < 2 {
			t.Fatalf("follower has snapshots %v; want at least two", snaps)
		}
		sort.Slice(snaps, func(i, j int) bool { return zxidOf(snaps[i]) < zxidOf(snaps[j]) })
		newest := snaps[len(snaps)-1]
		st, err := os.Stat(newest)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(newest, st.Size()/2); err != nil {
			t.Fatal(err)
		}
		b := mustBackup(t, zkBackupScript, nil, "--data-dir", dir, "--backup-dir", t.TempDir(), "--name", "cut")
		got, _ := filepath.Glob(filepath.Join(b, "version-2", "snapshot.*"))
		if len(got) != 1 || filepath.Base(got[0]) != filepath.Base(snaps[len(snaps)-2]) {
			t.Fatalf("backup took snapshot %v, want %s", got, filepath.Base(snaps[len(snaps)-2]))
		}
		restored(t, b)
	})

	t.Run("retention", func(t *testing.T) {
		mustBackup(t, zkBackupScript, nil, args(follower, "--no-load-check")...)
		mustBackup(t, zkBackupScript, nil, args(follower, "--no-load-check")...)
		got := backupDirs(t, root, "zk")
		if len(got) != 2 {
			t.Fatalf("kept %v, want the newest 2", got)
		}
		for _, d := range got {
			if d == first {
				t.Fatalf("the oldest backup survived --keep 2: %v", got)
			}
		}
	})
}

// newestZxid is the highest zxid among the files of dataDir/version-2
// matching glob, 0 when none.
func newestZxid(t *testing.T, dataDir, glob string) uint64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "version-2", glob))
	if err != nil {
		t.Fatal(err)
	}
	var top uint64
	for _, f := range files {
		top = max(top, zxidOf(f))
	}
	return top
}

// zxidOf reads the hex zxid of a log.<hex> or snapshot.<hex> file name.
func zxidOf(path string) uint64 {
	_, hex, _ := strings.Cut(filepath.Base(path), ".")
	v, _ := strconv.ParseUint(hex, 16, 64)
	return v
}
