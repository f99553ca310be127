package infra

// Readers and checks of infra/openfaas: stack.yml decoded strictly into the
// faas-cli stack schema (the fields used here), and the Dockerfile read
// instruction by instruction.

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ofStack mirrors the faas-cli stack file (github.com/openfaas/faas-cli
// stack.Services): an unknown key is an error, as a typo would be ignored by
// faas-cli.
type ofStack struct {
	Version       string                `yaml:"version"`
	Provider      ofProvider            `yaml:"provider"`
	Functions     map[string]ofFunction `yaml:"functions"`
	Configuration *ofConfiguration      `yaml:"configuration"`
}

type ofProvider struct {
	Name    string `yaml:"name"`
	Gateway string `yaml:"gateway"`
	Network string `yaml:"network"`
}

type ofConfiguration struct {
	Templates []struct {
		Name   string `yaml:"name"`
		Source string `yaml:"source"`
	} `yaml:"templates"`
	Copy []string `yaml:"copy"`
}

type ofFunction struct {
	Lang                   string            `yaml:"lang"`
	Handler                string            `yaml:"handler"`
	Image                  string            `yaml:"image"`
	FProcess               string            `yaml:"fprocess"`
	Environment            map[string]string `yaml:"environment"`
	EnvironmentFile        []string          `yaml:"environment_file"`
	Secrets                []string          `yaml:"secrets"`
	SkipBuild              bool              `yaml:"skip_build"`
	Constraints            []string          `yaml:"constraints"`
	Labels                 map[string]string `yaml:"labels"`
	Annotations            map[string]string `yaml:"annotations"`
	Limits                 *ofResources      `yaml:"limits"`
	Requests               *ofResources      `yaml:"requests"`
	ReadOnlyRootFilesystem bool              `yaml:"readonly_root_filesystem"`
	BuildArgs              map[string]string `yaml:"build_args"`
	BuildOptions           []string          `yaml:"build_options"`
	Namespace              string            `yaml:"namespace"`
}

type ofResources struct {
	Memory string `yaml:"memory"`
	CPU    string `yaml:"cpu"`
}

func ofDecodeStack(src string) (*ofStack, error) {
	dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
	dec.KnownFields(true)
	var s ofStack
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ofSecretDocs reads the stack file's "Secrets" comment block: lines
// "#   <name>: <what it is>".
func ofSecretDocs(src string) map[string]string {
	docs := map[string]string{}
	in := false
	line := regexp.MustCompile(`^#\s+([a-z0-9][a-z0-9.-]*):\s+(\S.*)$`)
	for _, l := range strings.Split(src, "\n") {
		switch {
		case strings.HasPrefix(l, "# Secrets"):
			in = true
		case !in:
		case strings.TrimSpace(l) == "#" || !strings.HasPrefix(l, "#"):
			in = false
		default:
			if m := line.FindStringSubmatch(l); m != nil {
				docs[m[1]] = m[2]
			}
		}
	}
	return docs
}

// ofInstr is one Dockerfile instruction, continuation lines joined.
type ofInstr struct {
	Cmd, Args string
	Line      int
}

type ofStage struct {
	From, Name string // base image as written, AS name
	Instrs     []ofInstr
}

type ofDockerfile struct {
	GlobalArgs map[string]string // ARG before the first FROM: name → default
	Stages     []*ofStage
}

func ofParseDockerfile(src string) (*ofDockerfile, error) {
	d := &ofDockerfile{GlobalArgs: map[string]string{}}
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue // comments inside a continuation are dropped
			}
			l = strings.TrimSuffix(l, "\\") + " " + next
		}
		cmd, args, _ := strings.Cut(l, " ")
		in := ofInstr{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		switch {
		case in.Cmd == "FROM":
			f := strings.Fields(in.Args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			st := &ofStage{}
			switch {
			case len(f) == 1:
				st.From = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				st.From, st.Name = f[0], f[2]
			default:
				return nil, fmt.Errorf("line %d: FROM %s", start, in.Args)
			}
			d.Stages = append(d.Stages, st)
		case len(d.Stages) == 0:
			if in.Cmd != "ARG" {
				return nil, fmt.Errorf("line %d: %s before the first FROM", start, in.Cmd)
			}
			name, def, _ := strings.Cut(in.Args, "=")
			d.GlobalArgs[name] = def
		default:
			st := d.Stages[len(d.Stages)-1]
			st.Instrs = append(st.Instrs, in)
		}
	}
	if len(d.Stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return d, nil
}

// ofWords splits like a shell: spaces separate words, double quotes group
// (backslash escapes inside them).
func ofWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			quoted, inWord = !quoted, true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// env returns a stage's ENV settings (both forms).
func (st *ofStage) env() (map[string]string, error) {
	env := map[string]string{}
	for _, in := range st.Instrs {
		if in.Cmd != "ENV" {
			continue
		}
		words, err := ofWords(in.Args)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", in.Line, err)
		}
		if len(words) > 0 && !strings.Contains(words[0], "=") {
			env[words[0]] = strings.Join(words[1:], " ") // ENV key value
			continue
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: %q is not key=value", in.Line, w)
			}
			env[k] = v
		}
	}
	return env, nil
}

