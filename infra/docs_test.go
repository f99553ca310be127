package infra

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"
)

// TestDocReferences: no Markdown file and no Go comment of the repository
// cites a file that is not in it (a document kept elsewhere, a path out of
// the tree, a file since moved), and every #anchor into a Markdown file
// names one of its headings. The checker is docs_check_test.go.
func TestDocReferences(t *testing.T) {
	t.Parallel()
	files := gitTrackedFiles(t)
	tree := newDocTree(os.DirFS(".."), files)
	if len(tree.files) == 0 {
		t.Fatal("no tracked file found under ..")
	}
	for _, f := range tree.check() {
		t.Error(f)
	}
}

// gitTrackedFiles lists the files git tracks in the repository (the index,
// so a file added for the next commit counts), relative to its root.
func gitTrackedFiles(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && bytes.Contains(ee.Stderr, []byte("not a git repository")) {
			t.Skip("not a git work tree")
		}
		t.Fatalf("git ls-files: %v", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

// TestDocReferenceCheckerCatchesBreakage runs the checker on a small fake
// tree: the clean tree passes, and each broken reference is reported with
// its file and line.
func TestDocReferenceCheckerCatchesBreakage(t *testing.T) {
	t.Parallel()
	clean := fstest.MapFS{
		"README.md": {Data: []byte("# Tool\n\nSee [the API](docs/api.md#errors), [ops](docs/ops.md) and\n" +
			"![picture](docs/arch.svg), the [folder](docs/) and [top](#tool).\n" +
			"Results: bench/results.md, results.md, [x](https://example.com/SPEC.md).\n" +
			"[ref]: docs/api.md#the-body-of-post-generate\n")},
		"docs/api.md": {Data: []byte("# API\n\n## Errors\n\n## The body of `POST /generate`\n\n" +
			"```\n## Not a heading\n```\n\n## Errors\n\nBack to the [README](../README.md#tool); [errors again](#errors-1).\n")},
		"docs/ops.md":      {Data: []byte("# Ops\n\n<a id=\"custom\"></a>\n\nSee [API](api.md) and [custom](#custom).\n")},
		"docs/arch.svg":    {Data: []byte("<svg/>")},
		"bench/results.md": {Data: []byte("# Results\n")},
		"cmd/tool/main.go": {Data: []byte("// Package main serves the routes of docs/api.md#errors.\npackage main\n\n" +
			"// run follows cmd/tool/main.go and ../../docs/ops.md; see shared/x.Thing.\nfunc run() {}\n")},
		"infra/a_test.go": {Data: []byte("package infra\n\n// Reads ../docs/arch.svg and ../cmd/tool.\nvar x = 1\n")},
	}
	tracked := []string{"README.md", "docs/api.md", "docs/ops.md", "docs/arch.svg", "bench/results.md", "cmd/tool/main.go", "infra/a_test.go"}
	if got := newDocTree(clean, tracked).check(); len(got) != 0 {
		t.Fatalf("clean tree: %v", got)
	}

	cases := []struct {
		name, file, text string
		want             string // file:line: and a part of the message
	}{
		{"outside document in Markdown", "docs/ops.md", "# Ops\n\nAs SPEC.md says.\n", "docs/ops.md:3: cites SPEC.md"},
		{"outside document in backticks", "docs/ops.md", "# Ops\n\nSee `STYLE.md`.\n", "docs/ops.md:3: cites STYLE.md"},
		{"outside document in a Go comment", "cmd/tool/main.go", "package main\n\n// Scopes of SPEC.md.\nconst x = 1\n", "cmd/tool/main.go:3: cites SPEC.md"},
		{"outside document in a block comment", "cmd/tool/main.go", "package main\n\n/*\nSee\nARCHITECTURE.md.\n*/\nconst x = 1\n", "cmd/tool/main.go:5: cites ARCHITECTURE.md"},
		{"path out of the repository", "README.md", "# Tool\n\nThe rules are in ../outside/GUIDE.md.\n", "README.md:3: cites ../outside/GUIDE.md, which is outside"},
		{"link out of the repository", "docs/api.md", "# API\n\n[style](../../outside/GUIDE.md)\n", "docs/api.md:3: link ../../outside/GUIDE.md points outside"},
		{"link to a missing file", "README.md", "# Tool\n\n[arch](docs/architecture.md)\n", "README.md:3: link docs/architecture.md: no file"},
		{"link to a missing image", "README.md", "# Tool\n\n![x](docs/chart.svg)\n", "README.md:3: link docs/chart.svg: no file"},
		{"missing anchor", "README.md", "# Tool\n\n[e](docs/api.md#error-codes)\n", "README.md:3: link docs/api.md#error-codes: docs/api.md has no heading"},
		{"missing anchor in the same file", "docs/ops.md", "# Ops\n\n[x](#alerts)\n", "docs/ops.md:3: link #alerts: docs/ops.md has no heading"},
		{"anchor of a fenced heading", "README.md", "# Tool\n\n[x](docs/api.md#not-a-heading)\n", "has no heading #not-a-heading"},
		{"reference definition to a missing file", "README.md", "# Tool\n\n[ref]: docs/gone.md\n", "README.md:3: link docs/gone.md: no file"},
		{"missing anchor in a Go comment", "cmd/tool/main.go", "package main\n\n// See docs/api.md#limits.\nconst x = 1\n", "cmd/tool/main.go:3: cites docs/api.md#limits"},
		{"missing file in a Go comment", "cmd/tool/main.go", "package main\n\n// As cmd/tool/serve.go does.\nconst x = 1\n", "cmd/tool/main.go:3: cites cmd/tool/serve.go"},
		{"missing ../ path in a Go comment", "infra/a_test.go", "package infra\n\n// Reads ../scripts/backup.sh.\nvar x = 1\n", "infra/a_test.go:3: cites ../scripts/backup.sh: no file scripts/backup.sh"},
		{"Go file that does not compile", "cmd/tool/main.go", "package main\n\nfunc {\n// See SPEC.md\n", "cmd/tool/main.go:4: cites SPEC.md"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			broken := fstest.MapFS{}
			for k, v := range clean {
				broken[k] = v
			}
			broken[tc.file] = &fstest.MapFile{Data: []byte(tc.text)}
			var got []string
			for _, f := range newDocTree(broken, tracked).check() {
				got = append(got, f.String())
			}
			for _, g := range got {
				if strings.Contains(g, tc.want) {
					return
				}
			}
			t.Errorf("want a finding %q, got %q", tc.want, got)
		})
	}

	t.Run("untracked file is not in the repository", func(t *testing.T) {
		got := newDocTree(clean, []string{"README.md", "docs/api.md", "docs/arch.svg", "bench/results.md", "cmd/tool/main.go", "infra/a_test.go"}).check()
		want := "README.md:3: link docs/ops.md: no file docs/ops.md in the repository"
		for _, f := range got {
			if f.String() == want {
				return
			}
		}
		t.Errorf("want %q, got %v", want, got)
	})
}

func TestHeadingSlug(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ heading, want string }{
		{"IdgenDiskFull", "idgendiskfull"},
		{"SLO and burn-rate alerts", "slo-and-burn-rate-alerts"},
		{"POST /compensate", "post-compensate"},
		{"Redis: scripts/backup-redis.sh", "redis-scriptsbackup-redissh"},
		{"The body of `POST /generate`", "the-body-of-post-generate"},
		{"A [linked](x.md) heading", "a-linked-heading"},
		{"snake_case and Ünïcode", "snake_case-and-ünïcode"},
	} {
		if got := headingSlug(tc.heading); got != tc.want {
			t.Errorf("headingSlug(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}
