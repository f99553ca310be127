#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks need, when missing.
# Idempotent; needs root (or sudo) the first time. Nothing is assumed
# preinstalled except Go and apt-get.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# The deployment files are checked by shellcheck and promtool (prometheus); chromium
# runs the console's browser test.
for pkg in zookeeper redis-server redis-sentinel wrk haproxy openssl shellcheck prometheus chromium fonts-liberation; do
	have_pkg "$pkg" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps the JDK headless; policy-rc.d stops the
# packages from starting system services: the tests start their own servers.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
