#!/usr/bin/env bash
# backup-redis.sh — a consistent, verified backup of the idgen registry (Redis).
#
# Methods (--method):
#   bgsave  (default) BGSAVE, wait until Redis reports that save finished
#           (INFO persistence: rdb_saves / LASTSAVE, rdb_bgsave_in_progress,
#           rdb_last_bgsave_status), then copy <dir>/<dbfilename>. Runs where
#           the Redis data directory is readable (the Redis host or a
#           container sharing its /data volume).
#   aof     BGREWRITEAOF, wait for it, then copy the append-only directory
#           (Redis 7 multi-part AOF: manifest, base, incr files). Needs
#           appendonly yes. Point-in-time of the end of the copy.
#   remote  redis-cli --rdb: Redis forks a snapshot and streams it over the
#           replication protocol; works from any host that can connect (the
#           user needs the SYNC/PSYNC permission).
# Every backup is verified (redis-check-rdb / redis-check-aof) before it is
# kept: it is written to a hidden .partial directory and renamed into
# <backup-dir>/<name>-<UTC time> only when the check passed. Then retention
# deletes the oldest backups of the same name beyond --keep, and any older
# than --max-age-days.
#
# Take backups from a replica when there is one (--require-replica): BGSAVE
# forks, and on a busy primary the fork's copy-on-write memory and latency
# land on the path of every /generate.
#
# Credentials never go on the command line (where ps shows them): the
# password comes from --password-file FILE, REDIS_PASSWORD_FILE, or the
# environment (REDISCLI_AUTH, or REDIS_PASSWORD which is handed to redis-cli
# as REDISCLI_AUTH).
#
# Output: progress on stderr; the path of the new backup on stdout.
# Exit status: 0 backup kept; 1 failure (nothing kept); 2 usage; 3 refused
# (--require-replica on a primary).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=backup-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/backup-lib.sh"
export LC_ALL=C # byte order for the backup names, plain messages from tools

