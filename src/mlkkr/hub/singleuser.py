"""Start a user's server: make or repair the AiiDA profile, start the daemon, exec JupyterLab.

The spawner runs ``python -m mlkkr.hub.singleuser [jupyterhub-singleuser args]``. Profile settings
come from the ``MLKKR_*`` environment (see :mod:`mlkkr.aiida.profile`). If the profile cannot be made
the server does not start, and the message says why (the hub shows it on the spawn page and log).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

#: JupyterLab settings written into a new user's home (never over the user's own choices):
#: no "Would you like to get notified about official Jupyter news?" pop-up, no update checks.
LAB_DEFAULTS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}


def write_lab_defaults(home: Path) -> None:
    settings_dir = home / ".jupyter" / "lab" / "user-settings"
    for relpath, values in LAB_DEFAULTS.items():
        path = settings_dir / relpath
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2))


def _server_address() -> tuple[str, int] | None:
    """Where this server will listen (JupyterHub says so in JUPYTERHUB_SERVICE_URL)."""
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    return (url.hostname or "127.0.0.1", url.port) if url.port else None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", message="Creating AiiDA configuration folder")
    from mlkkr.aiida.profile import ProfileSpec, ensure_profile, start_daemon
    from mlkkr.apps import install_apps
    from mlkkr.errors import MlkkrError

    try:
        spec = ProfileSpec.from_env()
        report = ensure_profile(spec)
    except MlkkrError as exc:
        print(f"mlkkr: the AiiDA profile could not be set up: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"mlkkr: profile {report['profile']!r} ready ({report['storage']}, broker {report['broker']}); "
          f"{'; '.join(report['actions']) or 'nothing to repair'}", file=sys.stderr, flush=True)
    write_lab_defaults(Path(os.environ.get("HOME", str(Path.home()))))
    install_apps(Path(os.environ.get("HOME", str(Path.home()))))  # the AiiDAlab apps and their launcher cards
    if spec.broker != "none" and spec.daemon_workers > 0:
        start_daemon(spec.name, spec.daemon_workers, wait=False, after=_server_address())
    exe = str(Path(sys.executable).with_name("jupyterhub-singleuser"))
    if os.geteuid() == 0 and "--allow-root" not in argv:
        argv.append("--allow-root")
    os.execv(exe, [exe, *argv])


if __name__ == "__main__":
    main()
