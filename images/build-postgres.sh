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

IMAGE="${PG_IMAGE:-hasched/postgres:15}"
BUILD_NAME=build-postgres
PG_MAJOR=15
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# shellcheck source=images/debian-rootfs.sh
. "$HERE/debian-rootfs.sh"

rootfs_create ""

# postgresql-common would create and configure a cluster "main" at install;
# the entrypoint makes the one cluster itself, at first start.
mkdir -p "$ROOTFS/etc/postgresql-common/createcluster.d"
echo "create_main_cluster = false" >"$ROOTFS/etc/postgresql-common/createcluster.d/hasched.conf"
rootfs_install "postgresql-$PG_MAJOR"
PG_VERSION="$(in_root dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")"
log "installed postgresql-$PG_MAJOR $PG_VERSION"
[[ -x "$ROOTFS/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ]] || { log "no postgres binary in rootfs"; exit 1; }

install -m 0755 "$HERE/postgres/docker-entrypoint.sh" "$ROOTFS/docker-entrypoint.sh"
PGUID="$(in_root id -u postgres)"
PGGID="$(in_root id -g postgres)"
mkdir -p "$ROOTFS/var/lib/postgresql/data"
chown -R "$PGUID:$PGGID" "$ROOTFS/var/lib/postgresql"
chmod 0700 "$ROOTFS/var/lib/postgresql/data"

rootfs_slim

# --- import ------------------------------------------------------------------
rootfs_import "Debian postgresql-$PG_MAJOR $PG_VERSION" \
	"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/$PG_MAJOR/bin" \
	"ENV LANG=C.UTF-8" \
	"ENV PGDATA=/var/lib/postgresql/data" \
	"EXPOSE 5432" \
	"USER postgres" \
	"WORKDIR /var/lib/postgresql" \
	'ENTRYPOINT ["/docker-entrypoint.sh"]' \
	'CMD ["postgres"]'

PG_VERSION_OUT="$(docker run --rm --entrypoint postgres "$IMAGE" --version 2>&1)"
log "image runs $PG_VERSION_OUT"
log "built $IMAGE (postgresql-$PG_MAJOR $PG_VERSION) in $((SECONDS - start))s"
