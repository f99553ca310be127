#!/usr/bin/env bash
# backup-zookeeper.sh — a verified backup of one ZooKeeper server's data
# (idgen's worker slots, members and, what matters, the shard range
# counters /idgen/shards/<shard>/counter).
#
# What it copies: the newest complete snapshot of dataDir/version-2 and the
# transaction logs of dataLogDir/version-2 that can hold transactions after
# it (the newest log starting at or before the snapshot's zxid, and every
# later one). ZooKeeper snapshots are fuzzy; snapshot + those logs replay to
# the state at the end of the copy, which is what ZooKeeper itself does at
# start. Run it on a ZooKeeper host (or a container sharing its volumes),
# preferably on a follower (--require-follower): the leader then carries no
# extra I/O, and a follower has every committed transaction in its logs.
#
# Verification, before anything is kept:
#   1. every copied log is read by ZooKeeper's TxnLogToolkit: a CRC error
#      fails the backup (the copy is retried: the newest log is appended to
#      while it is copied);
#   2. the copy is loaded by a scratch standalone ZooKeeper (loopback, random
#      port, its own copy of the files) and must come up serving, with a last
#      zxid at least the newest transaction copied (--no-load-check skips).
# It is then renamed from a hidden .partial directory into
# <backup-dir>/<name>-<UTC time>; retention deletes the oldest backups of the
# same name beyond --keep and those older than --max-age-days.
#
# ZooKeeper's own housekeeping: with autopurge.purgeInterval=H (hours; 0, the
# upstream default, never purges) ZooKeeper deletes all but the newest
# autopurge.snapRetainCount snapshots (at least 3) and the logs they no longer
# need. infra/images/zookeeper sets 3 and 1. A purge can delete a file while
# it is being copied: the copy is then taken again. Without autopurge the
# dataDir grows without bound, which is no substitute for backups: a snapshot
# on the same disk dies with it.
#
# Restore: see docs/operations.md ("Restoring ZooKeeper"). In short: stop the
# ensemble, replace version-2/ of every server with the backup's version-2/
# (keep myid), start it, then raise every shard counter ABOVE the Redis
# registry's high-water mark BEFORE any idgen instance starts issuing.
#
# Output: progress on stderr; the path of the new backup on stdout.
# Exit status: 0 backup kept; 1 failure (nothing kept); 2 usage; 3 refused
# (--require-follower and the server is not a follower).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=backup-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/backup-lib.sh"
export LC_ALL=C

