// Package datadir guards the embedded registry's data directory: one lock on
// the directory itself and an identity file that says what the directory
// holds.
//
// Invariants: at most one process (and one Dir of a process) holds a data
// directory at a time, whatever store engine it asks for, because the lock
// is taken on the directory before any engine opens; a directory is only
// ever opened with the engine, shard and coordination mode it was created
// with, because the identity is written atomically (temporary file, fsync,
// rename, fsync of the directory) before the first store opens, and every
// later start compares it field by field and refuses any mismatch. A
// directory that predates identity files is adopted when exactly the files
// of the requested engine are present, and refused when the other engine's
// files are there.
package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// File names inside the data directory.
const (
	// LockName is the file whose flock(2) is the directory's lock.
	LockName = "idgen.lock"
	// IdentityName is the identity file.
	IdentityName = "IDENTITY"
	// FormatVersion is the identity format this package writes and reads.
	FormatVersion = 1
)

// Sentinel errors; test with errors.Is.
var (
	// ErrLocked means another process (or Dir) holds the directory.
	ErrLocked = errors.New("datadir: held by another process")
	// ErrMismatch means the directory was created for something else.
	ErrMismatch = errors.New("datadir: identity mismatch")
	// ErrCorrupt means the identity file cannot be read.
	ErrCorrupt = errors.New("datadir: identity file unreadable")
)

// Identity is what a data directory was created for.
type Identity struct {
	Format    int       `json:"format"`
	Engine    string    `json:"engine"`
	Shard     uint8     `json:"shard"`
	StoreID   string    `json:"store_id"`
	CreatedAt time.Time `json:"created_at"`
	// Mode is "embedded" (the directory's own counter is the range source)
	// or "zookeeper" (ZooKeeper hands out the ranges).
	Mode string `json:"mode"`
	// ZKRoot and ClusterID name the ZooKeeper ensemble in zookeeper mode:
	// the root znode and the cluster ID kept under it.
	ZKRoot    string `json:"zk_root,omitempty"`
	ClusterID string `json:"cluster_id,omitempty"`
}

// Modes of Identity.Mode.
const (
	ModeEmbedded  = "embedded"
	ModeZooKeeper = "zookeeper"
)

// Want is what a start asks of the directory. Engine files names the
// files or directories each engine keeps in the data directory, so that a
// directory without an identity file can be adopted or refused.
type Want struct {
	Engine string
	Shard  uint8
	Mode   string
	// EngineFiles maps every known engine to the name of its file or
	// directory inside the data directory.
	EngineFiles map[string]string
}

// Dir is a locked data directory. Close releases the lock.
type Dir struct {
	path string
	lock *os.File
	id   Identity
}

// Open creates path if needed, takes its lock (waiting up to timeout for a
// previous process to let go), and reads or creates its identity. It fails
// with ErrLocked, ErrMismatch (one message naming both values) or
// ErrCorrupt. A fresh identity in ModeZooKeeper lacks the ensemble's names
// until BindZooKeeper records them.
func Open(path string, want Want, timeout time.Duration) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("datadir: %w", err)
	}
	lock, err := lockFile(filepath.Join(path, LockName), timeout)
	if err != nil {
		return nil, err
	}
	d := &Dir{path: path, lock: lock}
	if err := d.load(want); err != nil {
		_ = lock.Close()
		return nil, err
	}
	return d, nil
}

// lockFile takes an exclusive flock on name, retrying until timeout.
func lockFile(name string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("datadir: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s (is another idgen running on this --data-dir?)", ErrLocked, filepath.Dir(name))
			}
			return nil, fmt.Errorf("datadir: lock %s: %w", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *Dir) load(want Want) error {
	name := filepath.Join(d.path, IdentityName)
	b, err := os.ReadFile(name)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return d.create(want)
	case err != nil:
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err)
	}
	if id.Format != FormatVersion {
		return fmt.Errorf("%w: %s: format %d, this build reads %d", ErrMismatch, name, id.Format, FormatVersion)
	}
	d.id = id
	for _, m := range []struct {
		what      string
		have, got string
	}{
		{"store engine", id.Engine, want.Engine},
		{"shard", fmt.Sprint(id.Shard), fmt.Sprint(want.Shard)},
		{"mode", id.Mode, want.Mode},
	} {
		if m.have != m.got {
			return fmt.Errorf("%w: data directory %s was created with %s %s; this start asks for %s %s", ErrMismatch, d.path, m.what, m.have, m.what, m.got)
		}
	}
	return nil
}

// create adopts a directory without an identity file, or refuses it when
// another engine's files are in it.
func (d *Dir) create(want Want) error {
	for engine, file := range want.EngineFiles {
		if engine == want.Engine {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.path, file)); err == nil {
			return fmt.Errorf("%w: data directory %s holds a %s store (%s); this start asks for store engine %s", ErrMismatch, d.path, engine, file, want.Engine)
		}
	}
	d.id = Identity{
		Format: FormatVersion, Engine: want.Engine, Shard: want.Shard, Mode: want.Mode,
		StoreID: uuid.NewString(), CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	return d.write()
}

// write replaces the identity file atomically and durably.
func (d *Dir) write() error {
	b, err := json.MarshalIndent(d.id, "", "  ")
	if err != nil {
		return err
	}
	name := filepath.Join(d.path, IdentityName)
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("datadir: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil {
		err = syncDir(d.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("datadir: write %s: %w", name, err)
	}
	return nil
}

func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// BindZooKeeper checks that the directory belongs to the ZooKeeper ensemble
// named by root and clusterID, recording both the first time (a directory
// created in zookeeper mode before it met its ensemble). Errors:
// ErrMismatch naming both values.
func (d *Dir) BindZooKeeper(root, clusterID string) error {
	if d.id.Mode != ModeZooKeeper {
		return fmt.Errorf("%w: data directory %s is in mode %s, not %s", ErrMismatch, d.path, d.id.Mode, ModeZooKeeper)
	}
	if d.id.ZKRoot == "" && d.id.ClusterID == "" {
		d.id.ZKRoot, d.id.ClusterID = root, clusterID
		return d.write()
	}
	if d.id.ZKRoot != root || d.id.ClusterID != clusterID {
		return fmt.Errorf("%w: data directory %s belongs to ZooKeeper root %s cluster %s; this start reaches root %s cluster %s",
			ErrMismatch, d.path, d.id.ZKRoot, d.id.ClusterID, root, clusterID)
	}
	return nil
}

// Identity returns the directory's identity.
func (d *Dir) Identity() Identity { return d.id }

// Path returns the directory.
func (d *Dir) Path() string { return d.path }

// Close releases the lock. The lock file stays: removing it would let a
// second process lock a new file while the first still holds the old one.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}
