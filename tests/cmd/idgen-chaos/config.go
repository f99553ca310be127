package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config of a run. defaultConfig gives the full run; -smoke the shorter
// one `make test` runs (fewer IDs, shorter holds, every fault and check).
type Config struct {
	Idgen       string        // the idgen binary
	Dir         string        // working directory; "" = a fresh temporary one
	Keep        bool          // keep the directory (it is also kept when a check fails)
	Smoke       bool          // the short run
	Rate        float64       // IDs per second through HAProxy
	Workers     int           // load goroutines
	Faults      []int         // which faults run, in their fixed order
	Session     time.Duration // ZooKeeper session timeout of the instances
	MaxDuration time.Duration // bound on start-up, load and faults
	MinIDs      int           // fewer acknowledged IDs is a violation
	Seed        uint64        // of the load's choices

	// Timings of the faults.
	Warmup, Settle     time.Duration // steady load before the first fault; between faults
	Recovery           time.Duration // bound on recovery after a fault
	KillHold           time.Duration // fault 1: dead before the restart
	FreezeExtra        time.Duration // fault 2: frozen Session + this
	LeaderHold         time.Duration // fault 3: old leader dead
	QuorumHold         time.Duration // fault 4: no quorum
	ShortPartition     time.Duration // fault 5: below the session timeout
	LongPartitionExtra time.Duration // fault 5: Session + this
	LostReplies        int           // fault 6: setData replies to swallow
	LostReplyWindow    time.Duration // fault 6: bound on waiting for them
	DirectRate         float64       // fault 6: IDs/s of the direct load making claims
	ReplicaDown        time.Duration // fault 8: the replica alone frozen
	RedisDown          time.Duration // fault 8: everything frozen
	WorkerBurst        int           // fault 9: failure events sent at once
	LinkPhase          time.Duration // fault 10: latency, then loss
	ClockStep          time.Duration // fault 11: clock offset (negative: back)
	ClockHold          time.Duration // fault 11: per phase

	// The operator and resource faults (12-14) on embedded instances.
	OpsRate        float64       // IDs per second sent to each embedded instance
	OpsWorkers     int           // load goroutines per embedded instance
	OpsWarmup      time.Duration // steady load before fault 12
	OpsMinIDs      int           // fewer IDs acknowledged by one embedded instance is a violation
	DiskHold       time.Duration // fault 13: the data volume full
	AuditHold      time.Duration // fault 14: the audit volume full
	DataDiskBytes  int64         // size of each embedded instance's data tmpfs
	AuditDiskBytes int64         // size of each embedded instance's audit tmpfs
}

func defaultConfig() Config {
	return Config{
		Idgen: "bin/idgen", Rate: 5000, Workers: 32, Faults: allFaults(), Session: 10 * time.Second,
		MaxDuration: 30 * time.Minute, MinIDs: 1_000_000, Seed: 1,
		Warmup: 30 * time.Second, Settle: 8 * time.Second, Recovery: 90 * time.Second,
		KillHold: 5 * time.Second, FreezeExtra: 5 * time.Second, LeaderHold: 5 * time.Second, QuorumHold: 20 * time.Second,
		ShortPartition: 5 * time.Second, LongPartitionExtra: 5 * time.Second,
		LostReplies: 3, LostReplyWindow: 30 * time.Second, DirectRate: 20000,
		ReplicaDown: 5 * time.Second, RedisDown: 10 * time.Second, WorkerBurst: 2000, LinkPhase: 10 * time.Second,
		ClockStep: -30 * time.Second, ClockHold: 10 * time.Second,
		OpsRate: 3000, OpsWorkers: 16, OpsWarmup: 10 * time.Second, OpsMinIDs: 100_000,
		DiskHold: 15 * time.Second, AuditHold: 15 * time.Second, DataDiskBytes: 512 << 20, AuditDiskBytes: 64 << 20,
	}
}

// smoke shortens c for the `make test` run. Timing margins stay wide: the
// box has two cores shared with other work.
func (c *Config) smoke() {
	c.Rate, c.Workers, c.Session, c.MaxDuration, c.MinIDs = 2000, 16, 6*time.Second, 10*time.Minute, 100_000
	c.Warmup, c.Settle = 4*time.Second, 2*time.Second
	c.KillHold, c.FreezeExtra, c.LeaderHold, c.QuorumHold = 2*time.Second, 3*time.Second, 2*time.Second, 14*time.Second
	c.ShortPartition, c.LongPartitionExtra = 3*time.Second, 3*time.Second
	c.LostReplies, c.LostReplyWindow, c.DirectRate = 2, 20*time.Second, 10000
	c.ReplicaDown, c.RedisDown, c.WorkerBurst, c.LinkPhase = 3*time.Second, 5*time.Second, 500, 4*time.Second
	c.ClockStep, c.ClockHold = -15*time.Second, 4*time.Second
	c.OpsRate, c.OpsWorkers, c.OpsWarmup, c.OpsMinIDs = 1000, 8, 3*time.Second, 10_000
	c.DiskHold, c.AuditHold, c.DataDiskBytes, c.AuditDiskBytes = 5*time.Second, 5*time.Second, 192<<20, 32<<20
}

func allFaults() []int {
	var out []int
	for _, f := range faults {
		out = append(out, f.n)
	}
	for _, f := range opFaults {
		out = append(out, f.n)
	}
	return out
}

func (c *Config) runs(n int) bool { return slices.Contains(c.Faults, n) }

