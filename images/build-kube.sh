#!/usr/bin/env bash
# Builds the Kubernetes control-plane image of the Kubernetes executor's
# integration tests, without any container registry: kube-apiserver and
# kube-scheduler of one Kubernetes release, and kwok (which plays the
# kubelets), compiled from the Go module proxy into a FROM scratch image.
# (kube-controller-manager is left out: it links the kubelet's cgroup and
# cAdvisor packages, minutes more on two cores, for controllers the tests
# do not need: hasched makes Pods, not Jobs, and gives them no service
# account token.) The tests run each as a container of its own against
# an etcd container (the etcd test image).
#
# The servers take minutes to compile on two cores, so the image is built
# only when it is missing (FORCE=1 rebuilds). k8s.io/kubernetes requires its
# staging modules at v0.0.0 and replaces them with ./staging; a module that
# builds its commands must replace each one with the matching published
# release (v0.X.Y for kubernetes v1.X.Y), read from its go.mod. One `go
# build` of the three commands compiles what they share once.
#
#   KUBE_IMAGE    image tag to build            (default hasched/kube:1.37.2)
#   KUBE_VERSION  k8s.io/kubernetes version     (default v1.37.2)
#   KWOK_VERSION  sigs.k8s.io/kwok version      (default v0.8.0)
#   GO            the go command                (default go)
#   FORCE=1       rebuild even if the image already exists
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
KUBE_IMAGE="${KUBE_IMAGE:-hasched/kube:${KUBE_VERSION#v}}"
GO="${GO:-go}"
FORCE="${FORCE:-0}"

log() { echo "build-kube: $*" >&2; }

if [[ "$FORCE" != 1 ]] && docker image inspect "$KUBE_IMAGE" >/dev/null 2>&1; then
	log "$KUBE_IMAGE already exists (FORCE=1 to rebuild)"
	exit 0
fi
OLD_ID="$(docker image inspect -f '{{.Id}}' "$KUBE_IMAGE" 2>/dev/null || true)"

TMP="$(mktemp -d "${TMPDIR:-/var/tmp}/hasched-kube.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS

# The staging modules' release: kubernetes v1.X.Y publishes them as v0.X.Y.
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"

mod="$TMP/mod"
ctx="$TMP/ctx"
mkdir -p "$mod" "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/kube" "$ctx/rootfs/var/lib/kube" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"

cat >"$mod/go.mod" <<EOF
module hasched.local/kube-build

go 1.26
EOF
cat >"$mod/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
EOF

log "resolving k8s.io/kubernetes@$KUBE_VERSION and sigs.k8s.io/kwok@$KWOK_VERSION"
(
	cd "$mod"
	"$GO" get "k8s.io/kubernetes@$KUBE_VERSION" "sigs.k8s.io/kwok@$KWOK_VERSION" >"$TMP/get.log" 2>&1
	kmod="$("$GO" env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION/go.mod"
	n=0
	for m in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$kmod"); do
		echo "replace $m => $m $STAGING_VERSION" >>go.mod
		n=$((n + 1))
	done
	[[ $n -gt 0 ]] || { echo "no staging replaces found in $kmod" >&2; exit 1; }
	"$GO" mod tidy >>"$TMP/get.log" 2>&1
) || { cat "$TMP/get.log" >&2; exit 1; }

log "compiling kube-apiserver, kube-scheduler and kwok (minutes on two cores)"
(
	cd "$mod"
	# The version the servers report (and derive their API compatibility
	# version from): a module build has no git tree to stamp it from.
	v="k8s.io/component-base/version"
	minor="${KUBE_VERSION#v1.}"
	minor="${minor%%.*}"
	CGO_ENABLED=0 "$GO" build -trimpath \
		-ldflags="-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" -o "$ctx/rootfs/usr/local/bin/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-scheduler \
		sigs.k8s.io/kwok/cmd/kwok
)

cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
WORKDIR /var/lib/kube
LABEL dev.hasched.kubernetes="$KUBE_VERSION" dev.hasched.kwok="$KWOK_VERSION"
CMD ["/usr/local/bin/kube-apiserver", "--version"]
EOF

log "building $KUBE_IMAGE"
# The legacy builder: FROM scratch needs no registry and no buildx plugin.
if ! DOCKER_BUILDKIT=0 docker build -q -t "$KUBE_IMAGE" "$ctx" >"$TMP/build.log" 2>&1; then
	cat "$TMP/build.log" >&2
	exit 1
fi
docker run --rm "$KUBE_IMAGE" kube-apiserver --version
NEW_ID="$(docker image inspect -f '{{.Id}}' "$KUBE_IMAGE")"
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then docker image rm "$OLD_ID" >/dev/null 2>&1 || true; fi
log "built $KUBE_IMAGE in $((SECONDS - start)) s"
