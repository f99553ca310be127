package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry/boltstore"
	"github.com/idgen/idgen/shared/registry/datadir"
	"github.com/idgen/idgen/shared/registry/pebblestore"
	"github.com/idgen/idgen/tests/internal/idgenproc"
)

// opFaults are the operator and resource faults of the embedded phase;
// they follow the eleven faults of the cluster, in the order they run.
// HAProxy is not in front of the embedded instances: no availability floor.
var opFaults = []faultDef[*opsPhase]{
	{12, "store engine mismatch refused", 0, faultEngineMismatch},
	{13, "data volume fills and frees", 0, faultDataDisk},
	{14, "audit volume fills and frees", 0, faultAuditDisk},
}

// Fault 12: an operator starts `idgen serve` on an embedded instance's
// data directory with the other store engine: beside the running instance
// (the directory's lock refuses it), then after stopping it (the identity
// file refuses the other engine, another shard and the ZooKeeper mode, in
// one line naming both values). Every refused start exits non-zero, writes
// nothing of the other engine and leaves the identity as it was. The
// instance then restarts with its own engine and still holds the IDs it
// acknowledged before.
func faultEngineMismatch(ctx context.Context, p *opsPhase, w *window) error {
	return p.eachInst(func(in *opsInst) error {
		other := "bbolt"
		if in.engine == "bbolt" {
			other = "pebble"
		}
		identity := filepath.Join(in.dataDir, datadir.IdentityName)
		before, err := os.ReadFile(identity)
		if err != nil {
			return err
		}
		line, err := p.refusedStart(ctx, in, map[string]string{"--store-engine": other}, "held by another process")
		if err != nil {
			return fmt.Errorf("%s start beside the running %s one: %w", other, in.engine, err)
		}
		w.note("%s running: a %s start refused: %q", in.name, other, line)
		acked := in.l.pick(500, func(idRecord) bool { return true })
		if err := in.Terminate(20 * time.Second); err != nil {
			return err
		}
		// The ZooKeeper mode is refused by the identity file too, but the
		// refused process exits only once its ZooKeeper connect gives up
		// (nothing listens): it is checked in the background, the
		// directory's lock taken and released in turn with the others.
		zk, err := proc.FreeAddr()
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		t0 := time.Now()
		go func() {
			line, err := p.refusedStart(ctx, in, map[string]string{"--zookeeper": zk}, "mode "+datadir.ModeEmbedded, "mode "+datadir.ModeZooKeeper)
			if err == nil {
				err = errRefusedLine(fmt.Sprintf("%s stopped: --zookeeper %s refused after %v: %q", in.name, zk, time.Since(t0).Round(100*time.Millisecond), line))
			}
			done <- err
		}()
		p.mu.Lock()
		p.pending = append(p.pending, pendingCheck{w: w, done: done})
		p.mu.Unlock()
		for _, c := range []struct {
			flag, value string
			want        []string
		}{
			{"--store-engine", other, []string{"store engine " + in.engine, "store engine " + other}},
			{"--shard", fmt.Sprint(in.shard + 10), []string{fmt.Sprintf("shard %d;", in.shard), fmt.Sprintf("shard %d", in.shard+10)}},
		} {
			line, err := p.refusedStart(ctx, in, map[string]string{c.flag: c.value}, c.want...)
			if err != nil {
				return fmt.Errorf("stopped, a start with %s %s: %w", c.flag, c.value, err)
			}
			w.note("%s stopped: %s %s refused: %q", in.name, c.flag, c.value, line)
		}
		otherFile := map[string]string{"pebble": pebblestore.DirName, "bbolt": boltstore.FileName}[other]
		if _, err := os.Stat(filepath.Join(in.dataDir, otherFile)); err == nil {
			return fmt.Errorf("a refused start left %s in the data directory", otherFile)
		}
		if after, err := os.ReadFile(identity); err != nil || !bytes.Equal(before, after) {
			return fmt.Errorf("the identity file changed under the refused starts (%v):\n%s\n%s", err, before, after)
		}
		if err := in.Start(ctx, p.client, readyTimeout); err != nil {
			return err
		}
		missing, err := p.readBack(ctx, in, acked)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			in.l.violate(vLost, "%s restarted with %s: %d of the %d IDs last acknowledged before the stop are not found, e.g. %s",
				in.name, in.engine, len(missing), len(acked), missing[0])
		}
		w.note("%s restarted with %s: %d IDs acknowledged before the stop read back", in.name, in.engine, len(acked)-len(missing))
		return nil
	})
}

