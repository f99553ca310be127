package infra

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// k8sFlag is one flag of an idgen subcommand, as its -h output shows it.
type k8sFlag struct {
	Name    string // drain-delay
	Env     string // IDGEN_DRAIN_DELAY
	Default string // "" when the help shows none (zero value)
}

// k8sFlagSets maps an idgen subcommand (serve, compensate) to its flags by
// environment variable name.
type k8sFlagSets map[string]map[string]k8sFlag

// k8sExtraEnv are variables idgen reads that are not flags.
var k8sExtraEnv = map[string]bool{
	"IDGEN_REDIS_PASSWORD": true, // the Redis password itself (serve and compensate)
}

// k8sIdgenFlags builds ../cmd/idgen and reads the flags of serve and
// compensate from their -h output, so the manifests are checked against the
// binary the image will hold, not against a list kept by hand. The build
// runs in the service's own module (the parent directory): infra's module
// keeps the service's dependencies out of its go.sum.
func k8sIdgenFlags(t *testing.T) k8sFlagSets {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "idgen")
	build := exec.Command("go", "build", "-o", bin, "./cmd/idgen")
	build.Dir = ".."
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/idgen: %v\n%s", err, out)
	}
	sets := k8sFlagSets{}
	for _, sub := range []string{"serve", "compensate"} {
		var out bytes.Buffer
		cmd := exec.Command(bin, sub, "-h")
		cmd.Stdout, cmd.Stderr = &out, &out
		_ = cmd.Run() // -h may exit 0 or 2; the text is what counts
		flags := k8sParseHelp(out.String())
		if len(flags) < 5 {
			t.Fatalf("idgen %s -h: found %d flags in:\n%s", sub, len(flags), out.String())
		}
		sets[sub] = flags
	}
	return sets
}

var (
	k8sHelpFlagRe    = regexp.MustCompile(`^\s{1,4}-([a-z0-9][a-z0-9-]*)(\s|$)`)
	k8sHelpEnvRe     = regexp.MustCompile(`\[\$(IDGEN_[A-Z0-9_]+)\]`)
	k8sHelpDefaultRe = regexp.MustCompile(`\(default ("[^"]*"|[^)]*)\)\s*$`)
)

// k8sParseHelp reads the flag package's PrintDefaults format:
//
//	-drain-delay duration
//	  	on SIGTERM, ... [$IDGEN_DRAIN_DELAY]
//	-shutdown-grace duration
//	  	how long ... [$IDGEN_SHUTDOWN_GRACE] (default 20s)
func k8sParseHelp(help string) map[string]k8sFlag {
	flags := map[string]k8sFlag{}
	var (
		name  string
		usage strings.Builder
	)
	flush := func() {
		if name == "" {
			return
		}
		u := usage.String()
		if m := k8sHelpEnvRe.FindStringSubmatch(u); m != nil {
			f := k8sFlag{Name: name, Env: m[1]}
			if d := k8sHelpDefaultRe.FindStringSubmatch(u); d != nil {
				f.Default = strings.Trim(d[1], `"`)
			}
			flags[f.Env] = f
		}
		name = ""
		usage.Reset()
	}
	for _, line := range strings.Split(help, "\n") {
		if m := k8sHelpFlagRe.FindStringSubmatch(line); m != nil {
			flush()
			name = m[1]
			continue
		}
		if name != "" {
			usage.WriteString(strings.TrimSpace(line))
			usage.WriteByte(' ')
		}
	}
	flush()
	return flags
}

// k8sIdgenSub returns the idgen subcommand a container runs ("serve",
// "compensate", ...) and whether the container runs idgen at all: its
// command is /usr/local/bin/idgen or its image is the idgen image.
func k8sIdgenSub(command, args []string, image string) (sub string, isIdgen bool) {
	repo := image
	if i := strings.LastIndexAny(repo, ":@"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	isIdgen = repo == "idgen" || strings.HasSuffix(repo, "/idgen") ||
		(len(command) > 0 && filepath.Base(command[0]) == "idgen")
	if !isIdgen {
		return "", false
	}
	argv := append(append([]string{}, command...), args...)
	if len(argv) > 0 && filepath.Base(argv[0]) == "idgen" {
		argv = argv[1:]
	}
	if len(argv) > 0 {
		sub = argv[0]
	}
	return sub, true
}
