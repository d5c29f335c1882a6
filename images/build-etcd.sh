#!/usr/bin/env bash
# Builds a minimal etcd server image (FROM scratch) without any container
# registry: the etcd binary is compiled from the Go module proxy in a
# throw-away helper module, at the etcd version this repository's go.mod
# requires. The repository's go.sum covers only the packages hasched imports,
# not the etcd server's main package and its proxy dependencies, so the build
# must not run inside the repository (it passed only where the image existed).
#
#   ETCD_IMAGE    image tag to build      (default hasched/etcd:3.6.16)
#   ETCD_VERSION  etcd server version     (default: the one in go.mod)
#   FORCE=1       rebuild even if the image already exists
#
# Usage: images/build-etcd.sh
#        docker run IMAGE etcd --name x --data-dir /var/lib/etcd/data ...
set -euo pipefail

ETCD_IMAGE="${ETCD_IMAGE:-hasched/etcd:3.6.16}"
FORCE="${FORCE:-0}"

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

# Read from go.mod as text: go list -m would download every module first.
ETCD_VERSION="${ETCD_VERSION:-$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$REPO_ROOT/go.mod")}"
[[ -n "$ETCD_VERSION" ]] || { echo "build-etcd: no go.etcd.io/etcd/server/v3 in go.mod; set ETCD_VERSION" >&2; exit 1; }
ETCDCTL_VERSION="${ETCDCTL_VERSION:-$ETCD_VERSION}"

# build_in_module NAME MODULE@VERSION PACKAGE OUT: compiles PACKAGE in a fresh
# module that requires only MODULE@VERSION, so the repository's go.mod and
# go.sum are neither read nor touched.
build_in_module() {
	local name="$1" modver="$2" pkg="$3" out="$4" dir="$TMP/mod-$1"
	mkdir -p "$dir"
	(cd "$dir" &&
		go mod init "hasched.local/$name-build" >/dev/null 2>&1 &&
		go get "$modver" >"$dir/get.log" 2>&1 &&
		CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out" "$pkg") ||
		{ cat "$dir/get.log" >&2 2>/dev/null; return 1; }
}

echo "build-etcd: compiling etcd server $ETCD_VERSION in a helper module"
build_in_module etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3 \
	"$ctx/rootfs/usr/local/bin/etcd"

# etcdctl is a convenience for debugging a test container; the tests do not
# need it, so a failure to build it is a warning.
if build_in_module etcdctl "go.etcd.io/etcd/etcdctl/v3@$ETCDCTL_VERSION" go.etcd.io/etcd/etcdctl/v3 \
	"$ctx/rootfs/usr/local/bin/etcdctl"; then
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