// errRefusedLine carries the note of a refusal checked in the background.
type errRefusedLine string

func (e errRefusedLine) Error() string { return string(e) }

// pendingCheck is a refusal still being waited for; joinPending collects
// it into its fault's window.
type pendingCheck struct {
	w    *window
	done <-chan error
}

// joinPending waits for the refusals checked in the background (each
// bounded by refusedStart's wait).
func (p *opsPhase) joinPending() {
	p.mu.Lock()
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, c := range pending {
		err := <-c.done
		var line errRefusedLine
		if errors.As(err, &line) {
			c.w.note("%s", string(line))
			continue
		}
		c.w.failed = true
		p.violate(vFault, "fault %d (%s): %v", c.w.n, c.w.name, err)
	}
}

// refusedStart runs `idgen serve` with in's flags, set changed, on a free
// address, and expects it to exit non-zero, its error naming every want.
// It returns the error line.
func (p *opsPhase) refusedStart(ctx context.Context, in *opsInst, set map[string]string, want ...string) (string, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return "", err
	}
	set["--listen"] = addr
	args := slices.Clone(in.flags)
	for i := 0; i+1 < len(args); i += 2 {
		if v, ok := set[args[i]]; ok {
			args[i+1] = v
			delete(set, args[i])
		}
	}
	for f, v := range set {
		args = append(args, f, v)
	}
	args = append([]string{"serve", "--audit-log", filepath.Join(p.dir, "logs", fmt.Sprintf("refused-%s-%d.audit.log", in.name, p.refusals.Add(1)))}, args...)
	c, err := idgenproc.Start(idgenproc.Options{Name: "idgen serve (to be refused)", Bin: p.cfg.Idgen, Fixed: true, Dir: p.dir,
		Args: func(string, string) []string { return args }})
	if err != nil {
		return "", err
	}
	pr := c.Proc
	code, err := pr.Wait(30 * time.Second)
	if err != nil {
		_ = pr.Kill()
		return "", fmt.Errorf("still running after 30 s, not refused:\n%s", idgenproc.Excerpt(pr.Stderr(), 0, 10))
	}
	out := pr.Stderr()
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "idgen serve:") {
			line = l
		}
	}
	if code == 0 {
		return "", fmt.Errorf("exit 0, want a refusal:\n%s", idgenproc.Excerpt(out, 0, 10))
	}
	for _, s := range want {
		if !strings.Contains(line, s) {
			return "", fmt.Errorf("exit %d with %q, want it to name %q:\n%s", code, line, s, idgenproc.Excerpt(out, 0, 10))
		}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return line, nil
}

// readBack asks in for each of ids (GET /ids/{id}) and returns the ones it
// does not find.
func (p *opsPhase) readBack(ctx context.Context, in *opsInst, ids []idcodec.ID) ([]idcodec.ID, error) {
	var missing []idcodec.ID
	for _, id := range ids {
		code, err := p.get(ctx, in.url+"/ids/"+id.String())
		switch {
		case err != nil:
			return nil, fmt.Errorf("GET /ids/%s: %w", id, err)
		case code == http.StatusNotFound:
			missing = append(missing, id)
		case code != http.StatusOK:
			return nil, fmt.Errorf("GET /ids/%s: %d", id, code)
		}
	}
	return missing, nil
}

// holdWatch polls in for d: it must stay alive; it returns how many of
// the readiness probes were answered and how many of them not ready.
func (p *opsPhase) holdWatch(ctx context.Context, in *opsInst, d time.Duration) (probes, notReady int, err error) {
	for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; backoff.Sleep(ctx, 200*time.Millisecond) {
		if in.Exited() {
			return probes, notReady, fmt.Errorf("exited while its volume was full:\n%s", idgenproc.Excerpt(in.current().Stderr(), 0, 20))
		}
		if code, err := p.get(ctx, in.url+"/health/ready"); err == nil {
			probes++
			if code != http.StatusOK {
				notReady++
			}
		}
	}
	return probes, notReady, nil
}

// refusedSince counts the 503 answers to /generate sent in [from, to).
func refusedSince(l *Ledger, from, to time.Time) (refused, ok int) {
	for _, r := range l.resultsSince(from) {
		if r.sent.Before(to) {
			switch r.status {
			case http.StatusServiceUnavailable:
				refused++
			case http.StatusOK:
				ok++
			}
		}
	}
	return refused, ok
}