prog=${0##*/}

usage() {
	cat <<EOF
Usage: $prog [options]

Connection (flags win over the environment):
  --host HOST             Redis host (REDIS_HOST, default 127.0.0.1)
  --port PORT             Redis port (REDIS_PORT, default 6379)
  --user USER             ACL user (REDIS_USER); the password is its password
  --password-file FILE    file whose first line is the password (REDIS_PASSWORD_FILE);
                          or set REDISCLI_AUTH / REDIS_PASSWORD in the environment
  --tls                   connect with TLS (REDIS_TLS=1)
  --cacert FILE           CA bundle for TLS (REDIS_TLS_CA)
  --cert FILE, --key FILE client certificate and key for TLS (REDIS_TLS_CERT, REDIS_TLS_KEY)

Backup:
  --method M              bgsave | aof | remote (REDIS_BACKUP_METHOD, default bgsave)
  --data-dir DIR          Redis data directory for bgsave/aof (REDIS_DATA_DIR;
                          default: CONFIG GET dir)
  --backup-dir DIR        where backups go (BACKUP_DIR, default /var/backups/idgen/redis)
  --name NAME             backup name prefix (BACKUP_NAME, default redis-<host>-<port>)
  --timeout SECONDS       longest wait for BGSAVE/BGREWRITEAOF (REDIS_BACKUP_TIMEOUT, default 3600)
  --require-replica       refuse to run against a primary (exit 3)

Retention (only directories this script made, with a backup.info, same name):
  --keep N                keep the newest N backups (BACKUP_KEEP, default 14; 0 = no limit)
  --max-age-days D        delete backups older than D days (BACKUP_MAX_AGE_DAYS, default 0 = off)

  -h, --help              this text
EOF
}

host=${REDIS_HOST:-127.0.0.1}
port=${REDIS_PORT:-6379}
user=${REDIS_USER:-}
password_file=${REDIS_PASSWORD_FILE:-}
tls=${REDIS_TLS:-0}
tls_ca=${REDIS_TLS_CA:-}
tls_cert=${REDIS_TLS_CERT:-}
tls_key=${REDIS_TLS_KEY:-}
method=${REDIS_BACKUP_METHOD:-bgsave}
data_dir=${REDIS_DATA_DIR:-}
backup_root=${BACKUP_DIR:-/var/backups/idgen/redis}
name=${BACKUP_NAME:-}
timeout=${REDIS_BACKUP_TIMEOUT:-3600}
keep=${BACKUP_KEEP:-14}
max_age_days=${BACKUP_MAX_AGE_DAYS:-0}
require_replica=0

while [ $# -gt 0 ]; do
	case $1 in
	--host) need_arg "$@"; host=$2; shift 2 ;;
	--port) need_arg "$@"; port=$2; shift 2 ;;
	--user) need_arg "$@"; user=$2; shift 2 ;;
	--password-file) need_arg "$@"; password_file=$2; shift 2 ;;
	--tls) tls=1; shift ;;
	--cacert) need_arg "$@"; tls_ca=$2; shift 2 ;;
	--cert) need_arg "$@"; tls_cert=$2; shift 2 ;;
	--key) need_arg "$@"; tls_key=$2; shift 2 ;;
	--method) need_arg "$@"; method=$2; shift 2 ;;
	--data-dir) need_arg "$@"; data_dir=$2; shift 2 ;;
	--backup-dir) need_arg "$@"; backup_root=$2; shift 2 ;;
	--name) need_arg "$@"; name=$2; shift 2 ;;
	--timeout) need_arg "$@"; timeout=$2; shift 2 ;;
	--keep) need_arg "$@"; keep=$2; shift 2 ;;
	--max-age-days) need_arg "$@"; max_age_days=$2; shift 2 ;;
	--require-replica) require_replica=1; shift ;;
	-a | --pass | --password)
		log "passwords are never taken on the command line (ps shows them): use --password-file or REDISCLI_AUTH"
		exit 2
		;;
	-h | --help) usage; exit 0 ;;
	*) usage_error "unknown option: $1" ;;
	esac
done

is_uint "$port" || { log "--port must be a number"; exit 2; }
is_uint "$timeout" || { log "--timeout must be a number of seconds"; exit 2; }
case $method in bgsave | aof | remote) ;; *) log "--method must be bgsave, aof or remote"; exit 2 ;; esac
[ -n "$name" ] || name="redis-$host-$port"
check_backup_options

for bin in redis-cli redis-check-rdb redis-check-aof sha256sum; do
	command -v "$bin" >/dev/null || die "$bin not found (Debian: apt-get install redis-tools coreutils)"
done

# The password reaches redis-cli through its environment only.
if [ -n "$password_file" ]; then
	[ -r "$password_file" ] || die "cannot read password file $password_file"
	IFS= read -r REDISCLI_AUTH <"$password_file" || [ -n "${REDISCLI_AUTH:-}" ] || die "password file $password_file is empty"
	export REDISCLI_AUTH
elif [ -z "${REDISCLI_AUTH:-}" ] && [ -n "${REDIS_PASSWORD:-}" ]; then
	export REDISCLI_AUTH=$REDIS_PASSWORD
fi
unset REDIS_PASSWORD
# An empty REDISCLI_AUTH would make redis-cli send AUTH with no password.
[ -n "${REDISCLI_AUTH:-}" ] || unset REDISCLI_AUTH

