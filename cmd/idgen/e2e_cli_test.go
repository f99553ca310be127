package main

// End-to-end tests of the command line: refusal without auth, IDGEN_*
// variables and their precedence, `idgen decode` and `idgen --help`.

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/shared/idcodec"
)

// TestServeRefusesToStart: without auth (or with a bad setting) serve exits
// non-zero, naming what to change, and never serves.
func TestServeRefusesToStart(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"no auth", nil, nil, "--dev"},
		{"IDGEN_DEV=false", nil, []string{"IDGEN_DEV=false"}, "--dev"},
		{"--dev=false beats IDGEN_DEV=true", []string{"--dev=false"}, []string{"IDGEN_DEV=true"}, "--dev"},
		{"shard out of range from the environment", []string{"--dev"}, []string{"IDGEN_SHARD=64"}, "shard 64"},
		{"unparsable variable", []string{"--dev"}, []string{"IDGEN_REQUEST_TIMEOUT=soon"}, "IDGEN_REQUEST_TIMEOUT"},
		{"zero sweep interval", []string{"--dev", "--sweep-interval", "0s"}, nil, "--sweep-interval"},
		{"negative request timeout", []string{"--dev"}, []string{"IDGEN_REQUEST_TIMEOUT=-1s"}, "--request-timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, err := proc.FreeAddr()
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"serve", "--listen", addr, "--data-dir", t.TempDir()}, tc.args...)
			code, _, stderr := runCLI(t, tc.env, args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit code %d, stderr %q; want non-zero and a message with %q", code, stderr, tc.want)
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("something listens on %s", addr)
			}
		})
	}
}

// TestServeEnvironment: IDGEN_DEV=true works like --dev, and flags win over
// their variables.
func TestServeEnvironment(t *testing.T) {
	t.Run("IDGEN_DEV=true works like --dev", func(t *testing.T) {
		s := startServer(t, serverOpts{noDev: true, env: []string{"IDGEN_DEV=true"}})
		ids, code, err := s.api().generate(context.Background(), "")
		if err != nil || code != http.StatusOK || len(ids) != 1 {
			t.Fatalf("generate: %v %d %v", ids, code, err)
		}
		if !strings.Contains(s.p.Stderr(), "DEVELOPMENT MODE") {
			t.Errorf("no development mode warning in the log")
		}
	})
	t.Run("flags beat IDGEN_LISTEN and IDGEN_DATA_DIR", func(t *testing.T) {
		envAddr, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		envDir := t.TempDir()
		s := startServer(t, serverOpts{env: []string{"IDGEN_LISTEN=" + envAddr, "IDGEN_DATA_DIR=" + envDir}})
		// startServer waited for /health/ready on the --listen address.
		if c, err := net.DialTimeout("tcp", envAddr, time.Second); err == nil {
			c.Close()
			t.Errorf("the service also listens on IDGEN_LISTEN %s", envAddr)
		}
		var serving map[string]any
		for _, l := range jsonLines(s.p.Stderr()) {
			if l["msg"] == "serving" {
				serving = l
			}
		}
		if serving["addr"] != s.addr || serving["data_dir"] != s.dataDir {
			t.Errorf("serving log line %v, want addr %s and data_dir %s", serving, s.addr, s.dataDir)
		}
		if ents, err := os.ReadDir(envDir); err != nil || len(ents) > 0 {
			t.Errorf("IDGEN_DATA_DIR %s was used: %v %v", envDir, ents, err)
		}
		if ents, err := os.ReadDir(s.dataDir); err != nil || len(ents) == 0 {
			t.Errorf("--data-dir %s holds no store: %v %v", s.dataDir, ents, err)
		}
	})
}

