#!/usr/bin/env bash
# Builds the image the "several hosts" integration tests run as hosts:
# this checkout's hasched, built statically, on top of a local Debian root
# file system (by default the ZooKeeper test image that build-zookeeper.sh
# makes: /bin/sh, coreutils and date are what the tests' task scripts use).
# No registry is needed: the base image is local, and the build context is a
# throw-away directory holding the binary and a two-line Dockerfile.
#
# Unlike the other images this one is rebuilt on every run: the binary
# changes with every commit, and the layer on top of the base is cheap.
#
#   HASCHED_TEST_IMAGE  image tag to build     (default hasched/hasched-test)
#   HASCHED_TEST_BASE   base image, with /bin/sh, coreutils and date
#                       (default: $ZK_IMAGE, else hasched/zookeeper:3.8)
#   GO                  the go command         (default go)
set -euo pipefail

IMAGE="${HASCHED_TEST_IMAGE:-hasched/hasched-test}"
BASE="${HASCHED_TEST_BASE:-${ZK_IMAGE:-hasched/zookeeper:3.8}}"
GO="${GO:-go}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { echo "build-hasched: $*" >&2; }

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
	log "base image $BASE is missing: build it with images/build-zookeeper.sh (make images), or set HASCHED_TEST_BASE"
	exit 1
fi

TMP="$(mktemp -d "${TMPDIR:-/var/tmp}/hasched-img.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

start=$SECONDS
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -mod=readonly -trimpath -o "$TMP/hasched" ./cmd/hasched)
# The commit the binary was built from, for the tests' log (a dirty tree
# is marked so: the binary holds changes the commit does not).
COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null || true)" ]]; then
	COMMIT="$COMMIT-dirty"
fi

# ENTRYPOINT is reset: the base's runs ZooKeeper's config script; the tests
# give every host container its own command.
cat >"$TMP/Dockerfile" <<EOF
FROM $BASE
COPY hasched /usr/local/bin/hasched
LABEL dev.hasched.commit="$COMMIT"
ENTRYPOINT []
CMD ["hasched", "--help"]
EOF

OLD_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
# The legacy builder: it needs no buildx plugin and reads the local base.
if ! DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$TMP" >"$TMP/build.log" 2>&1; then
	cat "$TMP/build.log" >&2
	exit 1
fi
NEW_ID="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
# The replaced image goes (unless a container still uses it): one per
# commit would pile up.
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then docker image rm "$OLD_ID" >/dev/null 2>&1 || true; fi
VERSION_OUT="$(docker run --rm "$IMAGE" hasched version 2>&1 || true)"
log "image runs: ${VERSION_OUT%%$'\n'*}"
log "built $IMAGE on $BASE (commit $COMMIT) in $((SECONDS - start))s"
