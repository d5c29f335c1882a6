# Shared by the image builds that turn a Debian root file system into an
# image without any container registry (build-zookeeper.sh,
# build-postgres.sh): debootstrap a minbase system from this machine's own
# apt mirror, install packages into it with no daemon started, slim it, and
# `docker import` it. Source it after setting:
#
#   IMAGE         the tag to build
#   BUILD_NAME    the name log lines start with
#   FORCE=1       rebuild even if the image exists (default 0)
#   DEBIAN_SUITE  the Debian suite (default bookworm)
#   DEBIAN_MIRROR the mirror URL (default: read from /etc/apt)
#
# Sourcing it exits 0 at once if IMAGE exists (and FORCE is not 1); else it
# checks for root and debootstrap. Then call rootfs_create, rootfs_install,
# rootfs_slim and rootfs_import in that order; ROOTFS, TMP and in_root are
# set by rootfs_create and cleaned up when the script exits.

FORCE="${FORCE:-0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"

log() { echo "$BUILD_NAME: $*" >&2; }

if [[ "$FORCE" != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
	log "$IMAGE already exists (FORCE=1 to rebuild)"
	exit 0
fi
# On a forced rebuild, drop the replaced image afterwards (unless still used).
OLD_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"

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
TMP="$(mktemp -d "${TMPDIR:-/var/tmp}/hasched-$BUILD_NAME.XXXXXX")"
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

in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

# rootfs_create debootstraps a minbase system into ROOTFS, with the packages
# of the comma-separated list $1 (may be empty), where no daemon may start.
rootfs_create() {
	local include=()
	[[ -n "${1:-}" ]] && include=("--include=$1")
	start=$SECONDS
	log "debootstrap (minbase) into $ROOTFS"
	if ! debootstrap --variant=minbase "${include[@]}" \
		"$DEBIAN_SUITE" "$ROOTFS" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
		tail -n 40 "$TMP/debootstrap.log" >&2
		[[ -f "$ROOTFS/debootstrap/debootstrap.log" ]] && tail -n 40 "$ROOTFS/debootstrap/debootstrap.log" >&2
		exit 1
	fi
	log "debootstrap done in $((SECONDS - start))s"
	printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
	chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
}

# rootfs_install installs packages (and no recommends) into ROOTFS.
rootfs_install() {
	# debootstrap leaves the suite's package list in place; update only if needed.
	if ! in_root apt-get install -y -q --no-install-recommends "$@" >>"$TMP/apt.log" 2>&1; then
		in_root apt-get update -q >>"$TMP/apt.log" 2>&1 &&
			in_root apt-get install -y -q --no-install-recommends "$@" >>"$TMP/apt.log" 2>&1 ||
			{ cat "$TMP/apt.log" >&2; exit 1; }
	fi
}

# rootfs_slim drops apt's caches and lists, docs, logs, host-specific files
# and the paths below ROOTFS it is given.
rootfs_slim() {
	local p extra=()
	for p in "$@"; do extra+=("$ROOTFS/$p"); done
	in_root apt-get clean
	rm -f "$ROOTFS/usr/sbin/policy-rc.d"
	rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
		"$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
		"$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
		"$ROOTFS"/usr/share/locale/* "${extra[@]}" \
		"$ROOTFS"/debootstrap "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
	find "$ROOTFS/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
	find "$ROOTFS/var/log" -type f -delete
	chmod 1777 "$ROOTFS/tmp"
	: >"$ROOTFS/etc/resolv.conf"
	: >"$ROOTFS/etc/hostname"
	rm -f "$ROOTFS/etc/apt/sources.list"
}

# rootfs_import imports ROOTFS as IMAGE with the message $1 and the
# Dockerfile instructions that follow (each a --change), then drops the
# image it replaced.
rootfs_import() {
	local message="$1" c changes=()
	shift
	for c in "$@"; do changes+=(--change "$c"); done
	log "importing $IMAGE"
	tar --numeric-owner -C "$ROOTFS" -c . |
		docker import "${changes[@]}" --message "$message" - "$IMAGE" >/dev/null
	local new_id
	new_id="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
	if [[ -n "$OLD_ID" && "$OLD_ID" != "$new_id" ]]; then docker image rm "$OLD_ID" >/dev/null 2>&1 || true; fi
}
