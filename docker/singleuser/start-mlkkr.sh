#!/bin/bash
# Start command of the singleuser image.
#
# Spawned by a hub (JUPYTERHUB_API_TOKEN is set): `python -m mlkkr.hub.singleuser "$@"` makes or
# repairs the user's AiiDA profile from the MLKKR_* variables, starts the daemon and execs
# jupyterhub-singleuser with the spawner's arguments.
# Run on its own (`podman run -p 8888:8888 IMAGE`): the same profile set-up, then JupyterLab on
# 0.0.0.0:${MLKKR_PORT:-8888}; set JUPYTER_TOKEN, or read the generated token from the log.
set -euo pipefail

export HOME="${HOME:-/home/jovyan}"
mkdir -p "$HOME"
if [[ ! -w "$HOME" ]]; then
  echo "start-mlkkr: $HOME is not writable by uid $(id -u): give the home volume to uid $(id -u)" >&2
  exit 1
fi
if [[ -d "${MLKKR_STORE:-}" && -w "${MLKKR_STORE}" ]]; then
  echo "start-mlkkr: note: the shared store ${MLKKR_STORE} is writable here; mount it read-only" >&2
fi

if [[ -n "${JUPYTERHUB_API_TOKEN:-}" ]]; then
  exec python -m mlkkr.hub.singleuser "$@"
fi

mlkkr setup --daemon
exec jupyter lab --no-browser --ServerApp.ip=0.0.0.0 --ServerApp.port="${MLKKR_PORT:-8888}" \
  --ServerApp.root_dir="$HOME" "$@"
