#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, etcd and kubectl from this pinned module into
# $1 (default: ../../../.tools/kube-<version>/bin). A cold build takes about 5-8 minutes on 2 cores;
# the Go build and module caches make a rebuild cheap.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
out="${1:-$here/../../../.tools/kube-$version/bin}"
mkdir -p "$out"
minor="${version#v1.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
cd "$here"
for cmd in etcd kube-apiserver kube-controller-manager kubectl; do
  [ -x "$out/$cmd" ] && continue
  echo "building $cmd (k8s.io/kubernetes $version)" >&2
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$cmd.tmp" "./cmd/$cmd"
  mv "$out/$cmd.tmp" "$out/$cmd"
done
