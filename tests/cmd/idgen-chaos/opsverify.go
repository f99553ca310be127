package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/boltstore"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/pebblestore"
	"github.com/idgen/idgen/tests/internal/idledger"
)

// opsSummary is what the embedded phase adds to the report.
type opsSummary struct {
	ids, compensated, reads, auditLines, torn int
	commits, compensations, resumes           int // stored changes checked; audit outages ended
	faultsRun, faultsRecovered                int
	perInst                                   []string
	violations                                []Violation
}

// verify lets the sagas settle (compensations delivered, deadlines swept),
// stops the instances so that their audit logs are complete, then opens
// each store (its volume still mounted) and checks every acknowledged ID
// and every stored change against the audit logs.
func (p *opsPhase) verify(ctx context.Context) opsSummary {
	var s opsSummary
	stopped := time.Now()
	for _, in := range p.insts {
		if !in.sink.Drain(60 * time.Second) {
			p.logf("%s: some compensations were never answered 200; they count as maybe applied", in.name)
		}
		in.sink.Close()
	}
	// Deadlines are at most 6 s after issue; the sweepers run every second.
	if rest := 9*time.Second - time.Since(stopped); rest > 0 {
		backoff.Sleep(ctx, rest)
	}
	for _, in := range p.insts {
		if err := in.Terminate(30 * time.Second); err != nil {
			in.l.violate(vCheck, "stop %s: %v", in.name, err)
		}
	}
	for _, in := range p.insts {
		p.verifyInst(ctx, in, &s)
	}
	results := p.results()
	qv, _ := checkQuiets(results, p.quiets)
	for _, v := range qv {
		p.violate(v.Kind, "%s", v.Detail)
	}
	s.faultsRun, s.faultsRecovered = faultCounts(p.wins)
	if p.cfg.runs(14) && s.resumes < len(p.insts) {
		p.violate(vFault, "fault 14: %d audit.resume lines across %d instances: an audit log never reported its outage", s.resumes, len(p.insts))
	}
	for _, in := range p.insts {
		s.violations = append(s.violations, in.l.Violations()...)
	}
	return s
}

func (p *opsPhase) verifyInst(ctx context.Context, in *opsInst, s *opsSummary) {
	n := in.l.Count()
	s.ids += n
	if n < p.cfg.OpsMinIDs {
		in.l.violate(vVolume, "%s: %d IDs acknowledged, want at least %d", in.name, n, p.cfg.OpsMinIDs)
	}
	store, err := openEmbedded(in)
	if err != nil {
		in.l.violate(vCheck, "%s: open its store to verify it: %v", in.name, err)
		return
	}
	defer store.Close()
	t0 := time.Now()
	rc := checkRegistry(ctx, in.l, store, 16, 0)
	s.reads += rc.reads
	for _, v := range rc.violations {
		in.l.violate(v.Kind, "%s: %s", in.name, v.Detail)
	}
	a, err := readAudit(in.audMnt)
	if err != nil {
		in.l.violate(vCheck, "%s: read its audit logs: %v", in.name, err)
		return
	}
	s.auditLines, s.torn, s.resumes = s.auditLines+a.lines, s.torn+len(a.torn), s.resumes+a.resumes
	for _, t := range a.torn {
		in.l.violate(vAudit, "%s: audit line that is not whole JSON: %.200s", in.name, t)
	}
	sc := checkStoredAudited(ctx, in.l, store, a)
	s.commits, s.compensations = s.commits+sc.commits, s.compensations+sc.compensations
	s.compensated += sc.compensations
	for _, v := range sc.violations {
		in.l.violate(v.Kind, "%s: %s", in.name, v.Detail)
	}
	s.perInst = append(s.perInst, fmt.Sprintf("%s %d IDs (%d commits, %d compensations stored; %d audit lines, %d audit.resume)",
		in.name, n, sc.commits, sc.compensations, a.lines, a.resumes))
	p.logf("%s: %d registry reads and the audit check in %v", in.name, rc.reads, time.Since(t0).Round(time.Millisecond))
}

// embeddedStore is a store opened by the checks.
type embeddedStore interface {
	registryReader
	Close() error
}

