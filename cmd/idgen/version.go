package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// commit is set at build time with -ldflags "-X main.commit=<sha>" (make,
// the Dockerfile); without it the build info Go embeds inside a git
// checkout names it.
var commit = ""

// printVersion writes the build's version (-ldflags -X main.version), the
// commit it was built from (and whether that tree had uncommitted changes,
// when the build info says) and the Go toolchain.
func printVersion(w io.Writer) {
	commit, modified, at := commit, false, ""
	if bi, ok := debug.ReadBuildInfo(); ok && commit == "" {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			case "vcs.time":
				at = s.Value
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	if modified {
		commit += " (modified)"
	}
	fmt.Fprintf(w, "idgen %s\ncommit %s\n", version, commit)
	if at != "" {
		fmt.Fprintf(w, "commit time %s\n", at)
	}
	fmt.Fprintf(w, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
