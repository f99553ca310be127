package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/idgen/idgen/shared/platform/audit"
)

// auditCounts are the audit entries of effective transitions, per ID.
type auditCounts struct {
	compensate map[string]int // id.compensate with outcome applied or null_compensation
	commit     map[string]int // id.commit with outcome applied
	// entries per action and ID ("c <id>", "m <id>"): where and when each
	// was written, for crashRepeat.
	entries map[string][]auditEntry
	// lives: per audit log (one process life), whether it ended without
	// its audit.stop line (SIGKILL) and the time of its last line.
	lives   map[string]life
	files   int
	lines   int
	resumes int      // audit.resume lines: outages of a log that ended
	torn    []string // lines that are not JSON (a write cut by SIGKILL)
}

type auditEntry struct {
	file      string
	at        time.Time
	recovered bool
}

type life struct {
	crashed bool
	last    time.Time
}

// crashWindow bounds how long before its life's last line the first entry
// of a crash repeat was written: the window is the one round trip of the
// mark after the entry, but other entries of that life may follow it.
const crashWindow = 2 * time.Second

func newAuditCounts() auditCounts {
	return auditCounts{compensate: map[string]int{}, commit: map[string]int{}, entries: map[string][]auditEntry{}, lives: map[string]life{}}
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
		if ev.Action == audit.ActionAuditResume {
			a.resumes++
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	l := life{crashed: len(evs) == 0 || evs[len(evs)-1].Action != audit.ActionAuditStop}
	if len(evs) > 0 {
		l.last = evs[len(evs)-1].Time
	}
	a.lives[path] = l
	for _, ev := range evs {
		a.add(path, ev)
	}
	return nil
}

// add counts ev, a line of the audit log file.
func (a *auditCounts) add(file string, ev audit.Event) {
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
	a.entries[key] = append(a.entries[key], auditEntry{file: file, at: ev.Time, recovered: ev.Recovered})
}

// crashRepeat reports whether the entries of one effect (key: "c " or "m "
// and the ID) are its entry and the one repeat the design allows: the first
// attempt wrote its entry in the last moments (crashWindow) of a life that
// ended without audit.stop (SIGKILL), before its mark was stored, and a
// redelivery or retry in another life wrote it again, marked recovered,
// after that life's last line.
func (a *auditCounts) crashRepeat(key string) bool {
	es := a.entries[key]
	if len(es) != 2 {
		return false
	}
	first, again := es[0], es[1]
	if first.recovered {
		first, again = again, first
	}
	l, ok := a.lives[first.file]
	return ok && l.crashed && !first.recovered && again.recovered && again.file != first.file &&
		!first.at.Before(l.last.Add(-crashWindow)) && again.at.After(l.last)
}
