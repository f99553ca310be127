package infra

// Tests of infra/openfaas: stack.yml decodes strictly into the faas-cli
// schema and matches the Dockerfile and idgen's flags; the Dockerfile takes
// its base images as build args and runs the watchdog as non-root.

import (
	"strings"
	"testing"
)

const (
	ofStackPath      = "openfaas/stack.yml"
	ofDockerfilePath = "openfaas/Dockerfile"
)

// ofCheck runs every check of the two files and returns the problems.
func ofCheck(stackSrc, dockerSrc string) []string {
	d, err := ofParseDockerfile(dockerSrc)
	if err != nil {
		return []string{"Dockerfile: " + err.Error()}
	}
	img, problems := ofCheckDockerfile(d)
	s, err := ofDecodeStack(stackSrc)
	if err != nil {
		return append(problems, "stack.yml: "+err.Error())
	}
	flags, err := samIdgenFlags()
	if err != nil {
		return append(problems, err.Error())
	}
	return append(problems, ofCheckStack(s, stackSrc, img, flags)...)
}

func TestOpenFaaS(t *testing.T) {
	t.Parallel()
	stackSrc, dockerSrc := readText(t, ofStackPath), readText(t, ofDockerfilePath)
	for _, p := range ofCheck(stackSrc, dockerSrc) {
		t.Error(p)
	}
	// The documented secrets are the ones the functions list (checked in
	// ofCheckStack); make sure the block was found at all.
	if docs := ofSecretDocs(stackSrc); len(docs) < 2 {
		t.Errorf("stack.yml documents %d secrets (a \"# Secrets\" comment block of \"#   name: what\" lines)", len(docs))
	}
}

