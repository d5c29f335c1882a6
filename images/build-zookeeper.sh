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

ZK_IMAGE="${ZK_IMAGE:-hasched/zookeeper:3.8}"
FORCE="${FORCE:-0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "build-zookeeper: $*" >&2; }

if [[ "$FORCE" != 1 ]] && docker image inspect "$ZK_IMAGE" >/dev/null 2>&1; then
	log "$ZK_IMAGE already exists (FORCE=1 to rebuild)"
	exit 0
fi
# On a forced rebuild, drop the replaced image afterwards (unless still used).
OLD_ID="$(docker image inspect -f '{{.Id}}' "$ZK_IMAGE" 2>/dev/null || true)"

if [[ "$(id -u)" != 0 ]]; then
	log "must run as root (debootstrap, chroot)"
	exit 1
fi

# --- host tools --------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1 || [[ ! -r /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
	log "installing debootstrap"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		debootstrap debian-archive-keyring >/dev/null
fi
PATH="$PATH:/usr/sbin:/sbin"

# --- mirror: read from this machine's apt sources ----------------------------
# Prints the first URI of a `deb` source for suite $1 (exact suite match),
# from deb822 *.sources files, then from one-line sources.list files.
apt_uri_for_suite() {
	local suite="$1" f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r "$f" ]] || continue
		awk -v want="$suite" '
			function flush() {
				if (types ~ /(^|[ \t])deb([ \t]|$)/ && uris != "") {
					n = split(suites, s, /[ \t]+/)
					for (i = 1; i <= n; i++) if (s[i] == want) { split(uris, u, /[ \t]+/); print u[1]; found = 1; exit }
				}
				types = ""; uris = ""; suites = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				line = $0; key = tolower(line); sub(/:.*/, "", key)
				sub(/^[^:]*:[ \t]*/, "", line); sub(/[ \t]+$/, "", line)
				if (key == "types") types = line
				else if (key == "uris") uris = line
				else if (key == "suites") suites = line
			}
			END { if (!found) flush() }' "$f" | sed -n 1p
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r "$f" ]] || continue
		sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
			awk -v want="$suite" '$1 == "deb" && $3 == want { print $2; exit }'
	done
}

MIRROR="${DEBIAN_MIRROR:-}"
if [[ -z "$MIRROR" ]]; then
	MIRROR="$(apt_uri_for_suite "$DEBIAN_SUITE" | sed -n 1p)"
fi
if [[ -z "$MIRROR" ]]; then
	# Host on another release: use the URI of its main (non-security) archive.
	for s in trixie sid bullseye; do
		MIRROR="$(apt_uri_for_suite "$s" | sed -n 1p)"
		[[ -n "$MIRROR" ]] && break
	done
fi
if [[ -z "$MIRROR" ]]; then
	log "could not read a Debian mirror from /etc/apt; set DEBIAN_MIRROR"
	exit 1
fi
log "mirror from apt sources: $MIRROR ($DEBIAN_SUITE)"

# --- temp dir and cleanup ----------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/var/tmp}/hasched-zk.XXXXXX")"
ROOTFS="$TMP/rootfs"
cleanup() {
	# Never rm -rf through a mount point left inside the chroot.
	local m
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done < <(findmnt -rn -o TARGET 2>/dev/null | grep -F "$TMP/" | sort -r)
	rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT

# --- root file system -------------------------------------------------------
start=$SECONDS
log "debootstrap (minbase) into $ROOTFS"
if ! debootstrap --variant=minbase \
	--include=openjdk-17-jre-headless,libzookeeper-java,netcat-openbsd \
	"$DEBIAN_SUITE" "$ROOTFS" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
	tail -n 40 "$TMP/debootstrap.log" >&2
	[[ -f "$ROOTFS/debootstrap/debootstrap.log" ]] && tail -n 40 "$ROOTFS/debootstrap/debootstrap.log" >&2
	exit 1
fi
log "debootstrap done in $((SECONDS - start))s"

in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

# No daemons may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

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
# debootstrap leaves the suite's package list in place; update only if needed.
if ! in_root apt-get install -y -q --no-install-recommends zookeeper >>"$TMP/apt.log" 2>&1; then
	in_root apt-get update -q >>"$TMP/apt.log" 2>&1 &&
		in_root apt-get install -y -q --no-install-recommends zookeeper >>"$TMP/apt.log" 2>&1 ||
		{ cat "$TMP/apt.log" >&2; exit 1; }
fi
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

# Clean up: apt caches and lists, docs, host-specific files.
in_root apt-get clean
rm -f "$ROOTFS/usr/sbin/policy-rc.d" "$ROOTFS/tmp/shim.deb"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
	"$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
	"$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
	"$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/zookeeper/zooinspector \
	"$ROOTFS"/debootstrap "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
find "$ROOTFS/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$ROOTFS/var/log" -type f -delete
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"
rm -f "$ROOTFS/etc/apt/sources.list"

# --- import ------------------------------------------------------------------
log "importing $ZK_IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
	--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/share/zookeeper/bin" \
	--change "ENV LANG=C.UTF-8" \
	--change "ENV JAVA_HOME=$JAVA_HOME" \
	--change "ENV ZOO_CONF_DIR=/conf" \
	--change "ENV ZOO_DATA_DIR=/data" \
	--change "ENV ZOO_DATA_LOG_DIR=/datalog" \
	--change "ENV ZOO_LOG_DIR=/logs" \
	--change "ENV ZOO_TICK_TIME=2000" \
	--change "ENV ZOO_INIT_LIMIT=5" \
	--change "ENV ZOO_SYNC_LIMIT=2" \
	--change "ENV ZOO_AUTOPURGE_PURGEINTERVAL=0" \
	--change "ENV ZOO_AUTOPURGE_SNAPRETAINCOUNT=3" \
	--change "ENV ZOO_MAX_CLIENT_CNXNS=60" \
	--change "ENV ZOO_STANDALONE_ENABLED=true" \
	--change "ENV ZOO_ADMINSERVER_ENABLED=false" \
	--change "ENV ZOO_4LW_COMMANDS_WHITELIST=srvr,ruok,mntr,stat" \
	--change "EXPOSE 2181 2888 3888 8080" \
	--change "WORKDIR /" \
	--change 'ENTRYPOINT ["/docker-entrypoint.sh"]' \
	--change 'CMD ["zkServer.sh", "start-foreground"]' \
	--message "Debian zookeeper $ZK_VERSION on openjdk-17-jre-headless" \
	- "$ZK_IMAGE" >/dev/null

NEW_ID="$(docker image inspect -f '{{.Id}}' "$ZK_IMAGE")"
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then docker image rm "$OLD_ID" >/dev/null 2>&1 || true; fi
# Read the whole output before taking its first line: `| head -n1` under
# pipefail fails the build with SIGPIPE (141) whenever head exits before java
# has written the rest.
JAVA_VERSION_OUT="$(docker run --rm --entrypoint java "$ZK_IMAGE" -version 2>&1)"
log "image runs ${JAVA_VERSION_OUT%%$'\n'*}"
log "built $ZK_IMAGE (zookeeper $ZK_VERSION) in $((SECONDS - start))s"
