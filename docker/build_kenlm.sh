#!/usr/bin/env bash
# KenLM's lmplz, build_binary and filter, built from the PyPI `kenlm` source distribution
# (it holds the whole C++ source), pinned by version and sha256.
#
#   bash docker/build_kenlm.sh PREFIX        installs PREFIX/bin/{lmplz,build_binary,filter}
#
# The build is cached in $KENLM_CACHE (default $XDG_CACHE_HOME/dstrain or ~/.cache/dstrain), keyed by
# version and sha256, so a rerun only copies three files.  The executables are linked statically: one
# build runs on any x86-64 Linux base image (the Docker image copies them into its final stage).
#
# Where the source distribution comes from, first match wins:
#   KENLM_SDIST=/path/kenlm-X.tar.gz     a file you already have (offline builds)
#   KENLM_SDIST_URL=https://mirror/...   a mirror (the Docker build argument)
#   otherwise                            `pip download` from the package index
# Debian packages it needs (installed when run as root, otherwise listed): see APT_PACKAGES.
set -euo pipefail

KENLM_VERSION=${KENLM_VERSION:-0.3.0}
KENLM_SHA256=${KENLM_SHA256:-c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8}
APT_PACKAGES=(build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
              libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
TOOLS=(lmplz build_binary filter)

prefix=${1:?usage: build_kenlm.sh PREFIX (installs PREFIX/bin/lmplz, build_binary, filter)}
cache_root=${KENLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dstrain}
cached="$cache_root/kenlm-$KENLM_VERSION-${KENLM_SHA256:0:16}"

ensure_packages() {
    command -v dpkg-query >/dev/null || return 0   # not Debian: CMake will name what is missing
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "build_kenlm.sh: missing Debian packages: ${missing[*]}" >&2
        echo "  install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

get_sdist() {  # $1: directory to put it in; prints its path
    local dir=$1 sdist
    if [[ -n ${KENLM_SDIST:-} ]]; then
        sdist=$KENLM_SDIST
    elif [[ -n ${KENLM_SDIST_URL:-} ]]; then
        sdist="$dir/kenlm-$KENLM_VERSION.tar.gz"
        curl -fsSL --retry 5 -o "$sdist" "$KENLM_SDIST_URL"
    else
        # Only kenlm as source: its build dependencies may come as wheels.
        "${PYTHON:-python3}" -m pip download -q --no-deps --no-binary kenlm -d "$dir" "kenlm==$KENLM_VERSION" >&2
        sdist="$dir/kenlm-$KENLM_VERSION.tar.gz"
    fi
    local actual
    actual=$(sha256sum "$sdist" | cut -d' ' -f1)
    if [[ $actual != "$KENLM_SHA256" ]]; then
        echo "build_kenlm.sh: $sdist has sha256 $actual, expected KENLM_SHA256=$KENLM_SHA256" >&2
        exit 1
    fi
    echo "$sdist"
}

build() {
    ensure_packages
    work=$(mktemp -d)  # global: the EXIT trap needs it after build returns
    trap 'rm -rf "$work"' EXIT
    local sdist
    sdist=$(get_sdist "$work")
    tar -xzf "$sdist" -C "$work"
    local src="$work/kenlm-$KENLM_VERSION"
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DFORCE_STATIC=ON -DCOMPILE_TESTS=OFF \
        -DENABLE_PYTHON=OFF >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
    cmake --build "$work/build" --target "${TOOLS[@]}" -j "$(nproc)" >"$work/build.log" 2>&1 \
        || { tail -n 60 "$work/build.log" >&2; exit 1; }
    # Assemble beside the cache entry, then rename: an interrupted build leaves no half entry.
    mkdir -p "$cache_root"
    local staging="$cached.tmp-$$"
    mkdir -p "$staging/bin"
    for tool in "${TOOLS[@]}"; do
        install -m 0755 "$work/build/bin/$tool" "$staging/bin/$tool"
    done
    rm -rf "$cached"
    mv "$staging" "$cached"
}

if [[ ! -x "$cached/bin/lmplz" || ! -x "$cached/bin/build_binary" || ! -x "$cached/bin/filter" ]]; then
    echo "building KenLM $KENLM_VERSION (cached in $cached)" >&2
    build
fi
mkdir -p "$prefix/bin"
for tool in "${TOOLS[@]}"; do
    cmp -s "$cached/bin/$tool" "$prefix/bin/$tool" || install -m 0755 "$cached/bin/$tool" "$prefix/bin/$tool"
done
echo "KenLM $KENLM_VERSION: ${TOOLS[*]} in $prefix/bin" >&2
