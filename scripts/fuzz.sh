#!/usr/bin/env bash
# Runs every fuzz target for a bounded number of executions: scripts/fuzz.sh [scale]
# (make test: scale 1, a few seconds per target on the 2-core VM; make fuzz: scale 12).
# Fails on the first crasher.
#
# The budget is a count of executions (-fuzztime Nx), not a duration: with a duration,
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded" failure when
# the deadline fires while a worker is mid-call (golang/go#75804, fixed in Go 1.27). A
# count has no deadline to race, so a failure here is never that race.
set -euo pipefail
scale="${1:-1}"
[[ "$scale" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: scale must be a positive integer, got '$scale'" >&2; exit 2; }
# package, target, executions at scale 1 (about 3-5 s each at the rates seen on the VM)
targets=(
	"./shared/idcodec FuzzParse 100000"
	"./shared/platform/auth FuzzVerify 50000"
	"./shared/registry FuzzDecodeRecord 100000"
	"./shared/saga FuzzEventFromFields 30000"
	"./allocator FuzzDecodeCounter 20000"
	"./functions/httpapi FuzzGenerateBody 4000"
	"./functions/httpapi FuzzGetIDPath 50000"
	"./functions/httpapi FuzzTransitionBody 30000"
	"./functions/httpapi FuzzCheckText 300000"
)
for entry in "${targets[@]}"; do
	read -r pkg fn n <<<"$entry"
	n=$((n * scale))
	echo "fuzz $pkg $fn (${n} execs)"
	go test -run '^$' -fuzz "^${fn}\$" -fuzztime "${n}x" "$pkg" >/tmp/idgen-fuzz.log 2>&1 || { cat /tmp/idgen-fuzz.log; exit 1; }
done
