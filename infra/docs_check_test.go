package infra

import (
	"bufio"
	"bytes"
	"fmt"
	"go/scanner"
	"go/token"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

// The reference checker of TestDocReferences: every reference a Markdown
// file or a Go comment makes to a file names a file of the repository, and
// every #anchor into a Markdown file names one of its headings. What counts
// as a reference:
//
//   - a Markdown link or image, inline ([x](path#anchor)) or a reference
//     definition ([x]: path), relative to the file (a leading / is the
//     repository root); URLs with a scheme are not checked;
//   - in Markdown text and Go comments, a name ending in .md, bare or with
//     a path and an anchor (docs/api.md#routes): it must resolve against
//     the file's directory or the repository root or, for a bare name, be
//     the base name of a repository file;
//   - a path that starts with ../: it must stay inside the repository and
//     name a file or directory of it;
//   - a path of two or more segments whose first is a top-level directory
//     of the repository and whose last has a known file extension
//     (cmd/idgen/lambda.go): it must name a file, relative to the root or
//     to the file's directory.
//
// The repository is a file system and the list of its tracked files, so a
// test can hand it a fake tree.

// docFinding is one broken reference.
type docFinding struct {
	File string
	Line int
	Msg  string
}

func (f docFinding) String() string { return fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Msg) }

// docTree is the repository as the checker sees it.
type docTree struct {
	fsys    fs.FS
	files   map[string]bool     // tracked files present in fsys
	dirs    map[string]bool     // directories holding them ("." included)
	bases   map[string]bool     // base names of the files
	top     map[string]bool     // top-level directories
	anchors map[string][]string // Markdown file → its anchors, filled on demand
}

// newDocTree indexes the files of list that fsys holds; a tracked file
// missing from the work tree is neither scanned nor a valid target.
func newDocTree(fsys fs.FS, list []string) *docTree {
	t := &docTree{fsys: fsys, files: map[string]bool{}, dirs: map[string]bool{".": true},
		bases: map[string]bool{}, top: map[string]bool{}, anchors: map[string][]string{}}
	for _, f := range list {
		if st, err := fs.Stat(fsys, f); err != nil || st.IsDir() {
			continue
		}
		t.files[f] = true
		t.bases[path.Base(f)] = true
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			t.dirs[d] = true
			if path.Dir(d) == "." {
				t.top[d] = true
			}
		}
	}
	return t
}

// check scans every Markdown file and every Go file's comments.
func (t *docTree) check() []docFinding {
	var out []docFinding
	names := make([]string, 0, len(t.files))
	for f := range t.files {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		b, err := fs.ReadFile(t.fsys, f)
		if err != nil {
			out = append(out, docFinding{f, 0, err.Error()})
			continue
		}
		switch {
		case strings.HasSuffix(f, ".md"):
			out = append(out, t.checkMarkdown(f, b)...)
		case strings.HasSuffix(f, ".go"):
			out = append(out, t.checkGo(f, b)...)
		}
	}
	return out
}

var (
	mdFence      = regexp.MustCompile("^\\s*(```|~~~)")
	mdCodeSpan   = regexp.MustCompile("`[^`]*`")
	mdInlineLink = regexp.MustCompile(`\]\(\s*<?([^()\s<>]*)>?(?:\s+"[^"]*")?\s*\)`)
	mdRefDef     = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$`)
	urlToken     = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s)>\]"'` + "`" + `]*`)
	mdNameToken  = regexp.MustCompile(`(?:^|[^A-Za-z0-9_./-])((?:\.{1,2}/)*[A-Za-z0-9_-][A-Za-z0-9_./-]*\.md)(#[A-Za-z0-9_-]+)?\b`)
	upToken      = regexp.MustCompile(`(?:^|[^A-Za-z0-9_./-])((?:\.\./)+[A-Za-z0-9_./-]*)`)
	pathToken    = regexp.MustCompile(`(?:^|[^A-Za-z0-9_./*{<-])([A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)+)`)
	schemeRef    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	mdHeading    = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	htmlAnchor   = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	mdLinkMarkup = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
)

// pathExts are the extensions that make a path token a file reference.
var pathExts = map[string]bool{
	".go": true, ".md": true, ".yml": true, ".yaml": true, ".sh": true, ".svg": true,
	".json": true, ".txt": true, ".cfg": true, ".toml": true, ".mod": true, ".sum": true,
}

func (t *docTree) checkMarkdown(file string, b []byte) []docFinding {
	var out []docFinding
	dir := path.Dir(file)
	inFence := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if mdFence.MatchString(line) {
			inFence = !inFence
			continue
		}
		add := func(msg string) { out = append(out, docFinding{file, n, msg}) }
		rest := line
		if !inFence {
			code := mdCodeSpan.ReplaceAllStringFunc(line, blank)
			var targets [][2]int
			for _, m := range mdInlineLink.FindAllStringSubmatchIndex(code, -1) {
				targets = append(targets, [2]int{m[2], m[3]})
			}
			for _, m := range mdRefDef.FindAllStringSubmatchIndex(code, -1) {
				targets = append(targets, [2]int{m[2], m[3]})
			}
			masked := []byte(line)
			for _, r := range targets {
				if msg := t.checkLink(file, dir, line[r[0]:r[1]]); msg != "" {
					add(msg)
				}
				copy(masked[r[0]:r[1]], bytes.Repeat([]byte(" "), r[1]-r[0]))
			}
			rest = string(masked)
		}
		for _, msg := range t.checkText(file, dir, rest) {
			add(msg)
		}
	}
	return out
}

