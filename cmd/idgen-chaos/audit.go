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
	files      int
	lines      int
	torn       []string // lines that are not JSON (a write cut by SIGKILL)
}

// readAudit reads every audit log under dir (one file per process life).
func readAudit(dir string) (auditCounts, error) {
	a := auditCounts{compensate: map[string]int{}, commit: map[string]int{}}
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
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		a.lines++
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			a.torn = append(a.torn, filepath.Base(path)+": "+sc.Text())
			continue
		}
		a.add(ev)
	}
	return sc.Err()
}

func (a *auditCounts) add(ev audit.Event) {
	switch {
	case ev.Action == audit.ActionCompensate && (ev.Outcome == "applied" || ev.Outcome == "null_compensation"):
		a.compensate[ev.Resource]++
	case ev.Action == audit.ActionCommit && ev.Outcome == "applied":
		a.commit[ev.Resource]++
	}
}
