#!/usr/bin/env bash
# LocalStack ready hook, optional part: an EventBridge rule that delivers
# failure events (detail = the failure envelope {id, reason, event_id,
# occurred_at, source}) straight to idgen-compensate, as template.yaml does
# with EnableEventBridge=true. Off unless IDGEN_EVENTBRIDGE=true; runs after
# 10-idgen.sh, which creates the function. Idempotent.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) fails the hook too

export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

COMPENSATE_FN="${IDGEN_COMPENSATE_FUNCTION:-idgen-compensate}"
BUS="${IDGEN_EVENT_BUS:-default}"
SOURCES="${IDGEN_EVENT_SOURCES:-payments}"
DETAIL_TYPE="${IDGEN_EVENT_DETAIL_TYPE:-TransactionFailed}"
RULE=idgen-failures

log() { printf 'idgen-localstack: %s\n' "$*" >&2; }

if [ "${IDGEN_EVENTBRIDGE:-false}" != true ]; then
	log "EventBridge rule off (IDGEN_EVENTBRIDGE=true turns it on)"
	exit 0
fi

if ! fn_arn=$(awslocal lambda get-function --function-name "$COMPENSATE_FN" \
	--query Configuration.FunctionArn --output text 2>/dev/null); then
	log "$COMPENSATE_FN does not exist: 10-idgen.sh failed?"
	exit 1
fi

if [ "$BUS" != default ] && ! awslocal events describe-event-bus --name "$BUS" >/dev/null 2>&1; then
	awslocal events create-event-bus --name "$BUS" >/dev/null
	log "created event bus $BUS"
fi

pattern=$(python3 -c 'import json, sys
print(json.dumps({"source": [s.strip() for s in sys.argv[1].split(",") if s.strip()], "detail-type": [sys.argv[2]]}))' \
	"$SOURCES" "$DETAIL_TYPE")

# put-rule and put-targets replace what is there: safe to repeat.
rule_arn=$(awslocal events put-rule --name "$RULE" --event-bus-name "$BUS" \
	--event-pattern "$pattern" --state ENABLED --query RuleArn --output text)
awslocal events put-targets --rule "$RULE" --event-bus-name "$BUS" \
	--targets "Id=compensate,Arn=$fn_arn" >/dev/null

policy=$(awslocal lambda get-policy --function-name "$COMPENSATE_FN" --query Policy --output text 2>/dev/null || true)
case "$policy" in
*idgen-events*) ;;
*)
	awslocal lambda add-permission --function-name "$COMPENSATE_FN" --statement-id idgen-events \
		--action lambda:InvokeFunction --principal events.amazonaws.com --source-arn "$rule_arn" >/dev/null
	;;
esac
log "rule $RULE on bus $BUS ($pattern) -> $COMPENSATE_FN"