// checkGo checks the comments of a Go file. It scans tokens, so a file
// that does not compile is still checked.
func (t *docTree) checkGo(file string, b []byte) []docFinding {
	var out []docFinding
	fset := token.NewFileSet()
	tf := fset.AddFile(file, -1, len(b))
	var s scanner.Scanner
	s.Init(tf, b, func(token.Position, string) {}, scanner.ScanComments)
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			return out
		}
		if tok != token.COMMENT {
			continue
		}
		first := fset.Position(pos).Line
		for i, line := range strings.Split(lit, "\n") {
			for _, msg := range t.checkText(file, path.Dir(file), line) {
				out = append(out, docFinding{file, first + i, msg})
			}
		}
	}
}

func blank(s string) string { return strings.Repeat(" ", len(s)) }

// checkLink checks one Markdown link target and returns what is wrong.
func (t *docTree) checkLink(file, dir, target string) string {
	if target == "" || schemeRef.MatchString(target) || strings.HasPrefix(target, "//") {
		return ""
	}
	p, anchor, _ := strings.Cut(target, "#")
	if dec, err := url.PathUnescape(p); err == nil {
		p = dec
	}
	resolved := file
	if p != "" {
		var ok bool
		if resolved, ok = resolve(dir, p); !ok {
			return fmt.Sprintf("link %s points outside the repository", target)
		}
		if !t.files[resolved] && !t.dirs[resolved] {
			return fmt.Sprintf("link %s: no file %s in the repository", target, resolved)
		}
	}
	if anchor != "" && strings.HasSuffix(resolved, ".md") && !t.hasAnchor(resolved, anchor) {
		return fmt.Sprintf("link %s: %s has no heading #%s", target, resolved, anchor)
	}
	return ""
}

// checkText checks the references written as plain text on one line.
func (t *docTree) checkText(file, dir, line string) []string {
	var out []string
	line = urlToken.ReplaceAllStringFunc(line, blank)
	for _, m := range mdNameToken.FindAllStringSubmatch(line, -1) {
		name, anchor := m[1], strings.TrimPrefix(m[2], "#")
		found := ""
		for _, base := range []string{dir, "."} {
			if p, ok := resolve(base, name); ok && t.files[p] {
				found = p
				break
			}
		}
		if found == "" && !strings.Contains(name, "/") && t.bases[name] {
			continue // a bare name of a repository file; its anchor is not checked
		}
		switch {
		case found == "":
			out = append(out, fmt.Sprintf("cites %s, which is not in the repository", name))
		case anchor != "" && !t.hasAnchor(found, anchor):
			out = append(out, fmt.Sprintf("cites %s#%s: %s has no such heading", name, anchor, found))
		}
	}
	for _, m := range upToken.FindAllStringSubmatch(line, -1) {
		ref := strings.TrimRight(m[1], ".")
		p, ok := resolve(dir, ref)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("cites %s, which is outside the repository", ref))
		case !t.files[p] && !t.dirs[p]:
			out = append(out, fmt.Sprintf("cites %s: no file %s in the repository", ref, p))
		}
	}
	for _, m := range pathToken.FindAllStringSubmatch(line, -1) {
		ref := strings.TrimRight(m[1], ".")
		if !t.top[strings.SplitN(ref, "/", 2)[0]] || !pathExts[path.Ext(ref)] || strings.HasSuffix(ref, ".md") {
			continue // not a file path of this repository (.md names are checked above)
		}
		if !t.files[path.Clean(ref)] {
			if p, ok := resolve(dir, ref); !ok || !t.files[p] {
				out = append(out, fmt.Sprintf("cites %s: no such file in the repository", ref))
			}
		}
	}
	return out
}

// resolve joins p to dir (a leading / is the root) and reports whether the
// result stays inside the repository.
func resolve(dir, p string) (string, bool) {
	if strings.HasPrefix(p, "/") {
		dir, p = ".", strings.TrimLeft(p, "/")
	}
	r := path.Join(dir, strings.TrimSuffix(p, "/"))
	if r == ".." || strings.HasPrefix(r, "../") {
		return "", false
	}
	return r, true
}

func (t *docTree) hasAnchor(file, anchor string) bool {
	list, ok := t.anchors[file]
	if !ok {
		b, _ := fs.ReadFile(t.fsys, file)
		list = markdownAnchors(b)
		t.anchors[file] = list
	}
	for _, a := range list {
		if a == anchor {
			return true
		}
	}
	return false
}

// markdownAnchors lists the anchors GitHub gives a Markdown file: one per
// ATX heading outside code fences (a repeated slug gets -1, -2, ...), and
// every <a name> or <a id>.
func markdownAnchors(b []byte) []string {
	var out []string
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if mdFence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
		m := mdHeading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		slug := headingSlug(m[2])
		if n := seen[slug]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", slug, n))
		} else {
			out = append(out, slug)
		}
		seen[slug]++
	}
	return out
}

// headingSlug is GitHub's anchor of a heading: link markup reduced to its
// text, lower case, every character but letters, digits, marks, spaces,
// hyphens and underscores dropped, spaces turned into hyphens.
func headingSlug(h string) string {
	h = mdLinkMarkup.ReplaceAllString(h, "$1")
	var sb strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			sb.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			sb.WriteRune(r)
		}
	}
	return sb.String()
}
