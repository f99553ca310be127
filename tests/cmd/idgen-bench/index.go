package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// cpuDir is the directory of a CPU model's results: the model name in
// lower case, each run of other characters than letters and digits one
// '-' ("AMD EPYC 7B13" → "amd-epyc-7b13").
func cpuDir(model string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(model) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			continue
		}
		dash = true
	}
	if b.Len() == 0 {
		return "unknown-cpu"
	}
	return b.String()
}

// modelResults is what the index says of one CPU model's last run.
type modelResults struct {
	dir, cpu, date string
	pass, miss     int
	missed         []string
}

// readModel reads the rows the index needs from the results.md in dir: the
// machine's CPU and date, and each target's result.
func readModel(root, dir string) (modelResults, error) {
	b, err := os.ReadFile(filepath.Join(root, dir, "results.md"))
	if err != nil {
		return modelResults{}, err
	}
	r := modelResults{dir: dir}
	inTargets := false
	for line := range strings.SplitSeq(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "| CPU | "):
			r.cpu = strings.TrimSuffix(strings.TrimPrefix(line, "| CPU | "), " |")
		case strings.HasPrefix(line, "| date | "):
			r.date = strings.TrimSuffix(strings.TrimPrefix(line, "| date | "), " |")
		case strings.HasPrefix(line, "## "):
			inTargets = line == "## Targets"
		case inTargets && strings.HasPrefix(line, "| ") && strings.HasSuffix(line, "**PASS** |"):
			r.pass++
		case inTargets && strings.HasPrefix(line, "| ") && strings.Contains(line, "**MISS"):
			r.miss++
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " | ")
			r.missed = append(r.missed, name)
		}
	}
	if r.cpu == "" {
		return r, fmt.Errorf("%s: no CPU row", filepath.Join(dir, "results.md"))
	}
	return r, nil
}

// writeIndex writes the README.md of root: one row per CPU model whose results
// are under root, with the targets its last run met and missed.
func writeIndex(root string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var models []modelResults
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), "results.md")); err != nil {
			continue
		}
		m, err := readModel(root, e.Name())
		if err != nil {
			return err
		}
		models = append(models, m)
	}
	slices.SortFunc(models, func(a, b modelResults) int { return strings.Compare(a.dir, b.dir) })
	var b strings.Builder
	b.WriteString("# idgen bench results, by CPU model\n\n")
	b.WriteString("The last run of `idgen-bench` on each CPU model it has run on. Every figure is a\n")
	b.WriteString("ratio to a baseline measured in the same run on that machine; a target holds\n")
	b.WriteString("only where it holds on every model below.\n\n")
	b.WriteString("| CPU | date | targets met | targets missed |\n|---|---|---:|---|\n")
	for _, m := range models {
		missed := "none"
		if len(m.missed) > 0 {
			missed = fmt.Sprintf("%d: %s", m.miss, strings.Join(m.missed, "; "))
		}
		fmt.Fprintf(&b, "| [%s](%s/results.md) | %s | %d | %s |\n", m.cpu, m.dir, m.date, m.pass, missed)
	}
	return os.WriteFile(filepath.Join(root, "README.md"), []byte(b.String()), 0o644)
}
