# shellcheck shell=bash
# Retention shared by backup-redis.sh and backup-zookeeper.sh (sourced).
# Backups of one name are directories <root>/<name>-<UTC time>[-n] holding a
# backup.info; the caller defines log().

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
