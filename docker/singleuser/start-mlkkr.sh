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

# The profile first (a failure stops here, with the reason); the daemon detached, started only once
# JupyterLab answers, so that its three AiiDA processes do not slow the server's own start.
python - <<'PY'
import os, sys
from mlkkr.aiida.profile import ProfileSpec, ensure_profile, start_daemon
from mlkkr.errors import MlkkrError
try:
    spec = ProfileSpec.from_env()
    report = ensure_profile(spec)
except MlkkrError as exc:
    sys.exit(f"start-mlkkr: the AiiDA profile could not be set up: {exc}")
print(f"start-mlkkr: profile {report['profile']!r} ready ({report['storage']}, broker {report['broker']})",
      file=sys.stderr)
if spec.broker != "none" and spec.daemon_workers > 0:
    start_daemon(spec.name, spec.daemon_workers, wait=False, after=("127.0.0.1", int(os.environ.get("MLKKR_PORT", "8888"))))
PY
exec jupyter lab --no-browser --ServerApp.ip=0.0.0.0 --ServerApp.port="${MLKKR_PORT:-8888}" \
  --ServerApp.root_dir="$HOME" "$@"