prog=${0##*/}

usage() {
	cat <<EOF
Usage: $prog [options]

Source:
  --config FILE           zoo.cfg to read dataDir, dataLogDir, clientPort and
                          clientPortAddress from (ZK_CONFIG)
  --data-dir DIR          dataDir: snapshots, in DIR/version-2 (ZK_DATA_DIR)
  --data-log-dir DIR      dataLogDir: transaction logs (ZK_DATA_LOG_DIR; default: dataDir)
  --server HOST:PORT      client address for the srvr four-letter word: role and
                          zxid are recorded (ZK_SERVER; default from --config)
  --require-follower      refuse unless the server is a follower or observer (exit 3)

Backup:
  --backup-dir DIR        where backups go (BACKUP_DIR, default /var/backups/idgen/zookeeper)
  --name NAME             backup name prefix (BACKUP_NAME, default zookeeper-<hostname>)
  --keep N                keep the newest N backups (BACKUP_KEEP, default 14; 0 = no limit)
  --max-age-days D        delete backups older than D days (BACKUP_MAX_AGE_DAYS, 0 = off)

Verification:
  --classpath CP          ZooKeeper server jars (ZK_CLASSPATH; default: \$ZOOKEEPER_HOME/lib/*,
                          or Debian's /usr/share/java/zookeeper.jar and its log4j binding)
  --java PATH             java binary (JAVA, default java)
  --no-load-check         do not load the copy into a scratch ZooKeeper
  --timeout SECONDS       how long the scratch ZooKeeper may take to load (default 180)

  -h, --help              this text
EOF
}

config=${ZK_CONFIG:-}
data_dir=${ZK_DATA_DIR:-}
data_log_dir=${ZK_DATA_LOG_DIR:-}
server=${ZK_SERVER:-}
require_follower=0
backup_root=${BACKUP_DIR:-/var/backups/idgen/zookeeper}
name=${BACKUP_NAME:-}
keep=${BACKUP_KEEP:-14}
max_age_days=${BACKUP_MAX_AGE_DAYS:-0}
classpath=${ZK_CLASSPATH:-}
java=${JAVA:-java}
load_check=1
timeout=180

while [ $# -gt 0 ]; do
	case $1 in
	--config) need_arg "$@"; config=$2; shift 2 ;;
	--data-dir) need_arg "$@"; data_dir=$2; shift 2 ;;
	--data-log-dir) need_arg "$@"; data_log_dir=$2; shift 2 ;;
	--server) need_arg "$@"; server=$2; shift 2 ;;
	--require-follower) require_follower=1; shift ;;
	--backup-dir) need_arg "$@"; backup_root=$2; shift 2 ;;
	--name) need_arg "$@"; name=$2; shift 2 ;;
	--keep) need_arg "$@"; keep=$2; shift 2 ;;
	--max-age-days) need_arg "$@"; max_age_days=$2; shift 2 ;;
	--classpath) need_arg "$@"; classpath=$2; shift 2 ;;
	--java) need_arg "$@"; java=$2; shift 2 ;;
	--no-load-check) load_check=0; shift ;;
	--timeout) need_arg "$@"; timeout=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage_error "unknown option: $1" ;;
	esac
done

if [ -z "$name" ]; then
	name="zookeeper-$(hostname -s 2>/dev/null || echo host)"
fi
check_backup_options
is_uint "$timeout" || { log "--timeout must be a number of seconds"; exit 2; }

# cfg_get KEY: the value of KEY in zoo.cfg ("" when absent).
cfg_get() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$config" | tail -n1 | sed 's/[[:space:]]*$//'; }
if [ -n "$config" ]; then
	[ -r "$config" ] || die "cannot read $config"
	[ -n "$data_dir" ] || data_dir=$(cfg_get dataDir)
	[ -n "$data_log_dir" ] || data_log_dir=$(cfg_get dataLogDir)
	if [ -z "$server" ] && [ -n "$(cfg_get clientPort)" ]; then
		addr=$(cfg_get clientPortAddress)
		case $addr in "" | 0.0.0.0) addr=127.0.0.1 ;; esac
		server="$addr:$(cfg_get clientPort)"
	fi
fi
[ -n "$data_dir" ] || { log "--data-dir (or --config) is required"; exit 2; }
[ -n "$data_log_dir" ] || data_log_dir=$data_dir
snap_dir="$data_dir/version-2"
txn_dir="$data_log_dir/version-2"
[ -d "$snap_dir" ] || die "$snap_dir does not exist (is --data-dir ZooKeeper's dataDir?)"
[ -d "$txn_dir" ] || die "$txn_dir does not exist (is --data-log-dir ZooKeeper's dataLogDir?)"

command -v "$java" >/dev/null || die "java not found ($java); set --java or JAVA"
command -v sha256sum >/dev/null || die "sha256sum not found"
if [ -z "$classpath" ]; then
	if [ -n "${ZOOKEEPER_HOME:-}" ]; then
		classpath="$ZOOKEEPER_HOME/lib/*:$ZOOKEEPER_HOME/*"
	elif [ -r /usr/share/java/zookeeper.jar ]; then
		classpath=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar
	else
		die "cannot find the ZooKeeper jars: set --classpath, ZK_CLASSPATH or ZOOKEEPER_HOME"
	fi
fi

# fourlw HOST:PORT WORD: a four-letter word's answer.
fourlw() {
	local host=${1%:*} port=${1##*:}
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "%s" "$3" >&3 && cat <&3' _ "$host" "$port" "$2"
}

mode=unknown
srvr_out=""
if [ -n "$server" ]; then
	srvr_out=$(fourlw "$server" srvr 2>/dev/null | tr -d '\r') || true
	mode=$(printf '%s\n' "$srvr_out" | sed -n 's/^Mode: //p')
	[ -n "$mode" ] || die "$server did not answer srvr with a Mode (down, not in a quorum, or srvr not in 4lw.commands.whitelist)"
	log "$server is $mode ($(printf '%s\n' "$srvr_out" | grep -E '^Zxid:' || true))"
elif [ "$require_follower" = 1 ]; then
	die "--require-follower needs --server (or --config with clientPort)"
else
	log "no --server: the server's role is not checked"
fi
if [ "$require_follower" = 1 ] && [ "$mode" != follower ] && [ "$mode" != observer ]; then
	log "refusing: $server is $mode, not a follower (--require-follower); run this on a follower"
	exit 3
fi

work=""
scratch=""
scratch_pid=""
cleanup() {
	if [ -n "$scratch_pid" ]; then
		kill "$scratch_pid" 2>/dev/null || true
		wait "$scratch_pid" 2>/dev/null || true
	fi
	[ -z "$scratch" ] || rm -rf "$scratch"
	[ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT
start_backup
scratch=$(mktemp -d "${TMPDIR:-/tmp}/zk-backup-verify.XXXXXX")
cat >"$scratch/log4j.properties" <<EOF
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$scratch/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
EOF
jvm=("$java" -Xmx"${ZK_VERIFY_HEAP:-512m}" -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true
	"-Dlog4j.configuration=file:$scratch/log4j.properties" -cp "$classpath")

# zxid_of FILE: the zxid in a snapshot.<hex>[.ext] or log.<hex> name, decimal.
zxid_of() {
	local b=${1##*/}
	b=${b#*.}
	b=${b%%.*}
	[[ $b =~ ^[0-9a-fA-F]+$ ]] || return 1
	printf '%d' "$((16#$b))"
}

# snapshot_complete FILE: ZooKeeper seals a snapshot with its checksum and
# the path "/" (int 1, '/'); a snapshot still being written lacks that tail.
snapshot_complete() {
	case $1 in
	*.gz) gzip -t "$1" 2>/dev/null ;;
	*.snappy) return 0 ;;
	*) [ "$(tail -c 5 "$1" | od -An -tx1 | tr -d ' \n')" = 000000012f ] ;;
	esac
}

