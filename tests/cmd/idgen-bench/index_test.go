package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCPUDir(t *testing.T) {
	for in, want := range map[string]string{
		"AMD EPYC": "amd-epyc",
		"Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz": "intel-r-xeon-r-platinum-8375c-cpu-2-90ghz",
		"  ":            "unknown-cpu",
		"../etc/passwd": "etc-passwd",
	} {
		if got := cpuDir(in); got != want {
			t.Errorf("cpuDir(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIndexKeepsEveryModel: the index lists the last results of each CPU
// model under the root, with the targets each met and missed, and a run
// on one model leaves the other's results alone.
func TestIndexKeepsEveryModel(t *testing.T) {
	root := t.TempDir()
	write := func(model, date string, rows ...string) {
		dir := filepath.Join(root, cpuDir(model))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		md := "# idgen bench results\n\n| | |\n|---|---|\n| CPU | " + model + " |\n| date | " + date + " |\n\n## Targets\n\n| target | measured | ratio | result |\n|---|---|---:|---|\n" +
			strings.Join(rows, "\n") + "\n\n## In-process\n\n| x | **MISS** |\n"
		if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("AMD EPYC", "2026-11-27", "| a ≥ 0.5× | 0.56× | 1.13 | **PASS** |", "| b ≥ 2M IDs/s | 0.6M | 0.30 | **MISS** |")
	write("Intel Xeon", "2026-12-01", "| a ≥ 0.5× | 0.38× | 0.76 | **MISS** |", "| moon ≥ 0.7× | 0.38× | 0.54 | **MISS (moonshot)** |", "| c | 1 | 1 | **PASS** |")
	if err := writeIndex(root); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	idx := string(b)
	for _, want := range []string{
		"| [AMD EPYC](amd-epyc/results.md) | 2026-11-27 | 1 | 1: b ≥ 2M IDs/s |",
		"| [Intel Xeon](intel-xeon/results.md) | 2026-12-01 | 1 | 2: a ≥ 0.5×; moon ≥ 0.7× |",
	} {
		if !strings.Contains(idx, want) {
			t.Errorf("index lacks %q:\n%s", want, idx)
		}
	}
}
