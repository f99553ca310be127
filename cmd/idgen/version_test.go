package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestVersion: `idgen version` and `idgen --version` print the version,
// a commit line and the Go toolchain, and exit 0; the commit set at build
// time wins over the build info.
func TestVersion(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123456789abcdef"
	for _, arg := range []string{"version", "--version"} {
		var out, errOut bytes.Buffer
		if code := run([]string{arg}, &out, &errOut); code != 0 {
			t.Fatalf("idgen %s: exit %d, %s", arg, code, errOut.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) < 3 || lines[0] != "idgen v1.2.3" || lines[1] != "commit 0123456789abcdef" || !strings.HasPrefix(lines[len(lines)-1], "go go1.") {
			t.Errorf("idgen %s printed %q", arg, out.String())
		}
	}
}
