#!/bin/sh
# Starts one Redis server or Sentinel of the compose stack: writes its
# config from the generated password on first start (later starts keep the
# file, which Redis and Sentinel rewrite after a failover), then drops root.
# Usage: redis-start.sh primary|replica|sentinel
set -eu
role="$1"
pw=$(cat /secrets/redis.password)
conf=/data/$role.conf
me=$(hostname)
if [ ! -s "$conf" ]; then
	umask 077
	case "$role" in
	primary | replica)
		cat >"$conf" <<CONF
port 6379
protected-mode no
dir /data
requirepass $pw
masterauth $pw
appendonly yes
appendfsync everysec
# Durable mode: refuse writes without a replica, idgen WAITs for it.
min-replicas-to-write 1
min-replicas-max-lag 10
maxmemory-policy noeviction
replica-announce-ip $me
CONF
		[ "$role" = replica ] && echo "replicaof ${REDIS_PRIMARY_HOST:-redis-primary} 6379" >>"$conf"
		;;
	sentinel)
		cat >"$conf" <<CONF
port 26379
protected-mode no
dir /data
requirepass $pw
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $me
sentinel sentinel-pass $pw
sentinel monitor idgen ${REDIS_PRIMARY_HOST:-redis-primary} 6379 2
sentinel auth-pass idgen $pw
sentinel down-after-milliseconds idgen 3000
sentinel failover-timeout idgen 10000
sentinel parallel-syncs idgen 1
CONF
		;;
	*)
		echo "redis-start.sh: unknown role $role" >&2
		exit 2
		;;
	esac
fi
chown -R redis:redis /data
if [ "$role" = sentinel ]; then
	exec setpriv --reuid=redis --regid=redis --init-groups redis-sentinel "$conf"
fi
exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$conf"
