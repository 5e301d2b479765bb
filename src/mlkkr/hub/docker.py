"""JupyterHub configuration of the single-host mode: DockerSpawner, one container per user.

The hub runs in its own container (``docker/hub``) and talks to the container engine through its
socket — Docker's, or Podman's Docker-compatible one (``podman system service``). Authentication and
services are those of every mode (:func:`mlkkr.hub.config.configure_auth`,
:func:`mlkkr.hub.config.configure_services`); this module adds the spawner and the network:

- every user gets a container of the singleuser image (``docker.image``) on the network
  ``docker.network``, started by the image's own start command (``start-mlkkr``), running as uid 1000;
- their home ``/home/jovyan`` is a named volume per user (``docker.home_volume``, ``{username}`` is
  replaced), so files and the AiiDA profile survive a stop, a restart and a new image;
- the shared archive store (``docker.store_volume``: a named volume or a host folder) is mounted
  read-only at ``docker.store_path`` and handed to the user's server as ``MLKKR_STORE``; only the hub's
  archive service (:mod:`mlkkr.archive.hubservice`, in the hub container, on ``<hub.data_dir>/store``
  where the same volume is mounted read-write) writes it; servers get its URL as ``MLKKR_ARCHIVE_URL``;
- the AiiDA profile is made at the container's start from the ``MLKKR_*`` variables (see
  :mod:`mlkkr.aiida.profile`): SQLite + ZeroMQ inside the container by default; with
  ``aiida.storage = "postgres"`` the hub makes one database per user (:mod:`mlkkr.hub.provision`) on
  the ``[postgres]`` server and passes its credentials, as the local mode does;
- the proxy and the hub listen on every interface *of the hub container* (publish the port on the
  host's loopback unless you mean otherwise); user containers reach the hub at its address on the
  network (``docker.hub_connect_ip``, by default the hub container's own address there: no DNS needed,
  which Podman's CNI networks lack without the dnsname plugin).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from dockerspawner import DockerSpawner
from traitlets import Dict, Unicode

from mlkkr.hub.config import configure_auth, configure_services

#: Where the singleuser image keeps the user's home (its user jovyan, uid 1000).
HOME_IN_CONTAINER = "/home/jovyan"


def own_address() -> str:
    """This container's address on its network (what user containers use to reach the hub).

    The container's host name resolves to it (Docker and Podman write it into /etc/hosts); failing
    that, the first IPv4 address of a non-loopback interface.
    """
    try:
        address = socket.gethostbyname(socket.gethostname())
        if not address.startswith("127."):
            return address
    except OSError:
        pass
    import fcntl
    import struct

    for _, name in socket.if_nameindex():
        if name == "lo":
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
            return socket.inet_ntoa(packed[20:24])
    raise RuntimeError("the hub container has no non-loopback address: set docker.hub_connect_ip")


def profile_env(settings: dict[str, Any], username: str) -> dict[str, str]:
    """The ``MLKKR_*`` variables of a user's server (without database credentials)."""
    aiida, docker = settings["aiida"], settings["docker"]
    env = {
        "MLKKR_PROFILE": username,
        "MLKKR_STORAGE": aiida["storage"],
        "MLKKR_BROKER": aiida["broker"],
        "MLKKR_DAEMON_WORKERS": str(aiida["daemon_workers"]),
        "MLKKR_STORE": docker["store_path"],
    }
    if aiida["broker"] == "rabbitmq":
        rmq = settings["rabbitmq"]
        env.update({
            "MLKKR_RMQ_HOST": rmq["host"], "MLKKR_RMQ_PORT": str(rmq["port"]),
            "MLKKR_RMQ_USER": rmq["user"], "MLKKR_RMQ_PASSWORD": rmq["password"],
            "MLKKR_RMQ_VHOST": rmq["vhost"],
            "MLKKR_RMQ_CONSUMER_TIMEOUT_DISABLED": "1" if rmq["consumer_timeout_disabled"] else "0",
        })
    return env