// TestDecodeCommand: `idgen decode` prints the fields of an ID as JSON and
// refuses what is not an ID of ours.
func TestDecodeCommand(t *testing.T) {
	cases := []struct {
		f    idcodec.Fields
		time string
	}{
		{idcodec.Fields{TimestampMS: 1_700_000_000_123, Worker: 7, Shard: 5, Counter: 123_456_789}, "2023-11-14T22:13:20.123Z"},
		{idcodec.Fields{TimestampMS: 1_767_225_600_000, Worker: idcodec.MaxWorker, Shard: idcodec.MaxShard, Counter: idcodec.MaxCounter}, "2026-01-01T00:00:00.000Z"},
		{idcodec.Fields{}, "1970-01-01T00:00:00.000Z"},
	}
	for _, tc := range cases {
		id, err := idcodec.Compose(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range []string{id.String(), strings.ToUpper(id.String())} {
			code, stdout, stderr := runCLI(t, nil, "decode", in)
			if code != 0 {
				t.Errorf("decode %s: exit %d, stderr %q", in, code, stderr)
				continue
			}
			var got struct {
				ID        string `json:"id"`
				Timestamp string `json:"timestamp"`
				UnixMS    uint64 `json:"unix_ms"`
				Worker    uint16 `json:"worker"`
				Shard     uint8  `json:"shard"`
				Counter   uint64 `json:"counter"`
				Version   int    `json:"version"`
			}
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Errorf("decode %s: not JSON: %v\n%s", in, err, stdout)
				continue
			}
			f := idcodec.Fields{TimestampMS: got.UnixMS, Worker: got.Worker, Shard: got.Shard, Counter: got.Counter}
			if got.ID != id.String() || got.Timestamp != tc.time || f != tc.f || got.Version != 8 {
				t.Errorf("decode %s = %+v, want id %s, timestamp %s, fields %+v, version 8", in, got, id, tc.time, tc.f)
			}
		}
	}

	bad := [][]string{
		{"decode"},
		{"decode", "01a217a6-b4f7-8000-8000-000000000000", "01a217a6-b4f7-8000-8000-000000000001"},
		{"decode", "not-an-id"},
		{"decode", ""},
		{"decode", "3f0a5b0e-8c1d-4e2f-9a3b-1c2d3e4f5a6b"},     // version 4
		{"decode", "01a217a6-b4f7-8000-c000-000000000000"},     // variant 11
		{"decode", "01a217a6b4f780008000000000000000"},         // no dashes
		{"decode", "01a217a6-b4f7-8000-8000-00000000000g"},     // not hex
		{"decode", " 01a217a6-b4f7-8000-8000-000000000000"},    // padded
		{"decode", "{01a217a6-b4f7-8000-8000-000000000000}"},   // braced
		{"decode", "urn:uuid:01a217a6-b4f7-8000-8000-0000000"}, // URN
	}
	for _, args := range bad {
		if code, stdout, stderr := runCLI(t, nil, args...); code == 0 || stderr == "" || stdout != "" {
			t.Errorf("idgen %q: exit %d, stdout %q, stderr %q; want non-zero, an error and no output", args, code, stdout, stderr)
		}
	}
}

// TestHelp: --help exits 0 and lists the subcommands; serve --help lists the
// flags with their variables.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "help"} {
		code, stdout, stderr := runCLI(t, nil, arg)
		if code != 0 || !strings.Contains(stdout, "serve") || !strings.Contains(stdout, "decode") {
			t.Errorf("idgen %s: exit %d, stdout %q, stderr %q; want 0 and serve, decode listed", arg, code, stdout, stderr)
		}
	}
	code, stdout, stderr := runCLI(t, nil, "serve", "--help")
	help := stdout + stderr
	if code != 0 {
		t.Errorf("idgen serve --help: exit %d", code)
	}
	for _, want := range []string{"-listen", "$IDGEN_LISTEN", "-data-dir", "$IDGEN_DATA_DIR", "-dev", "$IDGEN_DEV", "-shutdown-grace"} {
		if !strings.Contains(help, want) {
			t.Errorf("idgen serve --help lacks %q:\n%s", want, help)
		}
	}
}
