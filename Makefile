# idgen — see README.md. Two commands do all setup: `make run` and `make test`;
# `make check` is the fast lane, with nothing to install.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 0
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Three Go modules: the service (this directory; its go.mod lists what the
# binary ships), tests/ (the process-level suites and the bench, chaos and
# compose-test programs, with their own dependencies) and infra/ (the
# deployment files).
MODULES := . tests infra

COMPOSE ?= docker-compose -f docker-compose.yml -f docker-compose.offline.yml

.PHONY: check check-service check-tests check-infra lint chaos images compose-test compose-monitoring-test tools all build lambda build-GenerateFunction build-CompensateFunction run test deps bench fuzz fmt vet clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/idgen ./cmd/idgen

# The Lambda bootstraps (provided.al2023): the one binary, without the RPC
# mode, chosen per function by its Handler (generate, compensate).
lambda:
	@mkdir -p bin/lambda/generate bin/lambda/compensate
	CGO_ENABLED=0 GOOS=linux $(GO) build -tags lambda.norpc -trimpath -ldflags '$(LDFLAGS)' -o bin/lambda/generate/bootstrap ./cmd/idgen
	cp bin/lambda/generate/bootstrap bin/lambda/compensate/bootstrap

# `sam build` (BuildMethod: makefile) calls build-<LogicalId> with
# ARTIFACTS_DIR set; the functions run on provided.al2023 / arm64.
LAMBDA_ARCH ?= arm64
build-GenerateFunction build-CompensateFunction:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(LAMBDA_ARCH) $(GO) build -tags lambda.norpc -trimpath -ldflags '$(LDFLAGS)' -o $(ARTIFACTS_DIR)/bootstrap ./cmd/idgen

# One instance, embedded store under ./data, auth OFF (said loudly in the log).
run: build
	./bin/idgen serve --dev --listen 127.0.0.1:8080 --data-dir ./data

# gofmt and go vet, every module.
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

# The fast lane: lint, build, and every test that needs no server and no
# idgen binary (docs/benchmarks.md has its wall time on 2 cores). go test
# -short makes the harnesses skip the others (harness/proc/short.go) and
# start nothing; make test runs them all. go vet (lint) has compiled every
# package of every module, so only the service's module is built again, for
# its binaries. The three modules' tests run at once, so that a module's
# last long package does not leave a core idle. infra's tests run go and
# git, whose inputs the test cache does not see, so they always run.
check: lint
	$(GO) build ./...
	$(MAKE) --no-print-directory -j3 check-service check-tests check-infra

check-service:
	$(GO) test -short ./...

check-tests:
	cd tests && $(GO) test -short ./...

check-infra:
	cd infra && $(GO) test -short -count=1 ./...

# Installs the Debian packages the tests need (ZooKeeper, Redis, wrk, ...)
# when they are missing, then runs every test with the race detector.
deps:
	bash scripts/install-deps.sh

test: deps build lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...
	# The unit tests of the bench, chaos and compose-test programs, then the
	# process-level fault suites, which time sessions and failovers: one
	# package at a time, so they do not starve each other of the 2 cores.
	cd tests && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./cmd/...
	cd tests && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m -p 1 $$($(GO) list ./... | grep -v /cmd/)
	# The deployment files (SAM, Kubernetes, OpenFaaS, LocalStack, monitoring,
	# backups): a module of their own, so the Kubernetes types stay out of
	# the service's build.
	cd infra && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...
	bash scripts/fuzz.sh 1

# Every fuzz target for 12 times the execution budget of make test
# (about a minute each).
fuzz:
	bash scripts/fuzz.sh 12

# The full fault-injection run (ZooKeeper ensemble, Redis + Sentinels, 3
# durable instances behind HAProxy, 2 compensate workers, 11 faults, ≥ 1M
# IDs; then 3 operator and resource faults on embedded instances whose data
# and audit volumes are tmpfs mounts, so it runs as root); its 3–4 minute
# smoke runs inside make test (tests/chaose2e).
chaos: deps build tools
	./bin/idgen-chaos -idgen bin/idgen

bench: deps build tools
	./bin/idgen-bench -idgen bin/idgen

# The bench, chaos and compose-test programs of the tests module, built into
# bin/ and run from here, so their paths (bin/idgen, bench/, the compose
# files) are the repository's.
tools:
	@mkdir -p bin
	cd tests && $(GO) build -trimpath -o ../bin/ ./cmd/idgen-bench ./cmd/idgen-chaos ./cmd/idgen-composetest

# Every image of the docker-compose stack from local material only (no
# registry needed): debootstrap base, Debian packages, the host's Go, and
# Jaeger for the monitoring profile from the Go module proxy.
images:
	bash scripts/images.sh

# The compose stack on this machine: up, 10k IDs through the load balancer,
# scale 3→5→2 under load, kill an instance, compensate through the stream,
# down -v. .ci/run runs it whenever a Docker engine answers. It runs no
# monitoring profile, so it builds no Jaeger image.
compose-test: tools
	bash scripts/images.sh --no-jaeger
	./bin/idgen-composetest -compose "$(COMPOSE)"

# The same with the monitoring profile's Jaeger, the instances exporting
# to it, and a last phase that finds the run's spans in Jaeger.
compose-monitoring-test: images tools
	./bin/idgen-composetest -compose "$(COMPOSE)" -traces

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