class MlkkrDockerSpawner(DockerSpawner):
    """DockerSpawner that hands each container its AiiDA profile settings (and database, if any)."""

    mlkkr_settings = Dict(config=True, help="The validated mlkkr settings (see mlkkr.settings).")
    mlkkr_secrets_dir = Unicode(config=True, help="Folder of the per-user database passwords.")
    mlkkr_archive_url = Unicode(config=True, help="Where user servers reach the archive service.")
    _db_env = Dict()

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update(profile_env(self.mlkkr_settings, self.user.name))
        env.update(self._db_env)
        if self.mlkkr_archive_url:
            env["MLKKR_ARCHIVE_URL"] = self.mlkkr_archive_url
        return env

    async def start(self):
        if self.mlkkr_settings["aiida"]["storage"] == "postgres":
            from mlkkr.hub.provision import ensure_user_database

            self._db_env = await asyncio.to_thread(
                ensure_user_database, self.mlkkr_settings["postgres"], self.user.name,
                Path(self.mlkkr_secrets_dir))
        return await super().start()


def volumes(docker: dict[str, Any]) -> dict[str, Any]:
    """DockerSpawner's ``volumes``: the per-user home (read-write), the shared store (read-only)."""
    return {
        docker["home_volume"]: HOME_IN_CONTAINER,
        docker["store_volume"]: {"bind": docker["store_path"], "mode": "ro"},
    }


def configure_docker(c, settings, state: Path | None = None) -> None:
    """Fill ``c`` for the single-host mode: network, auth, DockerSpawner, services.

    ``state`` is the hub's own folder (database, cookie secret, database passwords): a volume of the
    hub container (``docker.hub_state``).
    """
    hub, docker = settings["hub"], settings["docker"]
    state = Path(state or docker["hub_state"])
    state.mkdir(parents=True, exist_ok=True, mode=0o700)

    # Network: inside the hub container, listen on all of its interfaces.
    c.JupyterHub.bind_url = f"http://0.0.0.0:{hub['port']}/"
    c.JupyterHub.hub_ip = "0.0.0.0"
    c.JupyterHub.hub_port = docker["hub_api_port"]
    c.JupyterHub.hub_connect_ip = docker["hub_connect_ip"] or own_address()
    c.ConfigurableHTTPProxy.command = [hub["proxy_command"]]
    c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"
    c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")

    configure_auth(c, settings)

    c.JupyterHub.spawner_class = MlkkrDockerSpawner
    c.MlkkrDockerSpawner.mlkkr_settings = settings.as_dict()
    c.MlkkrDockerSpawner.mlkkr_secrets_dir = str(state / "secrets")
    c.DockerSpawner.image = docker["image"]
    c.DockerSpawner.pull_policy = docker["pull_policy"]
    c.DockerSpawner.network_name = docker["network"]
    c.DockerSpawner.use_internal_ip = True
    c.DockerSpawner.remove = docker["remove_containers"]
    c.DockerSpawner.name_template = docker["container_name"]
    c.DockerSpawner.notebook_dir = HOME_IN_CONTAINER
    c.DockerSpawner.volumes = volumes(docker)
    c.DockerSpawner.prefix = "mlkkr"
    # The image's start command (start-mlkkr: profile, daemon, jupyterhub-singleuser) runs as uid 1000.
    c.DockerSpawner.cmd = None
    if docker["mem_limit"]:
        c.DockerSpawner.mem_limit = docker["mem_limit"]
    if docker["cpu_limit"] > 0:
        c.DockerSpawner.cpu_limit = docker["cpu_limit"]
    c.Spawner.default_url = hub["default_url"]
    c.Spawner.http_timeout = hub["spawn_timeout"]
    c.Spawner.start_timeout = hub["spawn_timeout"]
    c.JupyterHub.shutdown_on_logout = False
    # User containers outlive a restart of the hub (their state is in the hub's database).
    c.JupyterHub.cleanup_servers = False

    configure_services(c, settings)
    # The archive service (the store's only writer) runs in the hub container, on its network address
    # so that user containers reach it directly as well as through the proxy.
    from mlkkr.archive.hubservice import configure_archive

    address = c.JupyterHub.hub_connect_ip
    c.MlkkrDockerSpawner.mlkkr_archive_url = configure_archive(
        c, settings, settings.data_dir / "store", state, host=address, connect_host=address) or ""