// runsCluster says whether a fault of the cluster (1-11) is selected.
func (c *Config) runsCluster() bool {
	return slices.ContainsFunc(c.Faults, func(n int) bool { return n <= len(faults) })
}

// runsOps says whether an operator and resource fault (12-14) is selected.
func (c *Config) runsOps() bool {
	return slices.ContainsFunc(c.Faults, func(n int) bool { return n > len(faults) })
}

func (c *Config) faultList() string {
	s := make([]string, len(c.Faults))
	for i, n := range c.Faults {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// Validate reports a configuration that cannot run or cannot check.
func (c *Config) Validate() error {
	lease := c.Session * 2 / 3
	switch {
	case c.Idgen == "":
		return errors.New("-idgen is required")
	case c.Rate <= 0 || math.IsInf(c.Rate, 0) || c.Rate > 200_000:
		return fmt.Errorf("-rate %v: want 0 < rate <= 200000 IDs/s", c.Rate)
	case c.Workers < 1 || c.Workers > 256:
		return fmt.Errorf("-workers %d: want 1..256", c.Workers)
	case c.Session < 2*time.Second || c.Session > 60*time.Second:
		return fmt.Errorf("-zk-session %v: want 2s..60s", c.Session)
	case c.MaxDuration <= 0:
		return errors.New("-max-duration must be positive")
	case c.QuorumHold <= 2*time.Second+lease+quietMargin+time.Second:
		return fmt.Errorf("the quorum loss (%v) must outlast syncLimit + lease + margin (%v)", c.QuorumHold, 2*time.Second+lease+quietMargin)
	case c.ShortPartition >= c.Session:
		return errors.New("the short partition must be shorter than the session timeout")
	case c.ClockStep >= 0:
		return errors.New("-clock-step must be negative (a step back)")
	}
	for _, n := range c.Faults {
		if n < 1 || n > len(faults)+len(opFaults) {
			return fmt.Errorf("-faults: no fault %d (1..%d)", n, len(faults)+len(opFaults))
		}
	}
	switch {
	case c.OpsRate <= 0 || c.OpsRate > 50_000 || math.IsInf(c.OpsRate, 0):
		return fmt.Errorf("-ops-rate %v: want 0 < rate <= 50000 IDs/s", c.OpsRate)
	case c.DataDiskBytes < 64<<20 || c.AuditDiskBytes < 4<<20:
		return errors.New("the data tmpfs needs at least 64 MiB, the audit tmpfs 4 MiB")
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (*Config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("idgen-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: idgen-chaos -idgen bin/idgen [-smoke] [flags]\n\n"+
			"Starts ZooKeeper (3), Redis (primary, replica, 3 Sentinels), 3 idgen instances behind HAProxy and\n"+
			"2 compensate workers on loopback, drives a bounded load, injects the faults one after another,\n"+
			"checks the invariants and prints a table per fault. Then (faults 12-14, as root) two embedded instances,\n"+
			"pebble and bbolt, each with its data and audit log on a small tmpfs: another engine refused on their data\n"+
			"directory, the data volume and the audit volume filled and freed under load. Exit 0: no violation.\n\n")
		fs.PrintDefaults()
	}
	smoke := fs.Bool("smoke", false, "short run for make test: fewer IDs, shorter faults, every check")
	fs.StringVar(&c.Idgen, "idgen", c.Idgen, "the idgen binary (make build)")
	fs.StringVar(&c.Dir, "dir", "", "empty working directory, kept (default: a fresh temporary one, removed unless -keep or a check failed)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the working directory (logs, audit logs, data)")
	rate := fs.Float64("rate", 0, "IDs per second through HAProxy (default 5000; smoke 2000)")
	workers := fs.Int("workers", 0, "load goroutines (default 32; smoke 16)")
	session := fs.Duration("zk-session", 0, "ZooKeeper session timeout of the instances (default 10s; smoke 6s)")
	maxDur := fs.Duration("max-duration", 0, "bound on the whole run (default 30m; smoke 10m)")
	minIDs := fs.Int("min-ids", -1, "fewer acknowledged IDs is a violation (-1: 1000000, smoke 100000)")
	faultsFlag := fs.String("faults", "", "comma-separated faults to run, 1..14 (default: all; 12-14 need root)")
	opsRate := fs.Float64("ops-rate", 0, "IDs per second sent to each embedded instance in faults 12-14 (default 3000; smoke 1000)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the load's choices")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Smoke = *smoke
	if c.Smoke {
		c.smoke()
	}
	if *rate != 0 {
		c.Rate = *rate
	}
	if *workers != 0 {
		c.Workers = *workers
	}
	if *opsRate != 0 {
		c.OpsRate = *opsRate
	}
	if *session != 0 {
		c.Session = *session
		if c.ShortPartition >= c.Session {
			c.ShortPartition = c.Session / 2
		}
	}
	if *maxDur != 0 {
		c.MaxDuration = *maxDur
	}
	if *minIDs >= 0 {
		c.MinIDs = *minIDs
	}
	if *faultsFlag != "" {
		c.Faults = nil
		for _, f := range strings.Split(*faultsFlag, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("-faults %q: %w", *faultsFlag, err)
			}
			c.Faults = append(c.Faults, n)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	// The children run in the run's directory: the binary's path must not
	// be relative to ours.
	abs, err := filepath.Abs(c.Idgen)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("-idgen %s: not an executable (make build writes bin/idgen): %v", c.Idgen, err)
	}
	c.Idgen = abs
	return &c, nil
}
