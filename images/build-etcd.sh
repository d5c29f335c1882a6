#!/usr/bin/env bash
# Builds a minimal etcd server image (FROM scratch) without any container
# registry: the etcd binary is compiled from the Go module proxy using this
# repository's own go.mod (go.etcd.io/etcd/server/v3 is a dependency).
#
#   ETCD_IMAGE  image tag to build        (default hasched/etcd:3.6.16)
#   FORCE=1     rebuild even if the image already exists
#
# Usage: images/build-etcd.sh
#        docker run IMAGE etcd --name x --data-dir /var/lib/etcd/data ...
set -euo pipefail

ETCD_IMAGE="${ETCD_IMAGE:-hasched/etcd:3.6.16}"
FORCE="${FORCE:-0}"
ETCDCTL_VERSION="${ETCDCTL_VERSION:-v3.6.16}"

if [[ "$FORCE" != 1 ]] && docker image inspect "$ETCD_IMAGE" >/dev/null 2>&1; then
	echo "build-etcd: $ETCD_IMAGE already exists (FORCE=1 to rebuild)"
	exit 0
fi
# On a forced rebuild, drop the replaced image afterwards (unless still used).
OLD_ID="$(docker image inspect -f '{{.Id}}' "$ETCD_IMAGE" 2>/dev/null || true)"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

ctx="$TMP/ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/var/lib/etcd" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
chmod 0700 "$ctx/rootfs/var/lib/etcd"

echo "build-etcd: compiling etcd server from $REPO_ROOT/go.mod"
# -mod=readonly: never touch the repository's go.mod/go.sum.
(cd "$REPO_ROOT" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w' \
	-o "$ctx/rootfs/usr/local/bin/etcd" go.etcd.io/etcd/server/v3)

# etcdctl is not a dependency of the repository; build it best-effort in a
# throw-away module so the repository's go.mod stays untouched.
mkdir -p "$TMP/ctlmod"
if (cd "$TMP/ctlmod" &&
	go mod init hasched.local/etcdctl-build >/dev/null 2>&1 &&
	go get "go.etcd.io/etcd/etcdctl/v3@$ETCDCTL_VERSION" >/dev/null 2>&1 &&
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' \
		-o "$ctx/rootfs/usr/local/bin/etcdctl" go.etcd.io/etcd/etcdctl/v3); then
	echo "build-etcd: etcdctl $ETCDCTL_VERSION included"
else
	echo "build-etcd: WARNING: could not build etcdctl; image has etcd only" >&2
	rm -f "$ctx/rootfs/usr/local/bin/etcdctl"
fi

cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
WORKDIR /var/lib/etcd
EXPOSE 2379 2380
CMD ["/usr/local/bin/etcd"]
EOF

echo "build-etcd: building $ETCD_IMAGE"
# Legacy builder: FROM scratch needs no registry and no buildx plugin.
if ! DOCKER_BUILDKIT=0 docker build -t "$ETCD_IMAGE" "$ctx" >"$TMP/build.log" 2>&1; then
	cat "$TMP/build.log" >&2
	exit 1
fi
docker run --rm "$ETCD_IMAGE" etcd --version
NEW_ID="$(docker image inspect -f '{{.Id}}' "$ETCD_IMAGE")"
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then docker image rm "$OLD_ID" >/dev/null 2>&1 || true; fi
echo "build-etcd: built $ETCD_IMAGE"
