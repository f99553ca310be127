package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/shared/idcodec"
)

// fasthttp's own background goroutines sleep out their period before they
// see a stop: the server date ticker (process-wide, by design), the worker
// pool's idle-worker cleaner and the client's idle-connection cleaner.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, c config)
	}{
		{name: "defaults", check: func(t *testing.T, c config) {
			if c.rounds != 7 || c.warmup != 10*time.Second || c.duration != 5*time.Second || c.conns != 64 || c.latConns != 32 || c.out != "bench" || c.benchtime != time.Second || c.profileSecs != 4 {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "quick shortens what was not given", args: []string{"-quick", "-duration", "2s"}, check: func(t *testing.T, c config) {
			if c.duration != 2*time.Second || c.warmup != time.Second || c.benchtime != 50*time.Millisecond || c.rounds != 3 {
				t.Errorf("quick = %+v", c)
			}
		}},
		{name: "quick keeps the connection counts", args: []string{"-quick"}, check: func(t *testing.T, c config) {
			if c.conns != 64 || c.latConns != 32 || c.duration != time.Second {
				t.Errorf("quick = %+v", c)
			}
		}},
		{name: "connection counts", args: []string{"-connections", "128", "-latency-connections", "16"}, check: func(t *testing.T, c config) {
			if c.conns != 128 || c.latConns != 16 {
				t.Errorf("conns %d, latency conns %d", c.conns, c.latConns)
			}
		}},
		{name: "fewer than three rounds", args: []string{"-rounds", "2"}, wantErr: true},
		{name: "one latency connection", args: []string{"-latency-connections", "1"}, wantErr: true},
		{name: "fractional wrk duration", args: []string{"-duration", "1500ms"}, wantErr: true},
		{name: "nothing to measure", args: []string{"-skip-http", "-skip-inprocess"}, wantErr: true},
		{name: "stray argument", args: []string{"extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if tt.args != nil && tt.args[0] == "-rounds" && !errors.Is(err, errRounds) {
				t.Errorf("error = %v, want errRounds", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestPeersUnique checks that every in-process peer really generates IDs
// (distinct values), so the ns/ID of the table measure ID generation.
func TestPeersUnique(t *testing.T) {
	ps, closeFn, err := peers()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	want := []string{"idgen hot path", "google/uuid NewV7", "google/uuid NewRandom", "bwmarrin/snowflake", "sony/sonyflake", "rs/xid"}
	if len(ps) != len(want) {
		t.Fatalf("%d peers, want %d", len(ps), len(want))
	}
	for i, p := range ps {
		if p.name != want[i] {
			t.Errorf("peer %d = %q, want %q", i, p.name, want[i])
		}
		t.Run(p.name, func(t *testing.T) {
			seen := map[[16]byte]bool{}
			for range 1000 {
				id, err := p.next()
				if err != nil {
					t.Fatal(err)
				}
				if id == ([16]byte{}) || seen[id] {
					t.Fatalf("zero or repeated ID %x after %d", id, len(seen))
				}
				seen[id] = true
			}
		})
	}
	// The hot path's IDs are ours.
	id, _ := ps[0].next()
	if !idcodec.ID(id).Valid() {
		t.Errorf("hot path ID %x is not a valid idgen ID", id)
	}
}

// TestInProcessQuick runs the in-process measurement as -quick does.
func TestInProcessQuick(t *testing.T) {
	res := inProcess(3, 5*time.Millisecond)
	if len(res) != 6 {
		t.Fatalf("%d results, want 6", len(res))
	}
	for _, r := range res {
		if r.SerialNs <= 0 || r.ParallelNs <= 0 || len(r.SerialRounds) != 3 {
			t.Errorf("%s: serial %v ns, parallel %v ns, %d rounds", r.Name, r.SerialNs, r.ParallelNs, len(r.SerialRounds))
		}
	}
	if res[0].SerialAllocs != 0 {
		t.Errorf("hot path allocates %v per ID, want 0", res[0].SerialAllocs)
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestRunInProcessOnly runs the command's quick mode without HTTP and
// checks the files it writes.
func TestRunInProcessOnly(t *testing.T) {
	out := t.TempDir()
	cfg, err := parseFlags([]string{"-quick", "-skip-http", "-out", out, "-benchtime", "5ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	model := readMachine("").CPU
	dir := out + "/" + cpuDir(model)
	for _, f := range []string{"results.md", "chart.svg", "profile-hotpath.txt"} {
		b, err := os.ReadFile(dir + "/" + f)
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
		}
	}
	if idx, err := os.ReadFile(out + "/README.md"); err != nil || !strings.Contains(string(idx), "| ["+model+"]("+cpuDir(model)+"/results.md) | ") {
		t.Errorf("index: %v\n%s", err, idx)
	}
	md, _ := os.ReadFile(dir + "/results.md")
	if !strings.Contains(string(md), "| hot path ≤ 1/5 of NewV7 (ns/ID, serial) |") || !strings.Contains(string(md), "**Quick run**") ||
		!strings.Contains(string(md), "| hot path ≤ 1/5 of bwmarrin/snowflake (ns/ID, serial) | ") || !strings.Contains(string(md), "| hot path 0 allocs/ID | ") ||
		!strings.Contains(string(md), "| p99 ≤ 5 ms at 32 connections: idgen + Redis | — | — | **not measured** |") || strings.Contains(string(md), "## Latency at") {
		t.Errorf("results.md:\n%s", md)
	}
}
