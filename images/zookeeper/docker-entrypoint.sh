#!/bin/bash
# Entrypoint of hasched/zookeeper: same environment contract as the official
# `zookeeper` image (docker-library), running Debian's ZooKeeper 3.8 build.
set -e

: "${ZOO_CONF_DIR:=/conf}"
: "${ZOO_DATA_DIR:=/data}"
: "${ZOO_DATA_LOG_DIR:=/datalog}"
: "${ZOO_LOG_DIR:=/logs}"
: "${ZOO_TICK_TIME:=2000}"
: "${ZOO_INIT_LIMIT:=5}"
: "${ZOO_SYNC_LIMIT:=2}"
: "${ZOO_AUTOPURGE_PURGEINTERVAL:=0}"
: "${ZOO_AUTOPURGE_SNAPRETAINCOUNT:=3}"
: "${ZOO_MAX_CLIENT_CNXNS:=60}"
: "${ZOO_STANDALONE_ENABLED:=true}"
: "${ZOO_ADMINSERVER_ENABLED:=false}"
: "${ZOO_4LW_COMMANDS_WHITELIST:=srvr,ruok,mntr,stat}"
: "${ZK_SERVER_HEAP:=512}"

mkdir -p "$ZOO_CONF_DIR" "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR" "$ZOO_LOG_DIR"

# Generate the config only if it doesn't exist (as the official image does),
# so a restarted container keeps its configuration.
CONFIG="$ZOO_CONF_DIR/zoo.cfg"
if [[ ! -f "$CONFIG" ]]; then
	{
		echo "dataDir=$ZOO_DATA_DIR"
		echo "dataLogDir=$ZOO_DATA_LOG_DIR"
		echo "tickTime=$ZOO_TICK_TIME"
		echo "initLimit=$ZOO_INIT_LIMIT"
		echo "syncLimit=$ZOO_SYNC_LIMIT"
		echo "autopurge.snapRetainCount=$ZOO_AUTOPURGE_SNAPRETAINCOUNT"
		echo "autopurge.purgeInterval=$ZOO_AUTOPURGE_PURGEINTERVAL"
		echo "maxClientCnxns=$ZOO_MAX_CLIENT_CNXNS"
		echo "standaloneEnabled=$ZOO_STANDALONE_ENABLED"
		echo "admin.enableServer=$ZOO_ADMINSERVER_ENABLED"
		echo "clientPort=2181"
	} >"$CONFIG.tmp"
	if [[ -z "${ZOO_SERVERS:-}" ]]; then
		ZOO_SERVERS="server.1=localhost:2888:3888;2181"
	fi
	for server in $ZOO_SERVERS; do
		echo "$server" >>"$CONFIG.tmp"
	done
	if [[ -n "$ZOO_4LW_COMMANDS_WHITELIST" ]]; then
		echo "4lw.commands.whitelist=$ZOO_4LW_COMMANDS_WHITELIST" >>"$CONFIG.tmp"
	fi
	for cfg_extra_entry in ${ZOO_CFG_EXTRA:-}; do
		echo "$cfg_extra_entry" >>"$CONFIG.tmp"
	done
	mv "$CONFIG.tmp" "$CONFIG"
fi

# Write myid only if it doesn't exist.
if [[ ! -f "$ZOO_DATA_DIR/myid" ]]; then
	echo "${ZOO_MY_ID:-1}" >"$ZOO_DATA_DIR/myid"
fi

# `zkServer.sh start-foreground` (the default CMD, as in the official image)
# or no arguments: run the server in the foreground, logging to stdout.
if [[ $# -eq 0 || ( "$1" == zkServer.sh && "${2:-}" == start-foreground ) ]]; then
	# Debian's classpath (/etc/zookeeper/conf/environment: conf dir +
	# zookeeper.jar, whose manifest lists the other jars), plus an SLF4J
	# binding: Debian's manifest has none, so it would log nothing at all.
	LOG4J="$ZOO_CONF_DIR/log4j.properties"
	[[ -f "$LOG4J" ]] || LOG4J=/usr/local/share/zookeeper/log4j.properties
	CLASSPATH="$ZOO_CONF_DIR:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
	# shellcheck disable=SC2086 # JVMFLAGS is a list of flags
	exec java \
		"-Xmx${ZK_SERVER_HEAP}m" -XX:+UseSerialGC \
		-Djava.security.properties=/usr/local/share/zookeeper/java.security \
		-Dzookeeper.log.dir="$ZOO_LOG_DIR" \
		-Dzookeeper.root.logger=INFO,CONSOLE \
		-Dlog4j.configuration="file:$LOG4J" \
		-cp "$CLASSPATH" ${JVMFLAGS:-} \
		org.apache.zookeeper.server.quorum.QuorumPeerMain "$CONFIG"
fi

exec "$@"
