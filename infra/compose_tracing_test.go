package infra

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The compose `monitoring` profile runs Jaeger beside Prometheus and
// Grafana. These checks hold its wiring together: Jaeger's ports are
// loopback-only, the instances and the compensate worker export to it when
// the documented variable is set, and nothing exports (nor waits for
// Jaeger) without it, since a profile cannot set a variable.

// composeService is the part of a compose service the checks read, YAML
// merge keys (x-idgen-env) resolved by the decoder.
type composeService struct {
	Profiles    []string          `yaml:"profiles"`
	Image       string            `yaml:"image"`
	Ports       []string          `yaml:"ports"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   any               `yaml:"depends_on"` // a list or a map by service
}

// dependsOn returns the services s waits for, in either form.
func (s *composeService) dependsOn() []string {
	var out []string
	switch d := s.DependsOn.(type) {
	case []any:
		for _, v := range d {
			out = append(out, fmt.Sprint(v))
		}
	case map[string]any:
		for k := range d {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

type composeFile struct {
	Services map[string]*composeService `yaml:"services"`
}

// composeTracing is what the checks read, from docker-compose.yml, the
// offline override, scripts/images.sh and infra/jaeger/Dockerfile.
type composeTracing struct {
	Compose, Offline composeFile
	// Endpoint is the IDGEN_OTLP_ENDPOINT of the command the compose
	// file's header documents for traces.
	Endpoint string
	// ImagesJaeger is the image scripts/images.sh builds for Jaeger.
	ImagesJaeger string
	Dockerfile   string
}

var (
	composeVar      = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}`)
	composeTraceCmd = regexp.MustCompile(`(?m)^#\s+IDGEN_OTLP_ENDPOINT=(\S+) docker-compose --profile monitoring up\s*$`)
	imagesJaeger    = regexp.MustCompile(`(?m)^JAEGER_IMAGE=(\S+)\s*$`)
)

// interpolate expands ${VAR}, ${VAR:-default} and ${VAR-default} as
// compose does, with env as the environment.
func interpolate(s string, env map[string]string) string {
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		p := composeVar.FindStringSubmatch(m)
		v, set := env[p[1]]
		switch {
		case p[2] == ":-" && v == "", p[2] == "-" && !set:
			return p[3]
		}
		return v
	})
}

func loadComposeTracing(t *testing.T) *composeTracing {
	t.Helper()
	var b composeTracing
	readYAML(t, filepath.Join("..", "docker-compose.yml"), &b.Compose)
	readYAML(t, filepath.Join("..", "docker-compose.offline.yml"), &b.Offline)
	src := readText(t, filepath.Join("..", "docker-compose.yml"))
	if m := composeTraceCmd.FindStringSubmatch(src); m != nil {
		b.Endpoint = m[1]
	}
	if m := imagesJaeger.FindStringSubmatch(readText(t, filepath.Join("..", "scripts", "images.sh"))); m != nil {
		b.ImagesJaeger = m[1]
	}
	b.Dockerfile = readText(t, filepath.Join("jaeger", "Dockerfile"))
	return &b
}

