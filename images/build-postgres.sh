#!/usr/bin/env bash
# Builds a PostgreSQL 15 test image without any container registry: a Debian
# bookworm root file system made by debootstrap with Debian's `postgresql-15`
# package is turned into an image by `docker import`, as build-zookeeper.sh
# does. The image follows the official `postgres` image's environment
# contract (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, PGDATA); see
# images/postgres/docker-entrypoint.sh and images/README.md.
#
#   PG_IMAGE        image tag to build             (default hasched/postgres:15)
#   FORCE=1         rebuild even if the image already exists
#   DEBIAN_MIRROR   Debian mirror URL (default: read from this machine's apt sources)
#   DEBIAN_SUITE    Debian suite                   (default bookworm)
#
# Must run as root on a Debian machine (installs debootstrap if missing).
set -euo pipefail

PG_IMAGE="${PG_IMAGE:-hasched/postgres:15}"
FORCE="${FORCE:-0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
PG_MAJOR=15
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "build-postgres: $*" >&2; }

if [[ "$FORCE" != 1 ]] && docker image inspect "$PG_IMAGE" >/dev/null 2>&1; then
	log "$PG_IMAGE already exists (FORCE=1 to rebuild)"
	exit 0
fi
# On a forced rebuild, drop the replaced image afterwards (unless still used).
OLD_ID="$(docker image inspect -f '{{.Id}}' "$PG_IMAGE" 2>/dev/null || true)"

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
TMP="$(mktemp -d "${TMPDIR:-/var/tmp}/hasched-pg.XXXXXX")"
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
if ! debootstrap --variant=minbase "$DEBIAN_SUITE" "$ROOTFS" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
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

# postgresql-common would create and configure a cluster "main" at install;
# the entrypoint makes the one cluster itself, at first start.
mkdir -p "$ROOTFS/etc/postgresql-common/createcluster.d"
echo "create_main_cluster = false" >"$ROOTFS/etc/postgresql-common/createcluster.d/hasched.conf"
# debootstrap leaves the suite's package list in place; update only if needed.
if ! in_root apt-get install -y -q --no-install-recommends "postgresql-$PG_MAJOR" >"$TMP/apt.log" 2>&1; then
	in_root apt-get update -q >>"$TMP/apt.log" 2>&1 &&
		in_root apt-get install -y -q --no-install-recommends "postgresql-$PG_MAJOR" >>"$TMP/apt.log" 2>&1 ||
		{ cat "$TMP/apt.log" >&2; exit 1; }
fi
PG_VERSION="$(in_root dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")"
log "installed postgresql-$PG_MAJOR $PG_VERSION"
[[ -x "$ROOTFS/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ]] || { log "no postgres binary in rootfs"; exit 1; }

install -m 0755 "$HERE/postgres/docker-entrypoint.sh" "$ROOTFS/docker-entrypoint.sh"
PGUID="$(in_root id -u postgres)"
PGGID="$(in_root id -g postgres)"
mkdir -p "$ROOTFS/var/lib/postgresql/data"
chown -R "$PGUID:$PGGID" "$ROOTFS/var/lib/postgresql"
chmod 0700 "$ROOTFS/var/lib/postgresql/data"

# Clean up: apt caches and lists, docs, host-specific files.
in_root apt-get clean
rm -f "$ROOTFS/usr/sbin/policy-rc.d"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
	"$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
	"$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
	"$ROOTFS"/usr/share/locale/* \
	"$ROOTFS"/debootstrap "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
find "$ROOTFS/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$ROOTFS/var/log" -type f -delete
chmod 1777 "$ROOTFS/tmp"
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"
rm -f "$ROOTFS/etc/apt/sources.list"

# --- import ------------------------------------------------------------------
log "importing $PG_IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
	--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/$PG_MAJOR/bin" \
	--change "ENV LANG=C.UTF-8" \
	--change "ENV PGDATA=/var/lib/postgresql/data" \
	--change "EXPOSE 5432" \
	--change "USER postgres" \
	--change "WORKDIR /var/lib/postgresql" \
	--change 'ENTRYPOINT ["/docker-entrypoint.sh"]' \
	--change 'CMD ["postgres"]' \
	--message "Debian postgresql-$PG_MAJOR $PG_VERSION" \
	- "$PG_IMAGE" >/dev/null

NEW_ID="$(docker image inspect -f '{{.Id}}' "$PG_IMAGE")"
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then docker image rm "$OLD_ID" >/dev/null 2>&1 || true; fi
PG_VERSION_OUT="$(docker run --rm --entrypoint postgres "$PG_IMAGE" --version 2>&1)"
log "image runs $PG_VERSION_OUT"
log "built $PG_IMAGE (postgresql-$PG_MAJOR $PG_VERSION) in $((SECONDS - start))s"
