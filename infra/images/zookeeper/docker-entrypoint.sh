#!/bin/bash
# Writes /conf/zoo.cfg and myid from the official image's variables, then
# runs the server in the foreground (logs to stdout).
set -euo pipefail
CFG="$ZOO_CONF_DIR/zoo.cfg"
if [ ! -f "$CFG" ]; then
	{
		echo "dataDir=$ZOO_DATA_DIR"
		echo "dataLogDir=$ZOO_DATA_LOG_DIR"
		echo "tickTime=${ZOO_TICK_TIME:-2000}"
		echo "initLimit=${ZOO_INIT_LIMIT:-5}"
		echo "syncLimit=${ZOO_SYNC_LIMIT:-2}"
		echo "autopurge.snapRetainCount=${ZOO_AUTOPURGE_SNAPRETAINCOUNT:-3}"
		echo "autopurge.purgeInterval=${ZOO_AUTOPURGE_PURGEINTERVAL:-1}"
		echo "maxClientCnxns=${ZOO_MAX_CLIENT_CNXNS:-60}"
		echo "standaloneEnabled=${ZOO_STANDALONE_ENABLED:-true}"
		echo "admin.enableServer=false"
		echo "4lw.commands.whitelist=${ZOO_4LW_COMMANDS_WHITELIST:-srvr,ruok,mntr}"
		echo "quorumListenOnAllIPs=true"
		if [ -z "${ZOO_SERVERS:-}" ]; then
			echo "clientPort=2181"
		else
			for s in $ZOO_SERVERS; do echo "$s"; done
		fi
	} >"$CFG"
fi
cat >"$ZOO_CONF_DIR/log4j.properties" <<'LOG'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
LOG
if [ ! -f "$ZOO_DATA_DIR/myid" ]; then
	echo "${ZOO_MY_ID:-1}" >"$ZOO_DATA_DIR/myid"
fi
if [ "${1:-}" = "zkServer.sh" ]; then
	J=/usr/share/java
	exec java -Xmx${ZOO_HEAP:-256m} -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true \
		-Dlog4j.configuration="file:$ZOO_CONF_DIR/log4j.properties" \
		-Dzookeeper.admin.enableServer=false -Dzookeeper.jmx.log4j.disable=true \
		-cp "$J/zookeeper.jar:$J/slf4j-log4j12.jar:$J/log4j-1.2.jar:$J/netty-codec.jar:$J/netty-resolver.jar:$J/netty-transport-native-unix-common.jar" \
		org.apache.zookeeper.server.quorum.QuorumPeerMain "$CFG"
fi
exec "$@"
