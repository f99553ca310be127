#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: scripts/fuzz.sh [seconds-per-target]
# (make test: 5 s each; make fuzz: 60 s each). Fails on the first crasher.
set -euo pipefail
t="${1:-5}s"
targets=(
	"./shared/idcodec FuzzParse"
	"./shared/auth FuzzVerify"
	"./shared/registry FuzzDecodeRecord"
	"./shared/compensation FuzzEventFromFields"
	"./allocator FuzzDecodeCounter"
	"./functions/generate FuzzGenerateBody"
	"./functions/generate FuzzGetIDPath"
	"./functions/generate FuzzTransitionBody"
)
for entry in "${targets[@]}"; do
	read -r pkg fn <<<"$entry"
	echo "fuzz $pkg $fn ($t)"
	go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$t" "$pkg" >/tmp/idgen-fuzz.log 2>&1 || { cat /tmp/idgen-fuzz.log; exit 1; }
done