// guardLag bounds how long after the volume is full the disk guard has
// noticed (it measures every second) and every write is refused, with a
// margin for a busy box.
const guardLag = 3 * time.Second

// Fault 13: a file grows on each instance's data volume until the kernel
// answers ENOSPC, under load; it stays full for DiskHold, then the file is
// deleted. The disk guard refuses writes (503 with Retry-After, the only
// other answer than 200), readiness goes down, nothing crashes, and
// service resumes by itself once the space is back. No /generate sent
// once the guard must have noticed may be answered 200 (a quiet interval).
func faultDataDisk(ctx context.Context, p *opsPhase, w *window) error {
	return p.eachInst(func(in *opsInst) error {
		filler := filepath.Join(in.dataMnt, "filler")
		t0 := time.Now()
		n, err := fill(ctx, filler, p.cfg.DataDiskBytes)
		full := time.Now()
		if err != nil {
			_ = os.Remove(filler)
			return err
		}
		probes, notReady, herr := p.holdWatch(ctx, in, p.cfg.DiskHold)
		freed := time.Now()
		if err := os.Remove(filler); err != nil {
			return err
		}
		if herr != nil {
			return herr
		}
		p.addQuiet(quiet{from: full.Add(guardLag), to: freed, who: in.name, why: "data volume full: the disk guard refuses writes"})
		refused, ok := refusedSince(in.l, full, freed)
		w.note("%s: %s filler to ENOSPC in %v, full %v: %d/%d readiness probes not ready, /generate %d refused (503) and %d served (before the guard noticed)",
			in.name, mib(n), full.Sub(t0).Round(time.Millisecond), freed.Sub(full).Round(time.Millisecond), notReady, probes, refused, ok)
		switch {
		case notReady == 0:
			return errors.New("readiness stayed ok with the data volume full")
		case refused == 0:
			return errors.New("no /generate refused with the data volume full")
		}
		return nil
	})
}

// Fault 14: a file grows on each instance's audit volume until ENOSPC,
// while commits and compensations of a burst of pending IDs are in flight
// (and the load runs); it stays full for AuditHold, then is deleted. A
// state change whose entry does not fit is stored and answered 503, later
// ones are refused (503) until the log recovers by itself; the clients'
// retries must then leave every stored change audited exactly once
// (checked at the end, with every audit log read).
func faultAuditDisk(ctx context.Context, p *opsPhase, w *window) error {
	return p.eachInst(func(in *opsInst) error {
		ids := in.l.pick(400, func(r idRecord) bool { return !r.deadline && r.commit == 0 && r.event == 0 })
		if len(ids) < 40 {
			return fmt.Errorf("%d pending IDs to commit and compensate, want 40", len(ids))
		}
		// Eight clients pace the burst over the fill and the hold; a commit
		// retries while its answer is not definite, a compensation is
		// redelivered by the sink.
		gap := p.cfg.AuditHold * 8 / time.Duration(len(ids))
		var burst sync.WaitGroup
		for g := range 8 {
			burst.Go(func() {
				for i := g; i < len(ids) && ctx.Err() == nil; i += 8 {
					if i%2 == 0 {
						in.d.commit(ctx, ids[i])
					} else {
						in.sink.Send(ids[i], false)
					}
					backoff.Sleep(ctx, gap)
				}
			})
		}
		filler := filepath.Join(in.audMnt, "filler")
		t0 := time.Now()
		backoff.Sleep(ctx, gap*4) // some of the burst before the volume is full
		n, err := fill(ctx, filler, p.cfg.AuditDiskBytes)
		full := time.Now()
		if err != nil {
			_ = os.Remove(filler)
			burst.Wait()
			return err
		}
		probes, notReady, herr := p.holdWatch(ctx, in, p.cfg.AuditHold)
		freed := time.Now()
		if err := os.Remove(filler); err != nil {
			return err
		}
		burst.Wait()
		if herr != nil {
			return herr
		}
		refused, _ := refusedSince(in.l, full, freed)
		w.note("%s: %s filler to ENOSPC in %v, full %v, with %d commits and compensations in flight: %d/%d readiness probes not ready, /generate %d refused (503)",
			in.name, mib(n), full.Sub(t0).Round(time.Millisecond), freed.Sub(full).Round(time.Millisecond), len(ids), notReady, probes, refused)
		if refused == 0 {
			return errors.New("no /generate refused with the audit volume full")
		}
		return nil
	})
}
