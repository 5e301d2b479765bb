#!/usr/bin/env bash
# Build the local base image of both Dockerfiles: Debian bookworm (debootstrap --variant=minbase)
# plus CPython 3.12 in /usr/local — the same layout as the public python:3.12-slim-bookworm image,
# so that either can be the Dockerfiles' BASE_IMAGE.
#
#   docker/make-base.sh [--tag NAME] [--python PREFIX] [--force]
#
#   --tag     image name (default localhost/mlkkr-base:bookworm-py3.12)
#   --python  prefix of a CPython 3.12 built on Debian 12 (default: the base of the project's .venv,
#             else of python3.12 on PATH). Its bin/, lib/ and include/ are copied to /usr/local.
#   --force   rebuild even if the image exists (otherwise an existing image is kept: its id is what
#             keys the layer cache of both images).
#
# Why a copied interpreter: Debian 12 ships Python 3.11 only, and none of the sources this project
# may use (Debian's archive, PyPI, npm) carries CPython 3.12 — neither its source (Debian's sid and
# trixie moved to 3.13) nor a relocatable build (uv / python-build-standalone download from GitHub).
# A CPython 3.12 compiled on Debian 12 links only Debian 12 libraries, which debootstrap installs
# below; the script checks with ldd inside the new root that nothing is missing.
#
# The Debian mirror is the one apt is configured with on this machine (never written into the repo).
# Needs root (or fakeroot-free user namespaces), debootstrap and podman; CONTAINERS_CONF as printed by
# scripts/install-container-tools.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="localhost/mlkkr-base:bookworm-py3.12"
PYPREFIX=""
FORCE=0
while (($#)); do
  case "$1" in
    --tag) TAG="$2"; shift 2 ;;
    --python) PYPREFIX="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n 2,24p "$0"; exit 0 ;;
    *) echo "make-base: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "make-base: $*" >&2; }

if ((!FORCE)) && podman image exists "$TAG"; then
  log "$TAG exists (use --force to rebuild)"; echo "$TAG"; exit 0
fi

# --- the mirror apt uses here: deb822 sources first, then the one-line format -----------------------
mirror="$(
  { grep -hs -A3 -E '^Types:.*\bdeb\b' /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | awk '/^URIs:/ {print $2}'
    grep -hs -E '^deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
  } | grep -v -E 'security|updates' | grep -E '/debian/?$' | head -1 || true
)"
[[ -n "$mirror" ]] || { log "no Debian mirror found in apt's sources"; exit 1; }

# --- the CPython 3.12 to copy -----------------------------------------------------------------------
if [[ -z "$PYPREFIX" ]]; then
  for py in "$ROOT/.venv/bin/python" "$(command -v python3.12 || true)"; do
    [[ -n "$py" && -x "$py" ]] || continue
    if "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
      PYPREFIX="$("$py" -c 'import sys; print(sys.base_prefix)')"; break
    fi
  done
fi
[[ -n "$PYPREFIX" && -x "$PYPREFIX/bin/python3.12" ]] || { log "no CPython 3.12 found (give --python PREFIX)"; exit 1; }
"$PYPREFIX/bin/python3.12" -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, readline, venv, ensurepip' \
  || { log "$PYPREFIX lacks standard modules (ssl, sqlite3, ctypes, ...)"; exit 1; }

work="$(mktemp -d "${TMPDIR:-/var/tmp}/mlkkr-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

# Runtime libraries of CPython's extension modules, CA certificates, tini (PID 1 of the images).
include="ca-certificates,tini,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libncursesw6"
include+=",zlib1g,libuuid1,libexpat1,libnsl2,libtirpc3,libgdbm6,netbase,tzdata"
log "debootstrap --variant=minbase bookworm from $mirror"
t0=$SECONDS
debootstrap --variant=minbase --include="$include" bookworm "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
  || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
log "debootstrap took $((SECONDS - t0)) s"

# apt inside the images: the same suites as here (main, updates, security), no recommends, no caches.
cat > "$rootfs/etc/apt/sources.list" <<EOF
deb ${mirror%/} bookworm main
deb ${mirror%/} bookworm-updates main
deb ${mirror%/}-security bookworm-security main
EOF
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/01norecommends"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
       "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

# CPython 3.12 into /usr/local, without its test suite, Tk and the prefix's own site-packages.
log "copying CPython $("$PYPREFIX/bin/python3.12" -c 'import platform; print(platform.python_version())') from $PYPREFIX"
tar -C "$PYPREFIX" \
    --exclude='lib/python3.12/test' --exclude='lib/python3.12/idlelib' --exclude='lib/python3.12/tkinter' \
    --exclude='lib/python3.12/turtledemo' --exclude='lib/python3.12/lib-dynload/_tkinter*' \
    --exclude='lib/python3.12/site-packages/*' --exclude='__pycache__' \
    -cf - bin/python3.12 lib include/python3.12 | tar -C "$rootfs/usr/local" -xf -
ln -sf python3.12 "$rootfs/usr/local/bin/python3"
ln -sf python3.12 "$rootfs/usr/local/bin/python"
chroot "$rootfs" /sbin/ldconfig
missing="$(chroot "$rootfs" /bin/sh -c \
  'for f in /usr/local/bin/python3.12 /usr/local/lib/python3.12/lib-dynload/*.so; do ldd "$f"; done' \
  | grep 'not found' | sort -u || true)"
[[ -z "$missing" ]] || { log "libraries missing in the base: $missing"; exit 1; }
chroot "$rootfs" /usr/local/bin/python3.12 -c 'import ssl, sqlite3, ctypes, venv, ensurepip; print("python ok")' >&2
chroot "$rootfs" /usr/local/bin/python3.12 -m ensurepip --default-pip > /dev/null 2>&1
rm -rf "$rootfs/root/.cache"

log "importing as $TAG"
tar -C "$rootfs" --numeric-owner -cf - . | podman import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/usr/local/bin/python3"]' \
  --message "debootstrap minbase bookworm + CPython 3.12" - "$TAG" > /dev/null
log "done in $((SECONDS - t0)) s: $(podman image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
echo "$TAG"