# select_files: sets snap, snap_zxid and logs (an array), newest snapshot
# first among the complete ones.
select_files() {
	local f z best_le="" best_le_z=-1
	snap=""
	snap_zxid=-1
	for f in "$snap_dir"/snapshot.*; do
		[ -f "$f" ] || continue
		z=$(zxid_of "$f") || continue
		if [ "$z" -gt "$snap_zxid" ] && snapshot_complete "$f"; then
			snap=$f
			snap_zxid=$z
		fi
	done
	[ -n "$snap" ] || die "no complete snapshot in $snap_dir (ZooKeeper writes one at start and every snapCount transactions)"
	logs=()
	for f in "$txn_dir"/log.*; do
		[ -f "$f" ] || continue
		z=$(zxid_of "$f") || continue
		if [ "$z" -le "$snap_zxid" ]; then
			if [ "$z" -gt "$best_le_z" ]; then
				best_le=$f
				best_le_z=$z
			fi
		else
			logs+=("$f")
		fi
	done
	[ -z "$best_le" ] || logs=("$best_le" "${logs[@]}")
	return 0
}

# verify_logs: TxnLogToolkit reads every copied log; sets last_zxid.
verify_logs() {
	local f out z
	last_zxid=$snap_zxid
	for f in "$work"/version-2/log.*; do
		[ -f "$f" ] || continue
		out=$("${jvm[@]}" org.apache.zookeeper.server.persistence.TxnLogToolkit "$f" 2>&1) || {
			printf '%s\n' "$out" | tail -n 5 >&2
			return 1
		}
		if printf '%s\n' "$out" | grep -q 'CRC ERROR'; then
			log "CRC error in ${f##*/}: $(printf '%s\n' "$out" | grep -m1 'CRC ERROR')"
			return 1
		fi
		z=$(printf '%s\n' "$out" | sed -n 's/.* zxid 0x\([0-9a-fA-F]*\) .*/\1/p' | tail -n1)
		if [ -n "$z" ] && [ "$((16#$z))" -gt "$last_zxid" ]; then
			last_zxid=$((16#$z))
		fi
		printf '%s: %s\n' "${f##*/}" "$(printf '%s\n' "$out" | grep -E '^EOF reached' || echo read)" >>"$work/verify.log"
	done
	return 0
}

ok=0
for try in 1 2 3 4 5; do
	select_files
	rm -rf "$work/version-2"
	mkdir "$work/version-2"
	: >"$work/verify.log"
	if cp -- "$snap" "${logs[@]}" "$work/version-2/" 2>"$work/cp.err" && verify_logs; then
		ok=1
		break
	fi
	log "copy $try failed or did not verify ($(head -n1 "$work/cp.err")); copying again"
	sleep 1
done
rm -f "$work/cp.err"
[ "$ok" = 1 ] || die "no consistent copy of $snap_dir after 5 tries"
log "copied ${snap##*/} and ${#logs[@]} transaction log(s); newest zxid 0x$(printf '%x' "$last_zxid")"

# Load the copy into a scratch standalone ZooKeeper (on a copy of the copy:
# ZooKeeper writes a snapshot of its own at start).
loaded_zxid=""
node_count=""
if [ "$load_check" = 1 ]; then
	for _ in 1 2 3 4 5; do
		rm -rf "$scratch/data"
		mkdir -p "$scratch/data"
		cp -r -- "$work/version-2" "$scratch/data/"
		port=$((20000 + RANDOM % 40000))
		cat >"$scratch/zoo.cfg" <<EOF
tickTime=2000
dataDir=$scratch/data
clientPortAddress=127.0.0.1
clientPort=$port
admin.enableServer=false
4lw.commands.whitelist=srvr
standaloneEnabled=true
maxClientCnxns=10
EOF
		"${jvm[@]}" -Dzookeeper.admin.enableServer=false -Dzookeeper.jmx.log4j.disable=true \
			org.apache.zookeeper.server.quorum.QuorumPeerMain "$scratch/zoo.cfg" >"$scratch/out.log" 2>&1 &
		scratch_pid=$!
		load_deadline=$((SECONDS + timeout))
		answer=""
		while kill -0 "$scratch_pid" 2>/dev/null && [ "$SECONDS" -lt "$load_deadline" ]; do
			answer=$(fourlw "127.0.0.1:$port" srvr 2>/dev/null | tr -d '\r') || true
			if printf '%s\n' "$answer" | grep -q '^Mode: standalone'; then
				break
			fi
			answer=""
			sleep 0.5
		done
		kill "$scratch_pid" 2>/dev/null || true
		wait "$scratch_pid" 2>/dev/null || true
		scratch_pid=""
		if [ -n "$answer" ]; then
			loaded_zxid=$(printf '%s\n' "$answer" | sed -n 's/^Zxid: 0x//p')
			node_count=$(printf '%s\n' "$answer" | sed -n 's/^Node count: //p')
			break
		fi
		if grep -qi 'address already in use' "$scratch/out.log" "$scratch/zookeeper.log" 2>/dev/null; then
			log "scratch port $port taken; trying another"
			continue
		fi
		tail -n 20 "$scratch/zookeeper.log" "$scratch/out.log" >&2 2>/dev/null || true
		die "the copy does not load into ZooKeeper (see the log above)"
	done
	[ -n "$loaded_zxid" ] || die "could not start a scratch ZooKeeper to check the copy"
	if [ "$((16#$loaded_zxid))" -lt "$last_zxid" ]; then
		die "the copy loads only up to zxid 0x$loaded_zxid, but its logs go to 0x$(printf '%x' "$last_zxid")"
	fi
	printf 'load check: standalone ZooKeeper served zxid 0x%s with %s znodes\n' "$loaded_zxid" "$node_count" >>"$work/verify.log"
	log "verified: the copy loads (zxid 0x$loaded_zxid, $node_count znodes)"
fi

keep_backup \
	"data_dir=$data_dir" \
	"data_log_dir=$data_log_dir" \
	"server=${server:-unknown}" \
	"mode=$mode" \
	"snapshot=${snap##*/}" \
	"snapshot_zxid=0x$(printf '%x' "$snap_zxid")" \
	"last_zxid=0x$(printf '%x' "$last_zxid")" \
	"logs=$(for l in "${logs[@]}"; do printf '%s ' "${l##*/}"; done)" \
	"loaded_zxid=${loaded_zxid:+0x$loaded_zxid}" \
	"znodes=$node_count"
