#!/usr/bin/env bash
# Builds every image the docker-compose stack needs from local material
# only, for a machine where a Docker engine runs but no registry answers:
#   idgen-offline/debian:bookworm   debootstrap (Debian's archive) + docker import
#   idgen-offline/static:nonroot    CA certificates + a nonroot user, docker import
#   idgen-offline/golang:<go>       the host's Go toolchain on the Debian base
#   idgen-offline/zookeeper:3.8     Debian's zookeeper package (official image's env)
#   idgen-offline/redis:7           Debian's redis-server / redis-sentinel
#   idgen-offline/haproxy:2.6       Debian's haproxy
#   idgen/idgen:dev                 ./Dockerfile with the images above as build
#                                   args and a vendored copy of the sources
#   idgen-offline/jaeger:2.12.0     Jaeger all-in-one for the monitoring profile:
#                                   cmd/jaeger of the Go module v1.75.0, static,
#                                   on the static base (infra/jaeger/Dockerfile)
# An image is rebuilt only when its inputs changed (label idgen.inputs), so a
# second run takes seconds. docker-compose.offline.yml selects these images.
# --no-jaeger skips Jaeger, which only the monitoring profile runs (make
# compose-test runs none): its first build compiles for minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${IDGEN_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idgen-images}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
IDGEN_IMAGE="${IDGEN_IMAGE:-idgen/idgen:dev}"
export DOCKER_BUILDKIT=0 # the legacy builder needs no buildx plugin
# build runs docker build without the legacy builder's deprecation banner.
build() { docker build "$@" 2> >(grep -vE 'DEPRECATED|BuildKit|environment-variable|^$' >&2); }
mkdir -p "$CACHE"

log() { printf 'images: %s\n' "$*" >&2; }
hash_of() { sha256sum | cut -c1-16; }
image_inputs() { docker image inspect -f '{{index .Config.Labels "idgen.inputs"}}' "$1" 2>/dev/null || true; }
fresh() { [ "$(image_inputs "$1")" = "$2" ]; }

