#!/usr/bin/env bash
# End-to-end check of the emulated deployment, run on the host once
# LocalStack's ready hooks are done (localstack/README.md):
#   1. GET /health/live through idgen-generate (an HTTP API v2 event),
#   2. POST /generate, which must answer an ID,
#   3. a failure envelope for that ID sent to the failure queue,
#   4. GET /ids/<id> until idgen-compensate has compensated it (60 s at most).
# AWSLOCAL selects the client: awslocal (default), or e.g.
# AWSLOCAL="aws --endpoint-url http://127.0.0.1:4566".
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true # bash >= 4.4: a failure inside $(...) fails the script

read -r -a aws <<<"${AWSLOCAL:-awslocal}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
GENERATE_FN="${IDGEN_GENERATE_FUNCTION:-idgen-generate}"
QUEUE="${IDGEN_FAILURE_QUEUE:-idgen-failures}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
	printf 'smoke: FAIL: %s\n' "$*" >&2
	exit 1
}

# AWS CLI v2 takes --payload as base64 unless told otherwise.
binary_format=()
case "$("${aws[@]}" --version 2>&1)" in
aws-cli/2*) binary_format=(--cli-binary-format raw-in-base64-out) ;;
esac

# http METHOD PATH [BODY] invokes generate with an API Gateway HTTP API
# (payload 2.0) event and prints "<status> <body>".
http() {
	local event
	# shellcheck disable=SC2016 # "$default" is API Gateway's route key, not a variable
	event=$(python3 -c 'import json, sys
method, path, body = sys.argv[1:4]
print(json.dumps({
    "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
    "headers": {"content-type": "application/json", "x-request-id": "smoke-" + method.lower()},
    "requestContext": {"http": {"method": method, "path": path, "sourceIp": "127.0.0.1"}, "requestId": "smoke"},
    "body": body, "isBase64Encoded": False,
}))' "$1" "$2" "${3:-}")
	"${aws[@]}" lambda invoke --function-name "$GENERATE_FN" \
		${binary_format[@]+"${binary_format[@]}"} --payload "$event" "$work/out.json" >/dev/null
	python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(r.get("statusCode"), r.get("body", ""))' "$work/out.json"
}

# field JSON NAME prints one string field of a JSON object.
field() {
	python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"
}

read -r status body < <(http GET /health/live)
[ "$status" = 200 ] || fail "GET /health/live answered $status $body"
echo "smoke: /health/live ok"

read -r status body < <(http POST /generate '{}')
[ "$status" = 200 ] || fail "POST /generate answered $status $body"
id=$(field "$body" id)
[ -n "$id" ] || fail "POST /generate answered no id: $body"
echo "smoke: generated $id"

queue_url=$("${aws[@]}" sqs get-queue-url --queue-name "$QUEUE" --query QueueUrl --output text)
"${aws[@]}" sqs send-message --queue-url "$queue_url" \
	--message-body "{\"id\":\"$id\",\"reason\":\"localstack smoke test\",\"source\":\"localstack-smoke\"}" >/dev/null
echo "smoke: failure event sent to $QUEUE"

state=""
for _ in $(seq 30); do
	read -r status body < <(http GET "/ids/$id")
	[ "$status" = 200 ] || fail "GET /ids/$id answered $status $body"
	state=$(field "$body" state)
	[ "$state" = compensated ] && break
	sleep 2
done
[ "$state" = compensated ] || fail "$id is still $state after 60 s: is the SQS mapping of idgen-compensate enabled?"
echo "smoke: $id compensated through SQS"
echo "smoke: PASS"
