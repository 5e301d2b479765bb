#!/usr/bin/env bash
# Build the images with Podman (or Docker: CONTAINER_ENGINE=docker).
#
#   docker/build.sh [--base debootstrap|public|IMAGE] [--variant cpu|gpu] [singleuser|hub|all]
#
#   --base debootstrap (default)  the local base of docker/make-base.sh (made when missing)
#          public                 the Dockerfiles' default, python:3.12-slim-bookworm (needs Docker Hub)
#          IMAGE                  any Debian bookworm image with CPython 3.12 in /usr/local
#   --variant cpu (default)       CPU-only torch: PyPI's torch without its CUDA dependencies (nvidia-*,
#                                 triton) and stubs for the CUDA libraries it links: 2.74 GB, not 6.60
#                                 (docker/singleuser/torch-cpu.py); with TORCH_CPU_INDEX_URL set,
#                                 PyTorch's own CPU wheel from that index instead
#             gpu                 torch from PyPI as it is (the CUDA build with its nvidia-* libraries)
#
# JuKKR: the singleuser image builds it from the pinned tarballs, passed in as the build context
# jukkr-source (a temporary folder with copies of them, removed afterwards; nothing is written into
# the repository): $MLKKR_JUKKR_SOURCE and $MLKKR_JUKKR_TESTS, else the offline copy in
# ../shared/jukkr beside the checkout. Without a source tarball the build downloads the pinned commit.
# The tests tarball goes into the image (/opt/jukkr/share/tests) for `mlkkr jukkr check`.
#
# Tags: localhost/mlkkr-singleuser:<variant> and localhost/mlkkr-hub:latest (override with
# MLKKR_SINGLEUSER_IMAGE / MLKKR_HUB_IMAGE). Prints "<image> <seconds>" per image built.
#
# pip inside the build: this machine's index (PIP_INDEX_URL, if it is an http(s) URL), timeout and CA
# bundle (PIP_CERT or pip's global.cert, given as the build secret pip_cert) are passed in at build
# time and written nowhere. Local file:// indexes and find-links are not visible inside a build and
# are left out; a pip constraint file is not needed (the Dockerfiles pin torch exactly).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE="${CONTAINER_ENGINE:-podman}"
BASE=debootstrap
VARIANT=cpu
WHAT=all
while (($#)); do
  case "$1" in
    --base) BASE="$2"; shift 2 ;;
    --variant) VARIANT="$2"; shift 2 ;;
    singleuser|hub|all) WHAT="$1"; shift ;;
    -h|--help) sed -n 2,28p "$0"; exit 0 ;;
    *) echo "build: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$VARIANT" == cpu || "$VARIANT" == gpu ]] || { echo "build: --variant must be cpu or gpu" >&2; exit 2; }

SINGLEUSER="${MLKKR_SINGLEUSER_IMAGE:-localhost/mlkkr-singleuser:$VARIANT}"
HUB="${MLKKR_HUB_IMAGE:-localhost/mlkkr-hub:latest}"

args=()
case "$BASE" in
  debootstrap) args+=(--build-arg "BASE_IMAGE=$("$ROOT/docker/make-base.sh")") ;;
  public) ;;
  *) args+=(--build-arg "BASE_IMAGE=$BASE") ;;
esac

pip_cmd="$ROOT/.venv/bin/pip"; [[ -x "$pip_cmd" ]] || pip_cmd="pip3"
pip_get() { "$pip_cmd" config get "global.$1" 2>/dev/null || true; }
cert="${PIP_CERT:-$(pip_get cert)}"
[[ -n "$cert" && -s "$cert" ]] && args+=(--secret "id=pip_cert,src=$cert")
index="${PIP_INDEX_URL:-$(pip_get index-url)}"
[[ "$index" == http://* || "$index" == https://* ]] && args+=(--build-arg "PIP_INDEX_URL=$index")
timeout="${PIP_DEFAULT_TIMEOUT:-$(pip_get timeout)}"
[[ -n "$timeout" ]] && args+=(--build-arg "PIP_DEFAULT_TIMEOUT=$timeout")
[[ "$ENGINE" == podman ]] && args+=(--format docker)   # keeps HEALTHCHECK (OCI images have none)
[[ -n "${TORCH_CPU_INDEX_URL:-}" ]] && args+=(--build-arg "TORCH_CPU_INDEX_URL=$TORCH_CPU_INDEX_URL")

# The pinned JuKKR tarballs, copied into a temporary build context of their own.
jukkr_context() {
  local dir="$1" src="${MLKKR_JUKKR_SOURCE:-}" tests="${MLKKR_JUKKR_TESTS:-}" f
  if [[ -z "$src" ]]; then
    for f in "$ROOT"/../shared/jukkr/jukkr-*-src.tar.gz; do [[ -f "$f" ]] && src="$f" && break; done
  fi
  if [[ -z "$tests" && -n "$src" ]]; then
    for f in "$(dirname "$src")"/jukkr-*-tests.tar.gz; do [[ -f "$f" ]] && tests="$f" && break; done
  fi
  if [[ -n "$src" ]]; then
    [[ -f "$src" ]] || { echo "build: MLKKR_JUKKR_SOURCE=$src is not a file" >&2; exit 2; }
    cp -p "$src" "$dir/"
  else
    echo "build: no JuKKR source tarball (MLKKR_JUKKR_SOURCE, ../shared/jukkr): the build downloads it" >&2
  fi
  if [[ -n "$tests" ]]; then
    [[ -f "$tests" ]] || { echo "build: MLKKR_JUKKR_TESTS=$tests is not a file" >&2; exit 2; }
    cp -p "$tests" "$dir/"
    echo "/opt/jukkr/share/tests/$(basename "$tests")"
  fi
}

build() {  # image dockerfile [extra args]
  local image="$1" dockerfile="$2"; shift 2
  local t0=$SECONDS
  echo "build: $image from $dockerfile" >&2
  "$ENGINE" build "${args[@]}" "$@" -f "$ROOT/$dockerfile" -t "$image" "$ROOT" >&2
  echo "$image $((SECONDS - t0))"
}

if [[ "$WHAT" == singleuser || "$WHAT" == all ]]; then
  context="$(mktemp -d "${TMPDIR:-/tmp}/mlkkr-jukkr-context.XXXXXX")"
  trap 'rm -rf "$context"' EXIT
  tests_in_image="$(jukkr_context "$context")"
  build "$SINGLEUSER" docker/singleuser/Dockerfile --build-arg "TORCH_VARIANT=$VARIANT" \
    --build-context "jukkr-source=$context" --build-arg "JUKKR_TESTS=$tests_in_image"
fi
if [[ "$WHAT" == hub || "$WHAT" == all ]]; then
  build "$HUB" docker/hub/Dockerfile
fi
