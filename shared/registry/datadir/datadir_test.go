package datadir

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var files = map[string]string{"pebble": "idgen.pebble", "bbolt": "idgen.db"}

func want(engine string, shard uint8, mode string) Want {
	return Want{Engine: engine, Shard: shard, Mode: mode, EngineFiles: files}
}

func open(t *testing.T, path string, w Want) *Dir {
	t.Helper()
	d, err := Open(path, w, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestLockExcludesEveryEngine(t *testing.T) {
	path := t.TempDir()
	d := open(t, path, want("pebble", 0, ModeEmbedded))
	for _, engine := range []string{"pebble", "bbolt"} {
		if _, err := Open(path, want(engine, 0, ModeEmbedded), 50*time.Millisecond); !errors.Is(err, ErrLocked) {
			t.Errorf("second Open with %s while the first holds the lock: %v, want ErrLocked", engine, err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := open(t, path, want("pebble", 0, ModeEmbedded))
	if d2.Identity().StoreID != d.Identity().StoreID {
		t.Errorf("store ID changed across opens: %s then %s", d.Identity().StoreID, d2.Identity().StoreID)
	}
}

func TestLockWaitsForThePreviousHolder(t *testing.T) {
	path := t.TempDir()
	d, err := Open(path, want("pebble", 0, ModeEmbedded), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		d.Close()
	}()
	d2, err := Open(path, want("pebble", 0, ModeEmbedded), 5*time.Second)
	if err != nil {
		t.Fatalf("Open after the holder let go: %v", err)
	}
	d2.Close()
}

func TestMismatchRefused(t *testing.T) {
	cases := []struct {
		name  string
		w     Want
		wants []string
	}{
		{"engine", want("bbolt", 0, ModeEmbedded), []string{"store engine pebble", "store engine bbolt"}},
		{"shard", want("pebble", 5, ModeEmbedded), []string{"shard 0", "shard 5"}},
		{"mode", want("pebble", 0, ModeZooKeeper), []string{"mode embedded", "mode zookeeper"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := t.TempDir()
			open(t, path, want("pebble", 0, ModeEmbedded)).Close()
			_, err := Open(path, tc.w, 50*time.Millisecond)
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("Open: %v, want ErrMismatch", err)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q: want one line naming %q", err, w)
				}
			}
		})
	}
}

func TestIdentityFile(t *testing.T) {
	path := t.TempDir()
	d := open(t, path, want("bbolt", 7, ModeEmbedded))
	b, err := os.ReadFile(filepath.Join(path, IdentityName))
	if err != nil {
		t.Fatal(err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatal(err)
	}
	if id != d.Identity() || id.Format != FormatVersion || id.Engine != "bbolt" || id.Shard != 7 || id.StoreID == "" || id.CreatedAt.IsZero() {
		t.Errorf("identity file %+v, Dir says %+v", id, d.Identity())
	}
	if _, err := os.Stat(filepath.Join(path, IdentityName+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	d.Close()
	for name, content := range map[string]string{"torn": `{"format":1,"eng`, "future format": `{"format":99,"engine":"bbolt","shard":7,"mode":"embedded"}`} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(path, IdentityName), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path, want("bbolt", 7, ModeEmbedded), 50*time.Millisecond); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrMismatch) {
				t.Errorf("Open over a %s identity: %v", name, err)
			}
		})
	}
}

// TestLegacyDirectory: a directory of the engine asked for is adopted; one
// of the other engine is refused.
func TestLegacyDirectory(t *testing.T) {
	path := t.TempDir()
	if err := os.Mkdir(filepath.Join(path, "idgen.pebble"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, want("bbolt", 0, ModeEmbedded), 50*time.Millisecond)
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "pebble") {
		t.Errorf("bbolt over a pebble directory: %v, want ErrMismatch naming pebble", err)
	}
	if _, err := os.Stat(filepath.Join(path, IdentityName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start wrote an identity: %v", err)
	}
	d := open(t, path, want("pebble", 0, ModeEmbedded))
	if d.Identity().Engine != "pebble" {
		t.Errorf("adopted as %+v", d.Identity())
	}
}

func TestBindZooKeeper(t *testing.T) {
	path := t.TempDir()
	d := open(t, path, want("pebble", 0, ModeZooKeeper))
	if err := d.BindZooKeeper("/idgen", "c1"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d = open(t, path, want("pebble", 0, ModeZooKeeper))
	if err := d.BindZooKeeper("/idgen", "c1"); err != nil {
		t.Errorf("the same ensemble again: %v", err)
	}
	for _, tc := range [][2]string{{"/idgen", "c2"}, {"/other", "c1"}} {
		err := d.BindZooKeeper(tc[0], tc[1])
		if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "c1") || !strings.Contains(err.Error(), tc[1]) || !strings.Contains(err.Error(), tc[0]) {
			t.Errorf("BindZooKeeper(%s, %s): %v, want ErrMismatch naming both", tc[0], tc[1], err)
		}
	}
	e := open(t, t.TempDir(), want("pebble", 0, ModeEmbedded))
	if err := e.BindZooKeeper("/idgen", "c1"); !errors.Is(err, ErrMismatch) {
		t.Errorf("binding an embedded directory: %v", err)
	}
}
