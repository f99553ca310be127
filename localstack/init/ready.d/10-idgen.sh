#!/usr/bin/env bash
# LocalStack ready hook: the Lambda deployment of template.yaml, emulated.
#
#   failure queue + DLQ (redrive after IDGEN_MAX_RECEIVE_COUNT receives),
#   idgen-generate and idgen-compensate (provided.al2023, the bootstraps of
#   `make lambda`, mounted at $IDGEN_LAMBDA_DIR), and the SQS event source
#   mapping of idgen-compensate with partial batch responses.
#
# Idempotent: every resource is looked up first and updated in place, so the
# hook can run on every start (and by hand: `docker compose exec localstack
# /etc/localstack/init/ready.d/10-idgen.sh` after `make lambda`).
# See localstack/README.md for the mounts and the variables.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) fails the hook too

export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

LAMBDA_DIR="${IDGEN_LAMBDA_DIR:-/opt/idgen/lambda}"
STATE_DIR="${IDGEN_STATE_DIR:-/var/lib/localstack/idgen}"
QUEUE="${IDGEN_FAILURE_QUEUE:-idgen-failures}"
DLQ="${IDGEN_FAILURE_DLQ:-${QUEUE}-dlq}"
MAX_RECEIVE="${IDGEN_MAX_RECEIVE_COUNT:-5}"
BATCH_SIZE="${IDGEN_BATCH_SIZE:-10}"
BATCH_WINDOW="${IDGEN_BATCHING_WINDOW:-1}"
GENERATE_FN="${IDGEN_GENERATE_FUNCTION:-idgen-generate}"
COMPENSATE_FN="${IDGEN_COMPENSATE_FUNCTION:-idgen-compensate}"
ROLE_NAME=idgen-lambda

# As in template.yaml: the queue's visibility timeout covers 6 x the
# compensate timeout plus the largest batching window (30 s).
GENERATE_TIMEOUT=10
COMPENSATE_TIMEOUT=30
VISIBILITY_TIMEOUT=210

log() { printf 'idgen-localstack: %s\n' "$*" >&2; }

# elf_arch prints the Lambda architecture of an ELF executable.
elf_arch() {
	local magic machine
	magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
	machine=$(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n')
	if [ "$magic" != 7f454c46 ]; then
		log "$1 is not an ELF executable"
		return 1
	fi
	case "$machine" in
	3e00) echo x86_64 ;;
	b700) echo arm64 ;;
	*)
		log "$1: ELF machine $machine is neither x86_64 nor arm64"
		return 1
		;;
	esac
}

# ensure_queue prints the URL of the queue, created when missing.
ensure_queue() {
	local url
	if ! url=$(awslocal sqs get-queue-url --queue-name "$1" --query QueueUrl --output text 2>/dev/null); then
		url=$(awslocal sqs create-queue --queue-name "$1" --query QueueUrl --output text)
		log "created queue $1"
	fi
	printf '%s\n' "$url"
}

queue_arn() {
	awslocal sqs get-queue-attributes --queue-url "$1" --attribute-names QueueArn \
		--query Attributes.QueueArn --output text
}

# env_json prints the Lambda Environment of a function: NAME=VALUE
# arguments, overridden by the same IDGEN_* variables of this container
# (docker compose `environment:`), so ZooKeeper and Redis addresses and
# credentials come from there.
env_json() {
	python3 - "$@" <<'PY'
import json, os, sys

PASS = """IDGEN_ZOOKEEPER IDGEN_ZOOKEEPER_ROOT IDGEN_ZOOKEEPER_SESSION_TIMEOUT
IDGEN_ZOOKEEPER_USER IDGEN_SHARD IDGEN_REDIS_ADDR IDGEN_REDIS_MASTER
IDGEN_REDIS_CLUSTER IDGEN_REDIS_USERNAME IDGEN_REDIS_PASSWORD
IDGEN_REDIS_WAIT_REPLICAS IDGEN_REDIS_RETENTION IDGEN_LOG_LEVEL
IDGEN_JWT_ISSUER IDGEN_JWT_AUDIENCE IDGEN_REQUEST_TIMEOUT IDGEN_RATE_LIMIT""".split()
env = {}
for kv in sys.argv[1:]:
    k, _, v = kv.partition("=")
    env[k] = v
for k in PASS:
    if os.environ.get(k):
        env[k] = os.environ[k]
print(json.dumps({"Variables": env}))
PY
}