// tracingProblems returns every broken invariant of b.
func tracingProblems(b *composeTracing) []string {
	var out []string
	bad := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	svcs := b.Compose.Services
	monitoring := func(name string) bool { return svcs[name] != nil && slices.Contains(svcs[name].Profiles, "monitoring") }

	j := svcs["jaeger"]
	switch {
	case j == nil:
		bad("no jaeger service")
	case !slices.Equal(j.Profiles, []string{"monitoring"}):
		bad("jaeger: profiles %v, want [monitoring]", j.Profiles)
	case !strings.Contains(j.Image, "${JAEGER_IMAGE:-"):
		bad("jaeger: image %q cannot be chosen with JAEGER_IMAGE", j.Image)
	}
	if j != nil && !slices.ContainsFunc(j.Ports, func(p string) bool { return strings.HasSuffix(p, ":16686") }) {
		bad("jaeger: the UI (16686) is not published: %v", j.Ports)
	}

	// Every UI of the profile is reachable from this host only.
	names := make([]string, 0, len(svcs))
	for n := range svcs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !monitoring(n) {
			continue
		}
		for _, p := range svcs[n].Ports {
			parts := strings.Split(interpolate(p, nil), ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				bad("%s: port %q is not bound to 127.0.0.1", n, p)
			}
		}
	}

	// The endpoint the header documents reaches Jaeger's OTLP/HTTP port.
	u, err := url.Parse(b.Endpoint)
	switch {
	case b.Endpoint == "":
		bad("docker-compose.yml's header documents no IDGEN_OTLP_ENDPOINT=... docker-compose --profile monitoring up")
	case err != nil || u.Scheme != "http" || u.Port() != "4318":
		bad("documented endpoint %q is not http://<host>:4318 (OTLP/HTTP)", b.Endpoint)
	case !monitoring(u.Hostname()):
		bad("documented endpoint %q names %q, not a service of the monitoring profile", b.Endpoint, u.Hostname())
	}
	on := map[string]string{"IDGEN_OTLP_ENDPOINT": b.Endpoint}
	for _, n := range []string{"idgen", "compensate"} {
		s := svcs[n]
		if s == nil {
			bad("no %s service", n)
			continue
		}
		if v, ok := s.Environment["IDGEN_OTLP_ENDPOINT"]; !ok || interpolate(v, on) != b.Endpoint {
			bad("%s: IDGEN_OTLP_ENDPOINT %q does not pass the variable through", n, v)
		}
		for _, k := range []string{"IDGEN_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
			if v := interpolate(s.Environment[k], nil); v != "" {
				bad("%s: %s is %q without the variable: tracing must be off when the profile may not be up", n, k, v)
			}
		}
	}
	// A service outside the profile that waits for one inside it cannot
	// start without the profile.
	for _, n := range names {
		if monitoring(n) {
			continue
		}
		for _, d := range svcs[n].dependsOn() {
			if monitoring(d) {
				bad("%s depends on %s, which runs only with the monitoring profile", n, d)
			}
		}
	}

	// Offline, the image scripts/images.sh builds, listening beyond localhost.
	if o := b.Offline.Services["jaeger"]; o == nil || o.Image == "" || o.Image != b.ImagesJaeger {
		bad("docker-compose.offline.yml: jaeger image %v is not scripts/images.sh's JAEGER_IMAGE %q", o, b.ImagesJaeger)
	}
	if !regexp.MustCompile(`(?m)^ENV JAEGER_LISTEN_HOST=0\.0\.0\.0\s*$`).MatchString(b.Dockerfile) {
		bad("infra/jaeger/Dockerfile: JAEGER_LISTEN_HOST is not 0.0.0.0, so the receivers listen on localhost only")
	}
	if !regexp.MustCompile(`(?m)^EXPOSE .*\b4318\b.*\b16686\b`).MatchString(b.Dockerfile) {
		bad("infra/jaeger/Dockerfile does not expose 4318 and 16686")
	}
	return out
}

func TestComposeTracing(t *testing.T) {
	t.Parallel()
	b := loadComposeTracing(t)
	for _, p := range tracingProblems(b) {
		t.Error(p)
	}
	// The parse found what it checks, or it checked nothing.
	if h, _, err := net.SplitHostPort(strings.TrimPrefix(b.Endpoint, "http://")); err != nil || h != "jaeger" {
		t.Errorf("documented endpoint %q, want http://jaeger:4318", b.Endpoint)
	}
	doc := readText(t, filepath.Join("..", "docs", "operations.md"))
	if !strings.Contains(doc, "IDGEN_OTLP_ENDPOINT="+b.Endpoint+" docker-compose --profile monitoring up") {
		t.Errorf("docs/operations.md does not give the command with IDGEN_OTLP_ENDPOINT=%s", b.Endpoint)
	}
}

