package main

// Probes read the counters that the coordination figures are deltas of:
// the server's own Prometheus metrics, ZooKeeper's last zxid, Redis INFO,
// and CPU time from /proc.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// scrape reads the unlabelled series of a Prometheus text endpoint.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out, sc.Err()
}

// zxid is the last transaction id of a standalone ZooKeeper server (the
// Zxid line of the srvr four-letter word). Every write request, including a
// compare-and-set that fails on its version, gets a zxid and a
// transaction-log entry: the delta counts writes.
func zxid(ctx context.Context, server string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return 0, fmt.Errorf("zookeeper srvr: %w", err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return 0, fmt.Errorf("zookeeper srvr: %w", err)
	}
	reply, err := io.ReadAll(io.LimitReader(conn, 64<<10))
	if err != nil {
		return 0, fmt.Errorf("zookeeper srvr: %w", err)
	}
	for line := range strings.SplitSeq(string(reply), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Zxid: "); ok {
			return strconv.ParseInt(strings.TrimPrefix(v, "0x"), 16, 64)
		}
	}
	return 0, fmt.Errorf("zookeeper srvr %s: no Zxid line in %q", server, reply)
}

// redisInfo reads the INFO fields named in fields from addr.
func redisInfo(ctx context.Context, rdb *redis.Client, fields ...string) (map[string]float64, error) {
	s, err := rdb.Info(ctx, "stats", "memory").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		for _, f := range fields {
			if k == f {
				if x, err := strconv.ParseFloat(v, 64); err == nil {
					out[k] = x
				}
			}
		}
	}
	for _, f := range fields {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("redis INFO without %s", f)
		}
	}
	return out, nil
}

// clockTick is USER_HZ, the unit of /proc CPU times: 100 on every Linux
// architecture Go supports (sysconf needs cgo).
const clockTick = 100

// procTicks is utime+stime of pid in clock ticks (0 if it is gone).
func procTicks(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// comm (field 2) may hold spaces: count fields after its closing ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64) // field 14
	k, _ := strconv.ParseFloat(f[12], 64) // field 15
	return u + k
}

// machineBusyTicks is the busy time of all CPUs from /proc/stat.
func machineBusyTicks() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, x := range f[1:] {
		v, _ := strconv.ParseFloat(x, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are in user already
			continue
		}
		busy += v
	}
	return busy
}

// childPids lists the live children of this process whose command name is
// comm: the JVMs the ZooKeeper harness started.
func childPids(comm string) []int {
	self := os.Getpid()
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 || s[open+1:end] != comm {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == self {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// cpuUse is CPU time over a run in cores (CPU seconds per second of wall
// time): the server under test, its Redis servers, ZooKeeper, wrk, and the
// rest of the machine (other processes: the bench shares it).
type cpuUse struct{ Server, Redis, ZK, Wrk, Rest float64 }

// cpuSnap is the CPU counters at one moment.
type cpuSnap struct {
	at                     time.Time
	machine, server, redis float64
	zk                     float64
}

func takeCPU(server int, redisPids, zkPids []int) cpuSnap {
	s := cpuSnap{at: time.Now(), machine: machineBusyTicks(), server: procTicks(server)}
	for _, p := range redisPids {
		s.redis += procTicks(p)
	}
	for _, p := range zkPids {
		s.zk += procTicks(p)
	}
	return s
}

// use turns two snapshots and wrk's own CPU time into cores.
func (a cpuSnap) use(b cpuSnap, wrk time.Duration) cpuUse {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return cpuUse{}
	}
	c := func(ticks float64) float64 { return ticks / clockTick / wall }
	u := cpuUse{Server: c(b.server - a.server), Redis: c(b.redis - a.redis), ZK: c(b.zk - a.zk), Wrk: wrk.Seconds() / wall}
	u.Rest = max(0, c(b.machine-a.machine)-u.Server-u.Redis-u.ZK-u.Wrk)
	return u
}