# Temporary files: redis-cli's stderr, and the backup being made.
cli_err=$(mktemp "${TMPDIR:-/tmp}/backup-redis.XXXXXX")
work=""
cleanup() {
	rm -f "$cli_err"
	[ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT

cli=(redis-cli -h "$host" -p "$port" --no-auth-warning)
[ -n "$user" ] && cli+=(--user "$user")
if [ "$tls" = 1 ]; then
	cli+=(--tls)
	[ -n "$tls_ca" ] && cli+=(--cacert "$tls_ca")
	[ -n "$tls_cert" ] && cli+=(--cert "$tls_cert")
	[ -n "$tls_key" ] && cli+=(--key "$tls_key")
fi

# rcli CMD...: one command; prints the reply. An error reply (redis-cli
# exits 0 on those) or a connection failure returns 1 with the error printed.
rcli() {
	local out
	if ! out=$("${cli[@]}" "$@" 2>"$cli_err"); then
		printf 'redis-cli failed: %s' "$(head -c 500 "$cli_err" | tr '\n' ' ')"
		return 1
	fi
	case $out in
	ERR* | NOAUTH* | WRONGPASS* | NOPERM* | LOADING* | BUSY* | MISCONF* | READONLY* | MASTERDOWN*)
		printf '%s' "$out"
		return 1
		;;
	esac
	printf '%s' "$out"
}

# info_field SECTION FIELD: one field of INFO SECTION ("" when absent).
info_field() {
	local out
	out=$(rcli INFO "$1") || die "INFO $1: $out"
	printf '%s\n' "$out" | tr -d '\r' | sed -n "s/^$2://p"
}

config_get() {
	local out
	out=$(rcli CONFIG GET "$1") || die "CONFIG GET $1: $out (pass --data-dir if CONFIG is disabled)"
	printf '%s\n' "$out" | sed -n '2p'
}

deadline=$((SECONDS + timeout))
wait_for() { # wait_for WHAT COMMAND...: poll until COMMAND succeeds
	local what=$1
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for $what"
		sleep 0.2
	done
}

version=$(info_field server redis_version)
[ -n "$version" ] || die "cannot read INFO from $host:$port"
role=$(info_field replication role)
log "connected to Redis $version at $host:$port (role $role), method $method"
if [ "$require_replica" = 1 ] && [ "$role" != slave ]; then
	log "refusing: $host:$port is a $role, not a replica (--require-replica)"
	exit 3
fi

start_backup

bgsave_idle() { [ "$(info_field persistence rdb_bgsave_in_progress)" = 0 ]; }
aof_idle() {
	[ "$(info_field persistence aof_rewrite_in_progress)" = 0 ] &&
		[ "$(info_field persistence aof_rewrite_scheduled)" = 0 ]
}

snapshot_rdb() {
	local before_saves before_last out
	wait_for "a running BGSAVE to finish" bgsave_idle
	before_saves=$(info_field persistence rdb_saves) # Redis >= 7; else LASTSAVE
	before_last=$(rcli LASTSAVE) || die "LASTSAVE: $before_last"
	if [ -z "$before_saves" ]; then
		# LASTSAVE has one-second resolution: start in a later second.
		while [ "$(date +%s)" -le "$before_last" ]; do sleep 0.2; done
	fi
	until out=$(rcli BGSAVE SCHEDULE); do
		case $out in
		*"already in progress"*) wait_for "a running BGSAVE to finish" bgsave_idle ;;
		*) die "BGSAVE: $out" ;;
		esac
	done
	log "BGSAVE: $out"
	saved() {
		bgsave_idle || return 1
		if [ -n "$before_saves" ]; then
			[ "$(info_field persistence rdb_saves)" -gt "$before_saves" ]
		else
			local last
			last=$(rcli LASTSAVE) && [ "$last" -gt "$before_last" ]
		fi
	}
	wait_for "BGSAVE to complete" saved
	[ "$(info_field persistence rdb_last_bgsave_status)" = ok ] || die "BGSAVE failed (rdb_last_bgsave_status is not ok; see the Redis log)"
	local dir file
	dir=${data_dir:-$(config_get dir)}
	file=$(config_get dbfilename)
	[ -r "$dir/$file" ] || die "cannot read $dir/$file (run where the Redis data directory is mounted, set --data-dir, or use --method remote)"
	cp -- "$dir/$file" "$work/dump.rdb"
}

