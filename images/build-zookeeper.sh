#!/usr/bin/env bash
# Builds a ZooKeeper 3.8 image without any container registry: a Debian
# bookworm root file system made by debootstrap (Debian's `zookeeper` and
# `openjdk-17-jre-headless` packages) is turned into an image by
# `docker import`. The image follows the official `zookeeper` image's
# environment contract (ZOO_MY_ID, ZOO_SERVERS, ...); see
# images/zookeeper/docker-entrypoint.sh and images/README.md.
#
#   ZK_IMAGE        image tag to build             (default hasched/zookeeper:3.8)
#   FORCE=1         rebuild even if the image already exists
#   DEBIAN_MIRROR   Debian mirror URL (default: read from this machine's apt sources)
#   DEBIAN_SUITE    Debian suite                   (default bookworm)
#
# Must run as root on a Debian machine (installs debootstrap if missing).
set -euo pipefail

IMAGE="${ZK_IMAGE:-hasched/zookeeper:3.8}"
BUILD_NAME=build-zookeeper
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# shellcheck source=images/debian-rootfs.sh
. "$HERE/debian-rootfs.sh"

rootfs_create openjdk-17-jre-headless,libzookeeper-java,netcat-openbsd

# Debian's `zookeeper` package (scripts, zkCli.sh, zookeeper user) depends on
# default-jre, which pulls in GTK and Mesa. A local shim package that provides
# default-jre and depends on the headless JRE keeps the image lean.
mkdir -p "$TMP/shim/DEBIAN"
cat >"$TMP/shim/DEBIAN/control" <<'EOF'
Package: hasched-default-jre-shim
Version: 1.0
Architecture: all
Maintainer: hasched <root@localhost>
Depends: openjdk-17-jre-headless
Provides: default-jre
Priority: optional
Section: java
Description: meets zookeeper's default-jre dependency with the headless JRE
EOF
dpkg-deb --root-owner-group -b "$TMP/shim" "$ROOTFS/tmp/shim.deb" >/dev/null
in_root dpkg -i /tmp/shim.deb >"$TMP/apt.log" 2>&1 || { cat "$TMP/apt.log" >&2; exit 1; }
rootfs_install zookeeper
ZK_VERSION="$(in_root dpkg-query -W -f='${Version}' zookeeper)"
log "installed zookeeper $ZK_VERSION"

# Image files: entrypoint, stdout logging, data directories.
install -m 0755 "$HERE/zookeeper/docker-entrypoint.sh" "$ROOTFS/docker-entrypoint.sh"
install -D -m 0644 "$HERE/zookeeper/log4j.properties" \
	"$ROOTFS/usr/local/share/zookeeper/log4j.properties"
install -m 0644 "$HERE/zookeeper/java.security" \
	"$ROOTFS/usr/local/share/zookeeper/java.security"
mkdir -p "$ROOTFS/conf" "$ROOTFS/data" "$ROOTFS/datalog" "$ROOTFS/logs"

JAVA_HOME=""
for d in "$ROOTFS"/usr/lib/jvm/java-17-openjdk-*; do
	[[ -d "$d" && ! -L "$d" ]] && { JAVA_HOME="${d#"$ROOTFS"}"; break; }
done
[[ -n "$JAVA_HOME" && -x "$ROOTFS$JAVA_HOME/bin/java" ]] || { log "no JRE found in rootfs"; exit 1; }

rootfs_slim tmp/shim.deb usr/share/zookeeper/zooinspector

# --- import ------------------------------------------------------------------
rootfs_import "Debian zookeeper $ZK_VERSION on openjdk-17-jre-headless" \
	"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/share/zookeeper/bin" \
	"ENV LANG=C.UTF-8" \
	"ENV JAVA_HOME=$JAVA_HOME" \
	"ENV ZOO_CONF_DIR=/conf" \
	"ENV ZOO_DATA_DIR=/data" \
	"ENV ZOO_DATA_LOG_DIR=/datalog" \
	"ENV ZOO_LOG_DIR=/logs" \
	"ENV ZOO_TICK_TIME=2000" \
	"ENV ZOO_INIT_LIMIT=5" \
	"ENV ZOO_SYNC_LIMIT=2" \
	"ENV ZOO_AUTOPURGE_PURGEINTERVAL=0" \
	"ENV ZOO_AUTOPURGE_SNAPRETAINCOUNT=3" \
	"ENV ZOO_MAX_CLIENT_CNXNS=60" \
	"ENV ZOO_STANDALONE_ENABLED=true" \
	"ENV ZOO_ADMINSERVER_ENABLED=false" \
	"ENV ZOO_4LW_COMMANDS_WHITELIST=srvr,ruok,mntr,stat" \
	"EXPOSE 2181 2888 3888 8080" \
	"WORKDIR /" \
	'ENTRYPOINT ["/docker-entrypoint.sh"]' \
	'CMD ["zkServer.sh", "start-foreground"]'

# Read the whole output before taking its first line: `| head -n1` under
# pipefail fails the build with SIGPIPE (141) whenever head exits before java
# has written the rest.
JAVA_VERSION_OUT="$(docker run --rm --entrypoint java "$IMAGE" -version 2>&1)"
log "image runs ${JAVA_VERSION_OUT%%$'\n'*}"
log "built $IMAGE (zookeeper $ZK_VERSION) in $((SECONDS - start))s"