// TestComposeTracingChecksCatchBreakage breaks the decoded files one
// invariant at a time and expects tracingProblems to say so.
func TestComposeTracingChecksCatchBreakage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, want string
		breakIt    func(b *composeTracing)
	}{
		{"no jaeger", "no jaeger service", func(b *composeTracing) { delete(b.Compose.Services, "jaeger") }},
		{"jaeger in every stack", "profiles []", func(b *composeTracing) { b.Compose.Services["jaeger"].Profiles = nil }},
		{"fixed image", "JAEGER_IMAGE", func(b *composeTracing) { b.Compose.Services["jaeger"].Image = "jaegertracing/jaeger:2.12.0" }},
		{"UI unpublished", "16686) is not published", func(b *composeTracing) { b.Compose.Services["jaeger"].Ports = nil }},
		{"UI on every interface", `port "16686:16686" is not bound`, func(b *composeTracing) {
			b.Compose.Services["jaeger"].Ports = []string{"16686:16686"}
		}},
		{"UI on 0.0.0.0", "is not bound to 127.0.0.1", func(b *composeTracing) {
			b.Compose.Services["jaeger"].Ports = []string{"0.0.0.0:${JAEGER_UI_PORT:-16686}:16686"}
		}},
		{"grafana on every interface", "grafana: port", func(b *composeTracing) {
			b.Compose.Services["grafana"].Ports = []string{"3000:3000"}
		}},
		{"endpoint undocumented", "documents no", func(b *composeTracing) { b.Endpoint = "" }},
		{"OTLP/gRPC port", "is not http://<host>:4318", func(b *composeTracing) { b.Endpoint = "http://jaeger:4317" }},
		{"endpoint outside the profile", `names "collector"`, func(b *composeTracing) { b.Endpoint = "http://collector:4318" }},
		{"tracing always on", "without the variable", func(b *composeTracing) {
			b.Compose.Services["idgen"].Environment["IDGEN_OTLP_ENDPOINT"] = "${IDGEN_OTLP_ENDPOINT:-http://jaeger:4318}"
		}},
		{"OTEL variable always on", "OTEL_EXPORTER_OTLP_ENDPOINT is", func(b *composeTracing) {
			b.Compose.Services["compensate"].Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://jaeger:4318"
		}},
		{"worker not traced", "compensate: IDGEN_OTLP_ENDPOINT", func(b *composeTracing) {
			delete(b.Compose.Services["compensate"].Environment, "IDGEN_OTLP_ENDPOINT")
		}},
		{"instances wait for Jaeger", "idgen depends on jaeger", func(b *composeTracing) {
			b.Compose.Services["idgen"].DependsOn.(map[string]any)["jaeger"] = map[string]any{"condition": "service_started"}
		}},
		{"offline image not built", "is not scripts/images.sh's", func(b *composeTracing) {
			b.Offline.Services["jaeger"].Image = "jaegertracing/jaeger:2.12.0"
		}},
		{"receivers on localhost", "JAEGER_LISTEN_HOST", func(b *composeTracing) {
			b.Dockerfile = strings.ReplaceAll(b.Dockerfile, "JAEGER_LISTEN_HOST=0.0.0.0", "JAEGER_LISTEN_HOST=localhost")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := loadComposeTracing(t)
			c.breakIt(b)
			got := strings.Join(tracingProblems(b), "\n")
			if !strings.Contains(got, c.want) {
				t.Errorf("want a problem with %q, got:\n%s", c.want, got)
			}
		})
	}
}

func TestInterpolate(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SET": "v", "EMPTY": ""}
	for in, want := range map[string]string{
		"${SET:-d}": "v", "${EMPTY:-d}": "d", "${UNSET:-d}": "d",
		"${EMPTY-d}": "", "${UNSET-d}": "d", "${UNSET}": "", "a${SET}b": "avb",
		"127.0.0.1:${PORT:-16686}:16686": "127.0.0.1:16686:16686", "${X:-}": "",
	} {
		if got := interpolate(in, env); got != want {
			t.Errorf("interpolate(%q) = %q, want %q", in, got, want)
		}
	}
}