// TestOpenFaaSChecksCatchBreakage breaks stack.yml or the Dockerfile one way
// at a time and expects the checks to name the break.
func TestOpenFaaSChecksCatchBreakage(t *testing.T) {
	t.Parallel()
	stackSrc, dockerSrc := readText(t, ofStackPath), readText(t, ofDockerfilePath)
	cases := []struct {
		name       string
		dockerfile bool // the break is in the Dockerfile, not stack.yml
		old, new   string
		want       string
	}{
		{name: "unknown field", old: "    readonly_root_filesystem: true\n", new: "    read_only_root_filesystem: true\n", want: "field read_only_root_filesystem not found"},
		{name: "unknown provider field", old: "  name: openfaas\n", new: "  name: openfaas\n  gatway: x\n", want: "field gatway not found"},
		{name: "provider", old: "  name: openfaas\n", new: "  name: faasd\n", want: `provider.name "faasd"`},
		{name: "function missing", old: "  compensate:\n    lang: dockerfile", new: "  compensator:\n    lang: dockerfile", want: "function compensate missing"},
		{name: "two images", old: "    image: ${IDGEN_OPENFAAS_IMAGE:-ghcr.io/idgen/idgen-openfaas:latest}\n", new: "    image: ghcr.io/idgen/other:1\n", want: "the functions use 2 images"},
		{name: "duplicate key", old: "    fprocess: /usr/local/bin/idgen compensate", new: "    image: other\n    fprocess: /usr/local/bin/idgen compensate", want: "mapping key \"image\" already defined"},
		{name: "fprocess command", old: "fprocess: /usr/local/bin/idgen compensate", new: "fprocess: /usr/local/bin/idgen serve", want: "compensate: fprocess"},
		{name: "fprocess binary", old: "fprocess: /usr/local/bin/idgen compensate", new: "fprocess: /usr/bin/idgen compensate", want: "compensate: fprocess"},
		{name: "fprocess quoted", old: "fprocess: /usr/local/bin/idgen compensate --metrics-listen 127.0.0.1:8081", new: "fprocess: '/usr/local/bin/idgen compensate --metrics-listen \"127.0.0.1:8081\"'", want: "compensate: fprocess"},
		{name: "fprocess unknown flag", old: "--metrics-listen 127.0.0.1:8081", new: "--metrics-addr 127.0.0.1:8081", want: `argument "--metrics-addr" is not a flag`},
		{name: "listen off upstream", old: "--metrics-listen 127.0.0.1:8081", new: "--metrics-listen 127.0.0.1:9090", want: `idgen listens on "127.0.0.1:9090"`},
		{name: "ready path", old: "      ready_path: /health/ready\n", new: "      ready_path: /healthz\n", want: `ready_path "/healthz"`},
		{name: "variable misspelt", old: "IDGEN_CLAIM_IDLE: 30s", new: "IDGEN_CLAIM_TIMEOUT: 30s", want: "IDGEN_CLAIM_TIMEOUT is not a variable of idgen compensate"},
		{name: "serve variable on compensate", old: "      IDGEN_FAILURE_STREAM: idgen:failures\n", new: "      IDGEN_FAILURE_STREAM: idgen:failures\n      IDGEN_SHARD: \"0\"\n", want: "IDGEN_SHARD is not a variable of idgen compensate"},
		{name: "dev mode", old: "      IDGEN_SHARD: \"0\"\n", new: "      IDGEN_SHARD: \"0\"\n      IDGEN_DEV: \"true\"\n", want: "IDGEN_DEV turns authentication off"},
		{name: "required variable", old: "      IDGEN_METADATA_KEY_FILE: /var/openfaas/secrets/idgen-metadata-keys\n", new: "", want: "IDGEN_METADATA_KEY_FILE is required"},
		{name: "secret undocumented", old: "#   idgen-zookeeper-password: ", new: "#   idgen-zk-password: ", want: "secret idgen-zookeeper-password is not documented"},
		{name: "documented secret unused", old: "#   idgen-zookeeper-password: ", new: "#   idgen-zookeeper-password: x\n#   idgen-tls-key: ", want: "secret idgen-tls-key is documented but no function lists it"},
		{name: "secret mounted unused", old: "      IDGEN_ZOOKEEPER_PASSWORD_FILE: /var/openfaas/secrets/idgen-zookeeper-password\n", new: "", want: "secret idgen-zookeeper-password is mounted but no variable uses it"},
		{name: "secret not listed", old: "    secrets:\n      - idgen-redis-password\n    labels:", new: "    secrets:\n      - idgen-metadata-keys\n    labels:", want: "reads secret idgen-redis-password, which the function does not list"},
		{name: "compensate scales to zero", old: "com.openfaas.scale.zero: \"false\"", new: "com.openfaas.scale.zero: \"true\"", want: "compensate: must not scale to zero"},
		{name: "generate scale-to-zero label missing", old: "      com.openfaas.scale.zero: \"true\"\n", new: "", want: "generate: label com.openfaas.scale.zero"},
		{name: "generate zero duration", old: "com.openfaas.scale.zero-duration: 15m", new: "com.openfaas.scale.zero-duration: 15 minutes", want: "zero-duration"},
		{name: "generate min 0", old: "      com.openfaas.scale.min: \"1\"\n", new: "      com.openfaas.scale.min: \"0\"\n", want: "generate: scale.min"},
		{name: "exec timeout below request timeout", old: "      exec_timeout: 10s\n      healthcheck_interval: 10s\n", new: "      exec_timeout: 4s\n      healthcheck_interval: 10s\n", want: "exec_timeout 4s must exceed IDGEN_REQUEST_TIMEOUT 5s"},
		{name: "drain shorter than watchdog", old: "IDGEN_DRAIN_DELAY: 10s", new: "IDGEN_DRAIN_DELAY: 2s", want: "IDGEN_DRAIN_DELAY 2s < healthcheck_interval 10s"},
		{name: "write below exec", old: "      write_timeout: 15s\n      exec_timeout: 10s\n      healthcheck_interval: 5s\n", new: "      write_timeout: 5s\n      exec_timeout: 10s\n      healthcheck_interval: 5s\n", want: "write_timeout 5s < exec_timeout 10s"},
		{dockerfile: true, name: "watchdog not a build arg", old: "FROM ${WATCHDOG_IMAGE} AS watchdog", new: "FROM ghcr.io/openfaas/of-watchdog:0.11.5 AS watchdog", want: "base images must be build args"},
		{dockerfile: true, name: "watchdog image", old: "ARG WATCHDOG_IMAGE=ghcr.io/openfaas/of-watchdog:0.11.5", new: "ARG WATCHDOG_IMAGE=openfaas/of-watchdog:latest", want: "no stage FROM an ARG defaulting to ghcr.io/openfaas/of-watchdog"},
		{dockerfile: true, name: "base arg missing", old: "ARG GO_IMAGE=golang:1.26-bookworm\n", new: "", want: "no global ARG GO_IMAGE"},
		{dockerfile: true, name: "no golang stage", old: "ARG GO_IMAGE=golang:1.26-bookworm", new: "ARG GO_IMAGE=debian:bookworm", want: "no golang build stage"},
		{dockerfile: true, name: "cgo", old: "RUN CGO_ENABLED=0 go build", new: "RUN go build", want: "without CGO_ENABLED=0"},
		{dockerfile: true, name: "trimpath", old: "go build -trimpath ", new: "go build ", want: "without -trimpath"},
		{dockerfile: true, name: "runtime image", old: "ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot", new: "ARG RUNTIME_IMAGE=alpine:3.20", want: "want distroless or scratch"},
		{dockerfile: true, name: "root", old: "USER 65532:65532", new: "USER 0:0", want: "want a numeric non-root uid"},
		{dockerfile: true, name: "named user", old: "USER 65532:65532", new: "USER nonroot", want: "want a numeric non-root uid"},
		{dockerfile: true, name: "no user", old: "USER 65532:65532\n", new: "", want: "final stage has no USER"},
		{dockerfile: true, name: "watchdog not copied", old: "COPY --from=watchdog /fwatchdog /usr/local/bin/fwatchdog\n", new: "", want: "does not COPY --from=watchdog /fwatchdog"},
		{dockerfile: true, name: "entrypoint", old: `ENTRYPOINT ["/usr/local/bin/fwatchdog"]`, new: `ENTRYPOINT ["/usr/local/bin/idgen"]`, want: "the image must start the watchdog"},
		{dockerfile: true, name: "binary elsewhere", old: "COPY --from=build /out/idgen /usr/local/bin/idgen", new: "COPY --from=build /out/idgen /usr/bin/idgen", want: "generate: fprocess"},
		{dockerfile: true, name: "upstream port", old: `upstream_url="http://127.0.0.1:8081"`, new: `upstream_url="http://127.0.0.1:8082"`, want: "but the watchdog forwards to \"127.0.0.1:8082\""},
		{dockerfile: true, name: "upstream not loopback", old: "--listen 127.0.0.1:8081\" \\\n    mode=\"http\" \\\n    upstream_url=\"http://127.0.0.1:8081\"", new: "--listen 10.0.0.1:8081\" \\\n    mode=\"http\" \\\n    upstream_url=\"http://10.0.0.1:8081\"", want: "is not loopback"},
		{dockerfile: true, name: "watchdog mode", old: `mode="http"`, new: `mode="streaming"`, want: `watchdog mode "streaming"`},
		{dockerfile: true, name: "data dir", old: `IDGEN_DATA_DIR="/tmp/idgen"`, new: `IDGEN_DATA_DIR="/data"`, want: `IDGEN_DATA_DIR "/data"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, d := stackSrc, dockerSrc
			target := &s
			if c.dockerfile {
				target = &d
			}
			if !strings.Contains(*target, c.old) {
				t.Fatalf("the file no longer contains %q: update this case", c.old)
			}
			*target = strings.Replace(*target, c.old, c.new, 1)
			problems := ofCheck(s, d)
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Fatalf("replacing %q by %q: no problem mentions %q; got %q", c.old, c.new, c.want, problems)
		})
	}
}
