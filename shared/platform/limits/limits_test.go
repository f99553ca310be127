package limits

import (
	"bufio"
	"errors"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// writeTree writes files (path relative to root → content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		path := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCgroupMemoryMax(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    int64
		from    string
		wantErr bool
	}{
		{"no cgroup files", nil, 0, "", false},
		{"v2 namespaced root with a limit", map[string]string{
			"proc/self/cgroup":           "0::/\n",
			"sys/fs/cgroup/memory.max":   "536870912\n",
			"sys/fs/cgroup/memory/other": "",
		}, 536870912, "/sys/fs/cgroup/memory.max", false},
		{"v2 max is no limit", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		}, 0, "", false},
		{"v2 the smallest on the way up wins", map[string]string{
			"proc/self/cgroup":                           "0::/kubepods/pod1/ctr\n",
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max": "max\n",
			"sys/fs/cgroup/kubepods/pod1/memory.max":     "1073741824\n",
			"sys/fs/cgroup/kubepods/memory.max":          "8589934592\n",
		}, 1073741824, "/sys/fs/cgroup/kubepods/pod1/memory.max", false},
		{"v2 without /proc/self/cgroup reads the mount point", map[string]string{
			"sys/fs/cgroup/memory.max": "268435456",
		}, 268435456, "/sys/fs/cgroup/memory.max", false},
		{"v1 limit", map[string]string{
			"proc/self/cgroup": "12:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n",
			"sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes": "209715200\n",
		}, 209715200, "/sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes", false},
		{"v1 unlimited is the page-rounded MaxInt64", map[string]string{
			"proc/self/cgroup":                           "4:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, "", false},
		{"garbage is an error", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "lots\n",
		}, 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			got, from, err := cgroupMemoryMax(root)
			if (err != nil) != tc.wantErr || got != tc.want || from != tc.from {
				t.Errorf("cgroupMemoryMax = %d, %q, %v; want %d, %q, error %v", got, from, err, tc.want, tc.from, tc.wantErr)
			}
		})
	}
}

func TestChooseLimits(t *testing.T) {
	cgroup := map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "1000000000\n"}
	for _, tc := range []struct {
		name      string
		gomem     string
		applied   int64 // what the runtime holds
		files     map[string]string
		wantSet   int64 // -1: SetMemoryLimit never called with a limit
		wantLimit int64
		wantSrc   string
	}{
		{"GOMEMLIMIT wins over the cgroup", "300MiB", 300 << 20, cgroup, -1, 300 << 20, "GOMEMLIMIT"},
		{"GOMEMLIMIT=off is left alone", "off", math.MaxInt64, cgroup, -1, 0, "GOMEMLIMIT"},
		{"cgroup limit, 90%", "", math.MaxInt64, cgroup, 900000000, 900000000, "/sys/fs/cgroup/memory.max"},
		{"no limit anywhere", "", math.MaxInt64, nil, -1, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			set := int64(-1)
			l := choose(env{
				Root: root,
				Getenv: func(k string) string {
					if k == "GOMEMLIMIT" {
						return tc.gomem
					}
					return ""
				},
				NoFile: func() (uint64, error) { return 1024, nil },
				SetMemoryLimit: func(v int64) int64 {
					if v < 0 {
						return tc.applied
					}
					set = v
					return tc.applied
				},
			}, zaptest.NewLogger(t))
			if set != tc.wantSet || l.MemoryLimit != tc.wantLimit || l.MemorySource != tc.wantSrc {
				t.Errorf("set %d, limit %d from %q; want set %d, limit %d from %q", set, l.MemoryLimit, l.MemorySource, tc.wantSet, tc.wantLimit, tc.wantSrc)
			}
		})
	}
}

func TestMaxConns(t *testing.T) {
	for _, tc := range []struct {
		nofile uint64
		mem    int64
		want   int
	}{
		{64, 0, 16},
		{40, 0, minConns},
		{1024, 0, 752},
		{1 << 20, 0, maxConnsCap},
		{1 << 20, 512 << 20, 4096},
		{0, 0, maxConnsCap},
	} {
		if got := maxConns(tc.nofile, tc.mem); got != tc.want {
			t.Errorf("maxConns(%d, %d) = %d, want %d", tc.nofile, tc.mem, got, tc.want)
		}
	}
}

// TestBoundedListenerRefuses: connections over the bound get a 503 with
// Retry-After and are closed; one closed connection makes room again.
func TestBoundedListenerRefuses(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Limits{MaxConns: 2, log: zaptest.NewLogger(t)}
	ln := l.Listener(raw, false)
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var served []net.Conn
	for range 2 {
		dial()
		select {
		case c := <-accepted:
			defer c.Close()
			served = append(served, c)
		case <-time.After(5 * time.Second):
			t.Fatal("a connection under the bound was not accepted")
		}
	}
	over := dial()
	_ = over.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Write([]byte("POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("over the bound: %v, want a 503", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("over the bound: %s %v, want 503 JSON with Retry-After", resp.Status, resp.Header)
	}
	// The server closes its first connection (twice: counted once).
	served[0].Close()
	served[0].Close()
	dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no room after a connection closed")
	}
}

// fakeListener returns errs in turn from Accept, then blocks until closed.
type fakeListener struct {
	net.Listener
	errs  []error
	conns chan net.Conn
}

func (f *fakeListener) Accept() (net.Conn, error) {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	c, ok := <-f.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

// TestBoundedListenerRidesOutEMFILE: EMFILE and ENFILE are retried (fasthttp
// ends Serve on them), other errors are returned.
func TestBoundedListenerRidesOutEMFILE(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	f := &fakeListener{conns: make(chan net.Conn, 1), errs: []error{
		&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)},
		&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
	}}
	f.conns <- a
	ln := (&Limits{MaxConns: 8, log: zap.NewNop()}).Listener(f, true)
	c, err := ln.Accept()
	if err != nil || c == nil {
		t.Fatalf("Accept after EMFILE, ENFILE: %v, %v; want the next connection", c, err)
	}
	close(f.conns)
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
}
