#!/bin/sh
# Healthcheck: a Redis server answers PING; a Sentinel also knows a master.
set -eu
port=${1:-6379}
out=$(REDISCLI_AUTH=$(cat /secrets/redis.password) redis-cli -p "$port" ping)
[ "$out" = PONG ] || exit 1
if [ "$port" = 26379 ]; then
	REDISCLI_AUTH=$(cat /secrets/redis.password) redis-cli -p 26379 sentinel get-master-addr-by-name idgen | grep -q .
fi