// copies returns a stage's COPY --from=<from> instructions as src → dst.
func (st *ofStage) copies(from string) map[string]string {
	out := map[string]string{}
	for _, in := range st.Instrs {
		if in.Cmd != "COPY" {
			continue
		}
		f := strings.Fields(in.Args)
		var src []string
		stage := ""
		for _, w := range f {
			if v, ok := strings.CutPrefix(w, "--from="); ok {
				stage = v
			} else if !strings.HasPrefix(w, "--") {
				src = append(src, w)
			}
		}
		if stage == from && len(src) >= 2 {
			for _, s := range src[:len(src)-1] {
				out[s] = src[len(src)-1]
			}
		}
	}
	return out
}

func (st *ofStage) last(cmd string) (ofInstr, bool) {
	for i := len(st.Instrs) - 1; i >= 0; i-- {
		if st.Instrs[i].Cmd == cmd {
			return st.Instrs[i], true
		}
	}
	return ofInstr{}, false
}

var ofArgRef = regexp.MustCompile(`^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$`)

// base returns the ARG a stage's FROM names and its default.
func (d *ofDockerfile) base(st *ofStage) (arg, image string, ok bool) {
	m := ofArgRef.FindStringSubmatch(st.From)
	if m == nil {
		return "", st.From, false
	}
	def, ok := d.GlobalArgs[m[1]]
	return m[1], def, ok
}

func (d *ofDockerfile) stage(name string) *ofStage {
	for _, st := range d.Stages {
		if st.Name == name {
			return st
		}
	}
	return nil
}

var ofWatchdogImage = regexp.MustCompile(`^ghcr\.io/openfaas/of-watchdog:[0-9]+\.[0-9]+\.[0-9]+$`)

// ofImage is what the Dockerfile puts where: the watchdog and idgen paths
// in the final stage, and the final stage's ENV (the watchdog's defaults).
type ofImage struct {
	Watchdog, Idgen string
	Env             map[string]string
}