# package zips one bootstrap (plus extra files) into $work/<name>.zip, the
# executable bit kept (provided.al2023 runs /var/task/bootstrap).
package() {
	local name=$1 src="$LAMBDA_DIR/$1/bootstrap" dir="$work/$1"
	shift
	if [ ! -f "$src" ]; then
		log "$src is missing: run 'make lambda' on the host and mount bin/lambda at $LAMBDA_DIR (localstack/README.md)"
		return 1
	fi
	mkdir -p "$dir"
	cp "$src" "$dir/bootstrap"
	chmod 0755 "$dir/bootstrap"
	local extra
	for extra in "$@"; do
		cp "$extra" "$dir/"
		chmod 0644 "$dir/$(basename "$extra")"
	done
	(cd "$dir" && python3 -m zipfile -c "$work/$name.zip" ./*)
}

# deploy_function creates or updates one function.
deploy_function() {
	local name=$1 handler=$2 timeout=$3 memory=$4 zip=$5 arch=$6 env=$7
	if awslocal lambda get-function --function-name "$name" >/dev/null 2>&1; then
		awslocal lambda update-function-code --function-name "$name" \
			--zip-file "fileb://$zip" --architectures "$arch" >/dev/null
		awslocal lambda wait function-updated-v2 --function-name "$name"
		awslocal lambda update-function-configuration --function-name "$name" \
			--runtime provided.al2023 --handler "$handler" --timeout "$timeout" \
			--memory-size "$memory" --environment "$env" >/dev/null
		awslocal lambda wait function-updated-v2 --function-name "$name"
		log "updated function $name ($arch)"
	else
		awslocal lambda create-function --function-name "$name" \
			--runtime provided.al2023 --architectures "$arch" --handler "$handler" \
			--role "$role_arn" --timeout "$timeout" --memory-size "$memory" \
			--zip-file "fileb://$zip" --environment "$env" >/dev/null
		awslocal lambda wait function-active-v2 --function-name "$name"
		log "created function $name ($arch)"
	fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- queues -----------------------------------------------------------------
dlq_url=$(ensure_queue "$DLQ")
dlq_arn=$(queue_arn "$dlq_url")
queue_url=$(ensure_queue "$QUEUE")
queue_arn=$(queue_arn "$queue_url")
awslocal sqs set-queue-attributes --queue-url "$dlq_url" \
	--attributes MessageRetentionPeriod=1209600
redrive=$(printf '{\\"deadLetterTargetArn\\":\\"%s\\",\\"maxReceiveCount\\":\\"%s\\"}' "$dlq_arn" "$MAX_RECEIVE")
awslocal sqs set-queue-attributes --queue-url "$queue_url" \
	--attributes "{\"VisibilityTimeout\":\"$VISIBILITY_TIMEOUT\",\"MessageRetentionPeriod\":\"345600\",\"RedrivePolicy\":\"$redrive\"}"
log "queue $QUEUE redrives to $DLQ after $MAX_RECEIVE receives"

# --- role (LocalStack does not enforce IAM by default; the ARN must exist) ---
if ! role_arn=$(awslocal iam get-role --role-name "$ROLE_NAME" --query Role.Arn --output text 2>/dev/null); then
	role_arn=$(awslocal iam create-role --role-name "$ROLE_NAME" --query Role.Arn --output text \
		--assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
fi

# --- development keys, kept across restarts ----------------------------------
# Every generate sandbox must open every other's sealed metadata: one key
# file, made once, shipped in the package (/var/task/metadata.keys).
mkdir -p "$STATE_DIR"
if [ ! -s "$STATE_DIR/metadata.keys" ]; then
	(umask 077 && python3 -c 'import secrets; print("k1", secrets.token_hex(32))' >"$STATE_DIR/metadata.keys")
	log "made a development metadata key in $STATE_DIR/metadata.keys"
fi
generate_files=("$STATE_DIR/metadata.keys")
generate_env=(IDGEN_DATA_DIR=/tmp/idgen IDGEN_AUDIT_LOG=- IDGEN_METADATA_KEY_FILE=/var/task/metadata.keys)
# Authentication: with $STATE_DIR/jwt-hs256.secret (>= 32 bytes) tokens are
# checked; without it the emulated generate runs in development mode (auth
# OFF, said loudly in its log), as `make run` does.
if [ -s "$STATE_DIR/jwt-hs256.secret" ]; then
	generate_files+=("$STATE_DIR/jwt-hs256.secret")
	generate_env+=(IDGEN_JWT_HS256_SECRET_FILE=/var/task/jwt-hs256.secret)
else
	generate_env+=(IDGEN_DEV=true)
fi
if [ -z "${IDGEN_ZOOKEEPER:-}" ] || [ -z "${IDGEN_REDIS_ADDR:-}" ]; then
	log "WARNING: IDGEN_ZOOKEEPER and IDGEN_REDIS_ADDR are not set in this container: $GENERATE_FN will refuse to start (concurrent sandboxes must share ranges and registry)"
fi

# --- functions ----------------------------------------------------------------
package generate "${generate_files[@]}"
package compensate
arch=$(elf_arch "$LAMBDA_DIR/generate/bootstrap")
deploy_function "$GENERATE_FN" generate "$GENERATE_TIMEOUT" 512 "$work/generate.zip" "$arch" \
	"$(env_json "${generate_env[@]}")"
deploy_function "$COMPENSATE_FN" compensate "$COMPENSATE_TIMEOUT" 256 "$work/compensate.zip" \
	"$(elf_arch "$LAMBDA_DIR/compensate/bootstrap")" "$(env_json IDGEN_AUDIT_LOG=-)"

# --- SQS -> compensate ----------------------------------------------------------
uuid=$(awslocal lambda list-event-source-mappings --function-name "$COMPENSATE_FN" \
	--event-source-arn "$queue_arn" --query 'EventSourceMappings[0].UUID' --output text)
if [ -z "$uuid" ] || [ "$uuid" = None ]; then
	awslocal lambda create-event-source-mapping --function-name "$COMPENSATE_FN" \
		--event-source-arn "$queue_arn" --batch-size "$BATCH_SIZE" \
		--maximum-batching-window-in-seconds "$BATCH_WINDOW" \
		--function-response-types ReportBatchItemFailures >/dev/null
	log "mapped $QUEUE to $COMPENSATE_FN (ReportBatchItemFailures)"
else
	awslocal lambda update-event-source-mapping --uuid "$uuid" --batch-size "$BATCH_SIZE" \
		--maximum-batching-window-in-seconds "$BATCH_WINDOW" \
		--function-response-types ReportBatchItemFailures >/dev/null
	log "updated mapping $uuid of $QUEUE to $COMPENSATE_FN"
fi

log "ready: queue $queue_url, DLQ $dlq_url, functions $GENERATE_FN and $COMPENSATE_FN"
