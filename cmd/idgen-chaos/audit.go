package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/idgen/idgen/shared/audit"
)

// auditCounts are the audit entries of effective transitions, per ID.
type auditCounts struct {
	compensate map[string]int // id.compensate with outcome applied or null_compensation
	commit     map[string]int // id.commit with outcome applied
	// Per action and ID: entries marked recovered (written by a
	// redelivery or retry for an earlier attempt), and entries not so
	// marked in the audit log of a life that ended without its audit.stop
	// line (SIGKILL).
	recovered, crashed map[string]int
	files              int
	lines              int
	torn               []string // lines that are not JSON (a write cut by SIGKILL)
}

func newAuditCounts() auditCounts {
	return auditCounts{compensate: map[string]int{}, commit: map[string]int{}, recovered: map[string]int{}, crashed: map[string]int{}}
}

// readAudit reads every audit log under dir (one file per process life).
func readAudit(dir string) (auditCounts, error) {
	a := newAuditCounts()
	paths, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return a, err
	}
	for _, p := range paths {
		if err := a.readFile(p); err != nil {
			return a, err
		}
	}
	return a, nil
}

func (a *auditCounts) readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	a.files++
	var evs []audit.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		a.lines++
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			a.torn = append(a.torn, filepath.Base(path)+": "+sc.Text())
			continue
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	crashed := len(evs) == 0 || evs[len(evs)-1].Action != audit.ActionAuditStop
	for _, ev := range evs {
		a.add(ev, crashed)
	}
	return nil
}

// add counts ev, from the log of a life that crashed or not.
func (a *auditCounts) add(ev audit.Event, crashed bool) {
	var key string
	switch {
	case ev.Action == audit.ActionCompensate && (ev.Outcome == "applied" || ev.Outcome == "null_compensation"):
		a.compensate[ev.Resource]++
		key = "c " + ev.Resource
	case ev.Action == audit.ActionCommit && ev.Outcome == "applied":
		a.commit[ev.Resource]++
		key = "m " + ev.Resource
	default:
		return
	}
	switch {
	case ev.Recovered:
		a.recovered[key]++
	case crashed:
		a.crashed[key]++
	}
}

// crashRepeat reports whether the n entries of one effect (key: "c " or
// "m " and the ID) are its entry and the one repeat the design allows: the
// first attempt wrote its entry and died (SIGKILL) before recording so,
// and a redelivery or retry wrote it again, marked recovered.
func (a *auditCounts) crashRepeat(key string, n int) bool {
	return n == 2 && a.recovered[key] == 1 && a.crashed[key] == 1
}