// ofCheckDockerfile: base images are build args (the watchdog's an
// of-watchdog release, a golang build stage, a distroless or scratch
// runtime), the binary is static (CGO_ENABLED=0) and -trimpath, the final
// stage runs the watchdog as a numeric non-root user, with fprocess and
// upstream_url defaults.
func ofCheckDockerfile(d *ofDockerfile) (ofImage, []string) {
	var p samProblems
	var img ofImage
	stages := map[string]bool{}
	watchdogStage, buildStage := "", (*ofStage)(nil)
	for _, st := range d.Stages {
		if stages[st.From] {
			stages[st.Name] = true
			continue // FROM <earlier stage>
		}
		arg, image, ok := d.base(st)
		switch {
		case arg == "":
			p.add("FROM %s: base images must be build args (ARG before the first FROM)", st.From)
		case !ok || image == "":
			p.add("FROM %s: no global ARG %s with a default", st.From, arg)
		case ofWatchdogImage.MatchString(image):
			watchdogStage = st.Name
		case strings.HasPrefix(image, "golang:"):
			buildStage = st
		}
		stages[st.Name] = true
	}
	if watchdogStage == "" {
		p.add("no stage FROM an ARG defaulting to ghcr.io/openfaas/of-watchdog:<version>")
	}
	final := d.Stages[len(d.Stages)-1]
	if buildStage == nil || buildStage == final {
		p.add("no golang build stage (FROM an ARG defaulting to golang:...)")
	} else {
		env, _ := buildStage.env()
		out := ""
		for _, in := range buildStage.Instrs {
			if in.Cmd != "RUN" || !strings.Contains(in.Args, "go build") {
				continue
			}
			if !strings.Contains(in.Args, "CGO_ENABLED=0") && env["CGO_ENABLED"] != "0" {
				p.add("line %d: go build without CGO_ENABLED=0: the runtime image has no libc", in.Line)
			}
			if !strings.Contains(in.Args, "-trimpath") && !strings.Contains(env["GOFLAGS"], "-trimpath") {
				p.add("line %d: go build without -trimpath", in.Line)
			}
			if m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(in.Args); m != nil && strings.Contains(in.Args, "./cmd/idgen") {
				out = m[1]
			}
		}
		if out == "" {
			p.add("build stage: no `go build ... -o <file> ./cmd/idgen`")
		} else if img.Idgen = final.copies(buildStage.Name)[out]; img.Idgen == "" {
			p.add("final stage does not COPY --from=%s %s", buildStage.Name, out)
		}
	}
	if _, image, _ := d.base(final); !strings.HasPrefix(image, "gcr.io/distroless/") && image != "scratch" {
		p.add("final stage FROM %q: want distroless or scratch", image)
	}
	if user, ok := final.last("USER"); !ok {
		p.add("final stage has no USER: it would run as root")
	} else if uid, err := strconv.Atoi(strings.SplitN(user.Args, ":", 2)[0]); err != nil || uid == 0 {
		p.add("line %d: USER %s: want a numeric non-root uid (runAsNonRoot can only verify numbers)", user.Line, user.Args)
	}
	if watchdogStage != "" {
		if img.Watchdog = final.copies(watchdogStage)["/fwatchdog"]; img.Watchdog == "" {
			p.add("final stage does not COPY --from=%s /fwatchdog", watchdogStage)
		}
	}
	ep, ok := final.last("ENTRYPOINT")
	if !ok {
		ep, ok = final.last("CMD")
	}
	first := ""
	if ok {
		if strings.HasPrefix(ep.Args, "[") {
			var words []string
			if err := yaml.Unmarshal([]byte(ep.Args), &words); err == nil && len(words) > 0 {
				first = words[0]
			}
		} else if f := strings.Fields(ep.Args); len(f) > 0 {
			first = f[0]
		}
	}
	if first == "" || first != img.Watchdog {
		p.add("the image must start the watchdog (%s), not %q", img.Watchdog, first)
	}
	env, err := final.env()
	if err != nil {
		p.add("final stage ENV: %v", err)
	}
	img.Env = env
	for _, k := range []string{"fprocess", "mode", "upstream_url"} {
		if env[k] == "" {
			p.add("final stage sets no %s", k)
		}
	}
	return img, p
}

// ofFunctions are the functions of the stack and the idgen command each
// runs; ofListenFlag is the flag that puts each on upstream_url.
var (
	ofFunctions  = map[string]string{"generate": "serve", "compensate": "compensate"}
	ofListenFlag = map[string]string{"serve": "listen", "compensate": "metrics-listen"}
)

const ofSecretDir = "/var/openfaas/secrets/"

// ofDuration parses a watchdog or idgen duration ("10s"; a bare number is
// seconds for the watchdog).
func ofDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