snapshot_remote() {
	local out
	out=$("${cli[@]}" --rdb "$work/dump.rdb" 2>&1) || die "redis-cli --rdb failed: $out"
	[ -s "$work/dump.rdb" ] || die "redis-cli --rdb wrote nothing: $out"
}

# copy_aof SRC DST: the manifest, then every file it lists.
copy_aof() {
	local src=$1 dst=$2 manifest f
	rm -rf "$dst"
	mkdir "$dst"
	manifest=$(config_get appendfilename).manifest
	[ -r "$src/$manifest" ] || die "no AOF manifest $src/$manifest (Redis < 7 keeps one appendonly.aof: use --method bgsave)"
	cp -- "$src/$manifest" "$dst/$manifest"
	while read -r f; do
		cp -- "$src/$f" "$dst/$f" || return 1
	done < <(awk '{ for (i = 1; i < NF; i++) if ($i == "file") print $(i + 1) }' "$dst/$manifest")
	printf '%s\n' "$manifest"
}

snapshot_aof() {
	local before out dir sub manifest try
	[ "$(config_get appendonly)" = yes ] || die "appendonly is off on $host:$port: use --method bgsave"
	wait_for "a running AOF rewrite to finish" aof_idle
	before=$(info_field persistence aof_rewrites)
	out=$(rcli BGREWRITEAOF) || die "BGREWRITEAOF: $out"
	log "BGREWRITEAOF: $out"
	rewritten() { aof_idle && { [ -z "$before" ] || [ "$(info_field persistence aof_rewrites)" -gt "$before" ]; }; }
	wait_for "BGREWRITEAOF to complete" rewritten
	[ "$(info_field persistence aof_last_bgrewrite_status)" = ok ] || die "BGREWRITEAOF failed (see the Redis log)"
	dir=${data_dir:-$(config_get dir)}
	sub=$(config_get appenddirname)
	# The incr file is appended to while we copy; a copy that ends inside a
	# command fails the check and is taken again.
	for try in 1 2 3 4 5; do
		manifest=$(copy_aof "$dir/$sub" "$work/appendonlydir") || die "copying $dir/$sub failed"
		if redis-check-aof "$work/appendonlydir/$manifest" >"$work/verify.log" 2>&1; then
			return 0
		fi
		log "AOF copy $try did not verify (written to while copied?); copying again"
		sleep 1
	done
	cat "$work/verify.log" >&2
	die "AOF copy does not verify"
}

case $method in
bgsave) snapshot_rdb ;;
remote) snapshot_remote ;;
aof) snapshot_aof ;;
esac

# Verify before keeping anything.
if [ "$method" = aof ]; then
	manifest=$(find "$work/appendonlydir" -maxdepth 1 -name '*.manifest' -printf '%f\n' | head -n1)
	redis-check-aof "$work/appendonlydir/$manifest" >"$work/verify.log" 2>&1 || {
		cat "$work/verify.log" >&2
		die "redis-check-aof failed"
	}
	verified="redis-check-aof: $(tail -n1 "$work/verify.log")"
else
	if ! redis-check-rdb "$work/dump.rdb" >"$work/verify.log" 2>&1 || ! grep -q 'RDB looks OK' "$work/verify.log"; then
		cat "$work/verify.log" >&2
		die "redis-check-rdb failed: the snapshot is not kept"
	fi
	verified="redis-check-rdb: RDB looks OK, $(sed -n 's/^\[info\] \([0-9]* keys read\)$/\1/p' "$work/verify.log")"
fi

log "verified: $verified"
keep_backup \
	"method=$method" \
	"source=$host:$port" \
	"role=$role" \
	"redis_version=$version" \
	"dbsize_at_backup=$(rcli DBSIZE || echo unknown)" \
	"verified=$verified"
