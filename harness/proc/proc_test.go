package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestExitCodeAndOutput(t *testing.T) {
	p, err := Start("/bin/sh", Options{
		Args:    []string{"-c", `echo "out $PROC_A $PROC_B"; echo err >&2; exit 3`},
		Env:     []string{"PROC_A=a", "PROC_B=b2"},
		DropEnv: []string{"PROC_"},
	})
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3", code, err)
	}
	if p.Stdout() != "out a b2\n" || p.Stderr() != "err\n" {
		t.Errorf("stdout %q stderr %q", p.Stdout(), p.Stderr())
	}
	if _, ok := p.Signaled(); ok {
		t.Errorf("Signaled after a normal exit")
	}
}

func TestTerminateAndKill(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*Process) error
		sig  syscall.Signal
	}{
		{"terminate", func(p *Process) error { _, err := p.Terminate(10 * time.Second); return err }, syscall.SIGTERM},
		{"kill", (*Process).Kill, syscall.SIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start("/bin/sleep", Options{Args: []string{"30"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Wait(50 * time.Millisecond); !errors.Is(err, ErrTimeout) {
				t.Fatalf("Wait on a sleeping process: %v, want ErrTimeout", err)
			}
			if err := tc.stop(p); err != nil {
				t.Fatal(err)
			}
			if sig, ok := p.Signaled(); !ok || sig != tc.sig {
				t.Errorf("Signaled = %v, %v; want %v", sig, ok, tc.sig)
			}
			if err := p.Kill(); err != nil { // no-op once exited
				t.Errorf("second Kill: %v", err)
			}
		})
	}
}

func TestWaitHTTPReportsExit(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start("/bin/sh", Options{Args: []string{"-c", "echo bind failed >&2; exit 1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.WaitHTTP(ctx, NewClient(1, time.Second), "http://"+addr+"/")
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "bind failed") {
		t.Errorf("WaitHTTP = %v, want ErrExited with the stderr tail", err)
	}
}

func TestLoadStops(t *testing.T) {
	var n atomic.Int64
	l := StartLoad(context.Background(), 4, func(ctx context.Context, w int) bool {
		return n.Add(1) < 1000
	})
	l.Wait()
	if got := n.Load(); got < 1000 || got > 1003 {
		t.Errorf("%d calls, want 1000..1003", got)
	}
	l = StartLoad(context.Background(), 2, func(ctx context.Context, w int) bool {
		time.Sleep(time.Millisecond)
		return true
	})
	l.Stop()
}

func TestBufferKeepsNewest(t *testing.T) {
	var b Buffer
	chunk := strings.Repeat("x", MaxOutput/2)
	b.Write([]byte(chunk))
	b.Write([]byte(chunk))
	b.Write([]byte("tail"))
	if s := b.String(); len(s) != MaxOutput || !strings.HasSuffix(s, "tail") {
		t.Errorf("len %d, suffix %q", len(s), s[len(s)-4:])
	}
}

// TestFreePorts: the ports are distinct and free; a candidate whose
// companion is refused is passed over.
func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(5, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("ports %v repeat %d", ports, p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		ln.Close()
	}
	asked := 0
	ports, err = FreePorts(2, func(port int) net.Listener {
		if asked++; asked%2 == 1 {
			return nil
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Error(err)
			return nil
		}
		return ln
	})
	if err != nil || len(ports) != 2 || asked != 4 {
		t.Fatalf("FreePorts with companions = %v, %v after %d candidates; want 2 ports after 4", ports, err, asked)
	}
	if _, err := FreePorts(1, func(int) net.Listener { return nil }); err == nil {
		t.Fatal("FreePorts without any companion succeeded")
	}
}

// TestRetry: only errors wrapping the retryable one are retried, up to the
// attempts, each after a reset; a failed reset ends the tries.
func TestRetry(t *testing.T) {
	retryable := errors.New("port taken")
	other := errors.New("other")
	for _, tc := range []struct {
		name          string
		errs          []error // once's results, in order
		resetErr      error
		want          error
		calls, resets int
		logged        []string
	}{
		{"first try", []error{nil}, nil, nil, 1, 0, nil},
		{"second try", []error{fmt.Errorf("a: %w\nlog", retryable), nil}, nil, nil, 2, 1, []string{"1 a: port taken"}},
		{"not retryable", []error{other}, nil, other, 1, 0, nil},
		{"out of attempts", []error{retryable, retryable, retryable}, nil, retryable, 3, 2, []string{"1 port taken", "2 port taken"}},
		{"reset fails", []error{retryable}, other, other, 1, 1, []string{"1 port taken"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, resets := 0, 0
			var logged []string
			err := Retry(context.Background(), 3, retryable,
				func(context.Context) error { calls++; return tc.errs[calls-1] },
				func() error { resets++; return tc.resetErr },
				func(attempt int, first string) { logged = append(logged, fmt.Sprint(attempt, " ", first)) })
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) || calls != tc.calls || resets != tc.resets || fmt.Sprint(logged) != fmt.Sprint(tc.logged) {
				t.Errorf("Retry = %v after %d calls, %d resets, logged %q; want %v, %d, %d, %q", err, calls, resets, logged, tc.want, tc.calls, tc.resets, tc.logged)
			}
		})
	}
}