// ofCheckStack checks stack.yml against the image and idgen's flags: both
// functions, one image, fprocess running the image's idgen with the right
// command on upstream_url (loopback), watchdog in HTTP mode with readiness
// from idgen, every IDGEN_* variable a flag of the command, secrets
// documented, listed and used alike, timeouts and drain consistent, and
// scale-to-zero only where it is safe.
func ofCheckStack(s *ofStack, src string, img ofImage, flags map[string]map[string]samFlag) []string {
	var p samProblems
	if s.Provider.Name != "openfaas" {
		p.add("provider.name %q, want openfaas", s.Provider.Name)
	}
	docs := ofSecretDocs(src)
	usedDocs := map[string]bool{}
	images := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(ofFunctions)) {
		command := ofFunctions[name]
		fn, ok := s.Functions[name]
		if !ok {
			p.add("function %s missing", name)
			continue
		}
		images[fn.Image] = true
		env := map[string]string{}
		for k, v := range img.Env {
			env[k] = v
		}
		for k, v := range fn.Environment {
			env[k] = v
		}
		if fn.FProcess != "" {
			env["fprocess"] = fn.FProcess
		}
		cmdFlags := flags[command]
		flagNames := map[string]bool{}
		for _, f := range cmdFlags {
			flagNames[f.Name] = true
		}

		// fprocess: of-watchdog splits it on spaces (no shell, no quotes).
		fp := env["fprocess"]
		words := strings.Fields(fp)
		if strings.ContainsAny(fp, `"'`) || len(words) < 2 || words[0] != img.Idgen || words[1] != command {
			p.add("%s: fprocess %q, want %s %s ... (the image's idgen)", name, fp, img.Idgen, command)
		}
		listen := ""
		for i := 2; i < len(words); i++ {
			flagName, val, hasVal := strings.Cut(strings.TrimLeft(words[i], "-"), "=")
			if !strings.HasPrefix(words[i], "-") || !flagNames[flagName] {
				p.add("%s: fprocess argument %q is not a flag of idgen %s", name, words[i], command)
				continue
			}
			if !hasVal && !cmdFlags["IDGEN_"+strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))].Bool && i+1 < len(words) {
				i++
				val = words[i]
			}
			if flagName == ofListenFlag[command] {
				listen = val
			}
		}
		if env["mode"] != "http" {
			p.add("%s: watchdog mode %q, want http", name, env["mode"])
		}
		u, err := url.Parse(env["upstream_url"])
		switch {
		case err != nil || u.Scheme != "http":
			p.add("%s: upstream_url %q is not http://host:port", name, env["upstream_url"])
		case listen != u.Host:
			p.add("%s: idgen listens on %q (--%s) but the watchdog forwards to %q", name, listen, ofListenFlag[command], u.Host)
		default:
			if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
				p.add("%s: upstream %s is not loopback: idgen would be reachable around the watchdog", name, u.Host)
			}
		}
		if env["ready_path"] != "/health/ready" {
			p.add("%s: ready_path %q, want /health/ready (ready when idgen is)", name, env["ready_path"])
		}

		// Variables.
		for k, v := range env {
			_, fromStack := fn.Environment[k]
			if strings.HasPrefix(k, "IDGEN_") && k != "IDGEN_REDIS_PASSWORD" {
				// The image's defaults serve both commands: each must be
				// some command's; the function's own must be its command's.
				known := false
				for cmd, f := range flags {
					if _, ok := f[k]; ok && (cmd == command || !fromStack) {
						known = true
					}
				}
				if !known {
					p.add("%s: %s is not a variable of idgen %s", name, k, command)
				}
			}
			if k == "IDGEN_DEV" && v != "false" {
				p.add("%s: IDGEN_DEV turns authentication off", name)
			}
		}
		handler := map[string]string{"serve": "generate", "compensate": "compensate"}[command]
		for _, k := range samEnvRequired[handler] {
			if env[k] == "" {
				p.add("%s: %s is required", name, k)
			}
		}
		if fn.ReadOnlyRootFilesystem {
			if dd, set := env["IDGEN_DATA_DIR"]; command == "serve" && (!set || !strings.HasPrefix(dd, "/tmp")) {
				p.add("%s: IDGEN_DATA_DIR %q: with a read-only root only /tmp is writable", name, dd)
			}
		}

		// Secrets: listed ⇔ used by a variable ⇔ documented.
		listed := map[string]bool{}
		for _, sec := range fn.Secrets {
			listed[sec] = true
			usedDocs[sec] = true
			if docs[sec] == "" {
				p.add("%s: secret %s is not documented in the Secrets comment of stack.yml", name, sec)
			}
		}
		usedSecrets := map[string]bool{}
		for k, v := range env {
			if sec, ok := strings.CutPrefix(v, ofSecretDir); ok {
				usedSecrets[sec] = true
				if !listed[sec] {
					p.add("%s: %s reads secret %s, which the function does not list", name, k, sec)
				}
				if !strings.HasSuffix(k, "_FILE") && k != "IDGEN_JWT_PUBLIC_KEY" {
					p.add("%s: %s is not a file variable", name, k)
				}
			}
		}
		for sec := range listed {
			if !usedSecrets[sec] {
				p.add("%s: secret %s is mounted but no variable uses it", name, sec)
			}
		}

		// Timeouts and drain.
		dur := func(k, def string) time.Duration {
			v := env[k]
			if v == "" {
				v = def
			}
			d, err := ofDuration(v)
			if err != nil {
				p.add("%s: %s=%q: %v", name, k, v, err)
			}
			return d
		}
		execT, write := dur("exec_timeout", "10s"), dur("write_timeout", "10s")
		health := write // the watchdog's default healthcheck_interval
		if env["healthcheck_interval"] != "" {
			health = dur("healthcheck_interval", "")
		}
		if command == "serve" {
			if req := dur("IDGEN_REQUEST_TIMEOUT", "5s"); execT <= req {
				p.add("%s: exec_timeout %s must exceed IDGEN_REQUEST_TIMEOUT %s (idgen answers 503 itself first)", name, execT, req)
			}
			if drain := dur("IDGEN_DRAIN_DELAY", "0s"); drain < health {
				p.add("%s: IDGEN_DRAIN_DELAY %s < healthcheck_interval %s: idgen would close while the watchdog still forwards", name, drain, health)
			}
		}
		if write < execT {
			p.add("%s: write_timeout %s < exec_timeout %s", name, write, execT)
		}

		// Scaling.
		zero, err := strconv.ParseBool(fn.Labels["com.openfaas.scale.zero"])
		if err != nil {
			p.add("%s: label com.openfaas.scale.zero %q: want true or false", name, fn.Labels["com.openfaas.scale.zero"])
		}
		minR, errMin := strconv.Atoi(fn.Labels["com.openfaas.scale.min"])
		maxR, errMax := strconv.Atoi(fn.Labels["com.openfaas.scale.max"])
		if errMin != nil || errMax != nil || minR < 1 || maxR < minR || maxR > 4096 {
			p.add("%s: scale.min %q / scale.max %q: want 1 <= min <= max <= 4096 (worker slots)", name, fn.Labels["com.openfaas.scale.min"], fn.Labels["com.openfaas.scale.max"])
		}
		switch command {
		case "serve":
			if !zero {
				p.add("%s: scale to zero expected (com.openfaas.scale.zero: \"true\"): an idle generate holds only a worker slot", name)
			}
			if d, err := time.ParseDuration(fn.Labels["com.openfaas.scale.zero-duration"]); zero && (err != nil || d < time.Minute) {
				p.add("%s: com.openfaas.scale.zero-duration %q: want a duration of at least 1m (each scale-up claims a slot and a range)", name, fn.Labels["com.openfaas.scale.zero-duration"])
			}
		case "compensate":
			if zero || fn.Labels["com.openfaas.scale.zero"] == "" {
				p.add("%s: must not scale to zero (com.openfaas.scale.zero: \"false\"): a stream consumer gets no HTTP traffic and would stay stopped", name)
			}
		}
	}
	if len(images) != 1 {
		p.add("the functions use %d images, want the one of the Dockerfile", len(images))
	}
	for sec := range docs {
		if !usedDocs[sec] {
			p.add("secret %s is documented but no function lists it", sec)
		}
	}
	sort.Strings(p)
	return p
}