// openEmbedded opens in's store (the instance has stopped) with its guard
// off: the checks only read.
func openEmbedded(in *opsInst) (embeddedStore, error) {
	off := diskguard.Config{MinFreeBytes: -1, MinFreePercent: -1, BallastBytes: -1}
	if in.engine == "bbolt" {
		return boltstore.Open(boltstore.Config{Dir: in.dataDir, Shard: in.shard, Disk: off})
	}
	return pebblestore.Open(pebblestore.Config{Dir: in.dataDir, Shard: in.shard, Disk: off})
}

// storedAudit is the outcome of checkStoredAudited.
type storedAudit struct {
	commits, compensations int
	violations             []Violation
}

// checkStoredAudited checks the invariant in its strict form: every
// commit and every compensation step in the history of a record (of an
// acknowledged ID or a null compensation) has exactly one audit entry, and
// no entry names an ID without that step. Unlike checkAudit it admits no
// crash repeat (the embedded phase kills nothing) and does not excuse a
// commit without its entry: a client that retried until a definite answer
// must have left one. A missing entry's detail says how it came about
// (what the driver was answered, who made the change).
func checkStoredAudited(ctx context.Context, l *Ledger, reg registryReader, a auditCounts) storedAudit {
	type item struct {
		id     idcodec.ID
		commit uint8
		event  uint8
	}
	recs := l.records()
	l.mu.Lock()
	items := make([]item, 0, len(recs)+len(l.nulls))
	for _, r := range recs {
		items = append(items, item{r.id, r.commit, r.event})
	}
	for id, st := range l.nulls {
		items = append(items, item{id: id, event: st})
	}
	l.mu.Unlock()

	var (
		out storedAudit
		mu  sync.Mutex
	)
	idledger.Parallel(ctx, 16, len(items), func(i int) {
		it := items[i]
		rec, err := reg.Get(ctx, it.id)
		if errors.Is(err, registry.ErrNotFound) {
			return // judged by checkRegistry
		}
		var vs []Violation
		var commits, comps int
		if err != nil {
			vs = append(vs, Violation{vRegistryRead, fmt.Sprintf("%s: %v", it.id, err)})
		} else {
			commits, comps, vs = auditedOnce(it.id, rec, it.commit, it.event, a)
		}
		mu.Lock()
		out.commits += commits
		out.compensations += comps
		out.violations = append(out.violations, vs...)
		mu.Unlock()
	})
	return out
}

// auditedOnce compares one record's stored changes with its audit entries.
func auditedOnce(id idcodec.ID, rec registry.Record, commit, event uint8, a auditCounts) (commits, comps int, out []Violation) {
	var lastCommit, lastComp *registry.Step
	for i := range rec.History {
		switch st := &rec.History[i]; st.State {
		case registry.Committed:
			commits++
			lastCommit = st
		case registry.Compensated:
			comps++
			lastComp = st
		}
	}
	key := id.String()
	if got := a.commit[key]; got != commits {
		why := ""
		switch {
		case got == 0 && commit&commitUnknown != 0:
			why = "; a /commit was answered 503 or not at all and retried: no retry wrote the entry (audit marks should have recovered it)"
		case got == 0 && lastCommit != nil && lastCommit.Actor == httpapi.ActorSystem:
			why = "; committed by the service itself"
		}
		out = append(out, Violation{vAudit, fmt.Sprintf("%s has %d commit steps stored and %d commit audit entries (driver's /commit answers: %s)%s",
			id, commits, got, commitString(commit), why)})
	}
	if got := a.compensate[key]; got != comps {
		why := ""
		switch {
		case got == 0 && lastComp != nil && lastComp.Actor == httpapi.ActorSystem:
			why = fmt.Sprintf("; compensated by the sweeper (reason %s): its entry failed and the sweeper does not write it again", lastComp.Reason)
		case got == 0 && lastComp != nil && lastComp.Reason == httpapi.ReasonDeadline:
			why = "; compensated by a commit after the deadline"
		case got == 0 && event&eventUnconfirmed != 0:
			why = "; a /compensate was answered 503 or not at all and redelivered: no redelivery wrote the entry (audit marks should have recovered it)"
		}
		out = append(out, Violation{vAudit, fmt.Sprintf("%s has %d compensation steps stored and %d compensation audit entries (failure event %s)%s",
			id, comps, got, eventString(event), why)})
	}
	return commits, comps, out
}