# need_cmd installs a Debian package for a missing host command.
need_cmd() {
	command -v "$1" >/dev/null && return
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	log "installing $2"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

base() {
	local img=idgen-offline/debian:$SUITE key
	key=$(echo "$SUITE $MIRROR minbase v1" | hash_of)
	fresh "$img" "$key" && return
	local tarball="$CACHE/debian-$SUITE-$key.tar"
	if [ ! -s "$tarball" ]; then
		need_cmd debootstrap debootstrap
		local root
		root=$(mktemp -d)
		log "debootstrap $SUITE (minbase) from $MIRROR"
		debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
			{ tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
		# The image's apt sources: the same mirror, plus security updates.
		printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
		rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
		tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
		rm -rf "$root"
	fi
	log "import $img"
	docker import --change "LABEL idgen.inputs=$key" --change 'CMD ["bash"]' "$tarball" "$img" >/dev/null
}

static() {
	local img=idgen-offline/static:nonroot key
	key=$( (echo v1; cat /etc/ssl/certs/ca-certificates.crt) | hash_of)
	fresh "$img" "$key" && return
	local root
	root=$(mktemp -d)
	mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
	chmod 1777 "$root/tmp"
	cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
	chown 65532:65532 "$root/home/nonroot"
	log "import $img"
	tar -C "$root" -c . | docker import --change "LABEL idgen.inputs=$key" --change 'USER 65532:65532' - "$img" >/dev/null
	rm -rf "$root"
}

# from_dir builds infra/images/<name> on the Debian base.
from_dir() {
	local name=$1 img=$2 key
	key=$( (image_inputs idgen-offline/debian:$SUITE; cat infra/images/"$name"/*) | hash_of)
	fresh "$img" "$key" && return
	log "build $img"
	build -q --label "idgen.inputs=$key" --build-arg BASE=idgen-offline/debian:$SUITE \
		-t "$img" "infra/images/$name" >/dev/null
}

golang() {
	local goroot ver img key ctx
	goroot=$(go env GOROOT)
	ver=$(go env GOVERSION)
	img="idgen-offline/golang:${ver#go}"
	key=$( (image_inputs idgen-offline/debian:$SUITE; echo "$ver"; cat infra/images/golang/Dockerfile) | hash_of)
	GO_IMAGE=$img
	fresh "$img" "$key" && return
	ctx=$(mktemp -d)
	cp infra/images/golang/Dockerfile "$ctx/"
	cp -a "$goroot" "$ctx/go"
	rm -rf "$ctx/go/pkg/obj" "$ctx/go/test" "$ctx/go/doc"
	log "build $img (host toolchain $ver)"
	build -q --label "idgen.inputs=$key" --build-arg BASE=idgen-offline/debian:$SUITE -t "$img" "$ctx" >/dev/null
	rm -rf "$ctx"
}

# idgen builds ./Dockerfile from a copy of the tracked (and new, unignored)
# sources plus vendor/, made here from the host's module cache.
idgen() {
	local ctx key version commit
	key=$( (image_inputs "$GO_IMAGE"; image_inputs idgen-offline/static:nonroot
		git ls-files -co --exclude-standard -z | xargs -0 sha256sum 2>/dev/null) | hash_of)
	fresh "$IDGEN_IMAGE" "$key" && return
	ctx=$(mktemp -d)
	git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$ctx" 2>/dev/null || true
	(cd "$ctx" && go mod vendor)
	version=$(git describe --always --dirty 2>/dev/null || echo dev)
	commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
	log "build $IDGEN_IMAGE ($version)"
	build -q --label "idgen.inputs=$key" \
		--build-arg GO_IMAGE="$GO_IMAGE" --build-arg RUNTIME_IMAGE=idgen-offline/static:nonroot \
		--build-arg VERSION="$version" --build-arg COMMIT="$commit" -t "$IDGEN_IMAGE" "$ctx" >/dev/null
	rm -rf "$ctx"
}

# jaeger builds Jaeger's all-in-one image. The binary comes from the Go
# module proxy through a throwaway module in a temporary directory, so no
# go.mod of the project lists Jaeger; that module takes the replace
# directives of Jaeger's own go.mod, which a dependency's go.mod cannot
# impose, so its build list is the one upstream builds. The static binary
# is kept in the cache: a removed image is made again without compiling.
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_VERSION=v1.75.0 # Jaeger v2.12.0
JAEGER_IMAGE=idgen-offline/jaeger:2.12.0
# jaeger_bin builds the binary to $1 in the empty directory $2. Every step
# returns on failure: set -e does not hold inside a command whose status is
# tested.
jaeger_bin() {
	local out=$1 gomod r
	cd "$2" || return
	export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
	go mod init idgen-offline/jaeger || return
	gomod=$(go mod download -json "$JAEGER_MODULE@$JAEGER_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -s "$gomod" ] || { echo "no go.mod for $JAEGER_MODULE@$JAEGER_VERSION" >&2; return 1; }
	if grep -q '^replace[[:space:]]*(' "$gomod"; then
		echo "$gomod: a replace block, which jaeger_bin does not parse" >&2
		return 1
	fi
	while read -r r; do
		go mod edit -replace "$r" || return
	done < <(awk '$1 == "replace" && $3 == "=>" && NF == 5 { print $2 "=" $4 "@" $5 }' "$gomod")
	go get -tool "$JAEGER_MODULE/cmd/jaeger@$JAEGER_VERSION" || return
	go build -trimpath -ldflags "-s -w -X $JAEGER_MODULE/internal/version.latestVersion=v2.12.0" \
		-o "$out" "$JAEGER_MODULE/cmd/jaeger"
}

jaeger() {
	local key bin mod ctx
	key=$( (echo "$JAEGER_MODULE@$JAEGER_VERSION"; go env GOVERSION; image_inputs idgen-offline/static:nonroot
		cat infra/jaeger/Dockerfile) | hash_of)
	fresh "$JAEGER_IMAGE" "$key" && return
	bin="$CACHE/jaeger-$JAEGER_VERSION-$(go env GOVERSION)"
	if [ ! -x "$bin" ]; then
		mod=$(mktemp -d)
		log "build jaeger $JAEGER_VERSION (Go module proxy, CGO_ENABLED=0; minutes on 2 cores)"
		if ! (jaeger_bin "$bin.tmp" "$mod") >"$CACHE/jaeger-build.log" 2>&1; then
			tail -20 "$CACHE/jaeger-build.log" >&2
			rm -rf "$mod"
			exit 1
		fi
		rm -rf "$mod"
		mv "$bin.tmp" "$bin"
	fi
	ctx=$(mktemp -d)
	cp infra/jaeger/Dockerfile "$ctx/"
	cp "$bin" "$ctx/jaeger"
	log "build $JAEGER_IMAGE"
	build -q --label "idgen.inputs=$key" --build-arg BASE=idgen-offline/static:nonroot -t "$JAEGER_IMAGE" "$ctx" >/dev/null
	rm -rf "$ctx"
}

with_jaeger=1
for arg in "$@"; do
	case $arg in
	--no-jaeger) with_jaeger= ;;
	*) echo "usage: $0 [--no-jaeger]" >&2; exit 2 ;;
	esac
done

start=$(date +%s)
need_cmd docker-compose docker-compose # make compose-test drives the stack with it
base
static
golang
from_dir zookeeper idgen-offline/zookeeper:3.8
from_dir redis idgen-offline/redis:7
from_dir haproxy idgen-offline/haproxy:2.6
idgen
[ -z "$with_jaeger" ] || jaeger
log "ready in $(($(date +%s) - start)) s"
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^idgen' >&2
