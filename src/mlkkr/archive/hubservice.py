"""How the hub runs the archive service: the JupyterHub service entry and the roles it needs.

:func:`archive_service` is called by :func:`mlkkr.hub.config.configure`. It returns

- the managed service ``archive``: ``python -m mlkkr.archive.service --store <data_dir>/store``, on
  ``127.0.0.1:<archive.port>`` (0: a free port chosen when the hub starts), routed by the proxy at
  ``/services/archive/``; OAuth without a confirmation page; its own ``AIIDA_PATH`` (it reads
  archives with aiida-core and has no profile);
- the roles: every user gets ``access:services!service=archive`` (added to the default ``user`` role)
  and so does every server's ``$JUPYTERHUB_API_TOKEN`` (added to the default ``server`` role), so
  ``mlkkr archive publish`` in a user's terminal or notebook works with no extra token;
- the URL user servers reach the service at (``$MLKKR_ARCHIVE_URL``).

The service itself gets no scopes: checking a caller's token needs none.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from mlkkr.archive import SERVICE_NAME

ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
#: JupyterHub's default scopes of these roles (jupyterhub.roles.get_default_roles), which an override
#: replaces, so they are repeated here.
DEFAULT_ROLE_SCOPES = {
    "user": ["self"],
    "server": ["users:activity!user", "access:servers!server"],
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def add_access_to_roles(load_roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the service's access scope to the ``user`` and ``server`` roles in ``load_roles`` (in place:
    an existing override is extended, otherwise one with JupyterHub's default scopes is appended)."""
    for name, defaults in DEFAULT_ROLE_SCOPES.items():
        role = next((r for r in load_roles if r.get("name") == name), None)
        if role is None:
            role = {"name": name, "scopes": list(defaults)}
            load_roles.append(role)
        if ACCESS_SCOPE not in role.setdefault("scopes", list(defaults)):
            role["scopes"].append(ACCESS_SCOPE)
    return load_roles


def archive_service(settings, store: Path, state: Path, *, host: str = "127.0.0.1",
                    connect_host: str | None = None) -> tuple[dict[str, Any], str]:
    """The JupyterHub service entry and the URL user servers use (``$MLKKR_ARCHIVE_URL``).

    ``store``: the shared store's folder (the service makes it); ``state``: a private folder of the
    hub's (the service's ``AIIDA_PATH``); ``host``: where the service listens and the proxy routes to;
    ``connect_host``: the address user servers reach it at (default ``host``; in containers, the hub
    container's address).
    """
    archive = settings["archive"]
    port = archive["port"] or free_port(host if host not in ("", "0.0.0.0") else "127.0.0.1")
    home = Path(state) / "archive-service"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = f"http://{host}:{port}"
    service = {
        "name": SERVICE_NAME,
        "url": url,
        "command": [sys.executable, "-m", "mlkkr.archive.service", "--store", str(store),
                    f"--max-upload-mb={archive['max_upload_mb']}", f"--max-unpacked-mb={archive['max_unpacked_mb']}"],
        "environment": {"AIIDA_PATH": str(home)},
        "cwd": str(home),
        "oauth_no_confirm": True,
        "display": True,
    }
    return service, f"http://{connect_host or host}:{port}/services/{SERVICE_NAME}/"


def configure_archive(c, settings, store: Path, state: Path, **where: str) -> str | None:
    """Add the archive service and its roles to the JupyterHub config ``c``; return the URL for user
    servers (None when ``archive.enabled`` is false). ``where``: ``host``, ``connect_host``."""
    if not settings["archive"]["enabled"]:
        return None
    service, url = archive_service(settings, store, state, **where)
    services = list(c.JupyterHub.services) if "services" in c.JupyterHub else []
    roles = list(c.JupyterHub.load_roles) if "load_roles" in c.JupyterHub else []
    c.JupyterHub.services = [*services, service]
    c.JupyterHub.load_roles = add_access_to_roles(roles)
    return url
