# shellcheck shell=bash disable=SC2154 # prog, backup_root, ...: set by the sourcing script
# What backup-redis.sh and backup-zookeeper.sh share (sourced): messages and
# option checks, the backup directory a run makes its backup in, and
# retention.
#
# A backup of one name is a directory <root>/<name>-<UTC time>[-n] holding a
# backup.info. It is made in a hidden <root>/.<dir>.partial and renamed into
# place only when complete and verified, so a backup directory is never a
# half-made backup. The caller sets prog and defines usage(); it holds its
# options in backup_root, name, keep and max_age_days.

log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# usage_error MESSAGE: a misused command line; exit status 2.
usage_error() {
	log "$1"
	usage >&2
	exit 2
}

# need_arg OPTION VALUE...: OPTION has a non-empty value.
need_arg() {
	if [ $# -lt 2 ] || [ -z "$2" ]; then
		usage_error "$1 needs a value"
	fi
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# check_backup_options: keep and max_age_days are numbers and name is safe
# in a file name (it becomes part of the backup directory's); exit status 2
# otherwise.
check_backup_options() {
	is_uint "$keep" || { log "--keep must be a number"; exit 2; }
	is_uint "$max_age_days" || { log "--max-age-days must be a number"; exit 2; }
	[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || { log "--name may only hold letters, digits, '.', '_' and '-'"; exit 2; }
}

# start_backup takes the lock of backup_root (one backup run per backup
# directory at a time), then sets stamp (the UTC time of the backup), final
# (the backup directory to be, which does not exist yet) and work (the
# partial directory to make the backup in, empty, mode 700). The caller's
# EXIT trap removes work.
start_backup() {
	local n=1
	mkdir -p "$backup_root"
	if command -v flock >/dev/null; then
		exec 9>"$backup_root/.lock"
		flock -n 9 || die "another backup holds $backup_root/.lock"
	fi
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	final="$backup_root/$name-$stamp"
	while [ -e "$final" ]; do
		n=$((n + 1))
		final="$backup_root/$name-$stamp-$n"
	done
	work="$backup_root/.${final##*/}.partial"
	rm -rf "$work"
	mkdir -m 700 "$work"
}

# keep_backup INFO...: seals the verified backup in work: SHA256SUMS of its
# files (all but verify.log), backup.info with tool, created and the INFO
# lines (KEY=VALUE), then renames it to final, applies retention and prints
# final on stdout.
keep_backup() {
	local sums
	sums=$(cd "$work" && find . -type f ! -name verify.log -printf '%P\n' | sort | xargs -r sha256sum)
	printf '%s\n' "$sums" >"$work/SHA256SUMS"
	printf '%s\n' "tool=$prog" "created=$stamp" "$@" >"$work/backup.info"
	mv -- "$work" "$final"
	work=""
	log "backup kept: $final"
	apply_retention "$backup_root" "$name" "$keep" "$max_age_days" "$final"
	printf '%s\n' "$final"
}

# list_backups prints the backups of name under root, oldest first.
list_backups() {
	local root=$1 name=$2 d base
	for d in "$root/$name"-*; do
		base=${d##*/}
		[[ $base =~ ^"$name"-[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$ ]] && [ -f "$d/backup.info" ] && printf '%s\n' "$d"
	done | sort -V # <time> before <time>-2 before <time>-10
}

# apply_retention root name keep max_age_days final: deletes backups older
# than max_age_days (0: no age limit), then all but the newest keep (0: no
# count limit); final, the one just made, is never deleted. Partial
# directories of runs that died more than a day ago go too.
apply_retention() {
	local root=$1 name=$2 keep=$3 max_age_days=$4 final=$5 b
	local -a backups
	mapfile -t backups < <(list_backups "$root" "$name")
	if [ "$max_age_days" -gt 0 ]; then
		for b in "${backups[@]}"; do
			[ "$b" = "$final" ] && continue
			if [ -n "$(find "$b/backup.info" -mmin +"$((max_age_days * 1440))" -print)" ]; then
				log "retention: deleting $b (older than $max_age_days days)"
				rm -rf -- "$b"
			fi
		done
		mapfile -t backups < <(list_backups "$root" "$name")
	fi
	if [ "$keep" -gt 0 ] && [ "${#backups[@]}" -gt "$keep" ]; then
		for b in "${backups[@]:0:${#backups[@]}-keep}"; do
			[ "$b" = "$final" ] && continue
			log "retention: deleting $b (keeping the newest $keep)"
			rm -rf -- "$b"
		done
	fi
	find "$root" -mindepth 1 -maxdepth 1 -type d -name ".$name-*.partial" -mmin +1440 -exec rm -rf -- '{}' +
}
