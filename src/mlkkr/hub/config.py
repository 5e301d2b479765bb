"""JupyterHub configuration of the local mode (the embedded default).

- Authentication: NativeAuthenticator, hardened by :mod:`mlkkr.hub.auth`. Anyone may sign up; a new
  account needs an admin's approval at ``/hub/authorize`` (POST forms with the xsrf token), except the
  configured first admin (``hub.admin``), who is approved on sign-up. Too many failed logins lock the
  account for a while, and the login page says for how long. Cookies are SameSite=Lax. Usernames are restricted to
  ``[a-z0-9][a-z0-9_.-]*`` so that they are safe as folder and database names.
- Spawner: JupyterHub's simple local process spawner (every user runs as the hub's OS user — there is
  no isolation between users in this mode; use the single-host or cluster mode for that; when the hub
  runs as root, only ``hub.admin`` may start a server unless ``hub.root_spawn = "all"``), one home
  folder per user under ``<data_dir>/users/``, JupyterLab as the default UI, Voila available at
  ``/user/<name>/voila/``. The server starts through :mod:`mlkkr.hub.singleuser`, which makes the
  user's AiiDA profile first.
- Services: the idle culler (``jupyterhub-idle-culler``) as a hub-managed service with the scopes it
  needs; servers idle for ``hub.idle_timeout`` seconds are stopped. The archive service
  (:mod:`mlkkr.archive.hubservice`), the only writer of ``<data_dir>/store``; servers get
  ``MLKKR_ARCHIVE_URL``.
- Network: the proxy listens on ``hub.ip:hub.port`` (127.0.0.1 by default); the hub and the proxy's
  API on 127.0.0.1 at the next two ports.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado import web
from traitlets import Dict, Unicode

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"


def internal_ports(hub: dict[str, Any]) -> tuple[int, int]:
    """(proxy API port, hub port): the two ports after the public one."""
    return hub["port"] + 1, hub["port"] + 2


class MlkkrLocalSpawner(SimpleLocalProcessSpawner):
    """Local process spawner that prepares each user's AiiDA environment.

    Before start: the home folder, and in the service mode the user's own PostgreSQL database.
    Environment: ``AIIDA_PATH`` in the home folder, the ``MLKKR_*`` profile variables. After stop:
    the user's AiiDA daemon is stopped too (their processes are persisted and resume with the next
    server).
    """

    mlkkr_settings = Dict(config=True, help="The validated mlkkr settings (see mlkkr.settings).")
    mlkkr_data_dir = Unicode(config=True, help="The platform's data folder.")
    mlkkr_archive_url = Unicode(config=True, help="Where user servers reach the archive service.")
    _db_env = Dict()

    @property
    def _profile_env(self) -> dict[str, str]:
        aiida = self.mlkkr_settings["aiida"]
        env = {
            "AIIDA_PATH": self.home_dir,
            "MLKKR_PROFILE": self.user.name,
            "MLKKR_STORAGE": aiida["storage"],
            "MLKKR_BROKER": aiida["broker"],
            "MLKKR_DAEMON_WORKERS": str(aiida["daemon_workers"]),
            "MLKKR_DATA_DIR": self.mlkkr_data_dir,
            "MLKKR_STORE": str(Path(self.mlkkr_data_dir) / "store"),
        }
        if self.mlkkr_archive_url:
            env["MLKKR_ARCHIVE_URL"] = self.mlkkr_archive_url
        if aiida["broker"] == "rabbitmq":
            rmq = self.mlkkr_settings["rabbitmq"]
            env.update({
                "MLKKR_RMQ_HOST": rmq["host"], "MLKKR_RMQ_PORT": str(rmq["port"]),
                "MLKKR_RMQ_USER": rmq["user"], "MLKKR_RMQ_PASSWORD": rmq["password"],
                "MLKKR_RMQ_VHOST": rmq["vhost"],
                "MLKKR_RMQ_CONSUMER_TIMEOUT_DISABLED": "1" if rmq["consumer_timeout_disabled"] else "0",
            })
        env.update(self._db_env)
        return env

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update(self._profile_env)
        # The daemon re-invokes `verdi`: this environment's bin/ must come first on PATH.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
        return env

    def check_root_spawn(self) -> None:
        """Refuse (403, with the reason) a server that would give a user root: the hub runs as root,
        so every server runs as root (``--allow-root``); with ``hub.root_spawn = "admin-only"`` only
        ``hub.admin`` may start one."""
        hub = self.mlkkr_settings["hub"]
        if os.geteuid() != 0 or hub.get("root_spawn", "admin-only") == "all" or self.user.name == hub["admin"]:
            return
        message = (
            f"The server of {self.user.name} was not started: this hub runs as root, and in the local mode "
            "every server runs as the hub's OS user, so it would give you root on this machine. Only the "
            f"admin ({hub['admin']}) may start a server here. Ask the admin to run the hub as a non-root user, "
            "or to use the single-host (containers) or cluster mode, which isolate users "
            "(or, knowingly, to set hub.root_spawn = \"all\")."
        )
        error = web.HTTPError(403, message.replace("%", "%%"))
        error.jupyterhub_message = message  # what the hub's pages show the user
        raise error

    async def start(self):
        self.check_root_spawn()
        Path(self.home_dir).mkdir(parents=True, exist_ok=True)
        if self.mlkkr_settings["aiida"]["storage"] == "postgres":
            from mlkkr.hub.provision import ensure_user_database

            secrets = Path(self.mlkkr_data_dir) / "hub" / "secrets"
            self._db_env = await asyncio.to_thread(
                ensure_user_database, self.mlkkr_settings["postgres"], self.user.name, secrets)
        return await super().start()

    async def stop(self, now: bool = False):
        await super().stop(now=now)
        if self.mlkkr_settings["aiida"]["broker"] != "none" and Path(self.home_dir).is_dir():
            from mlkkr.aiida.profile import stop_daemon

            try:
                await asyncio.to_thread(stop_daemon, self.user.name, {"AIIDA_PATH": self.home_dir})
            except Exception:  # noqa: BLE001 - a stopped server must not fail because of its daemon
                self.log.exception("could not stop the AiiDA daemon of %s", self.user.name)


def configure(c, settings) -> None:
    """Fill the JupyterHub config object ``c`` for the local mode from validated mlkkr ``settings``."""
    data_dir = settings.data_dir
    state = data_dir / "hub"
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    (data_dir / "users").mkdir(parents=True, exist_ok=True)
    configure_network(c, settings, state)
    configure_auth(c, settings)
    configure_local_spawner(c, settings)
    configure_services(c, settings)
    from mlkkr.archive.hubservice import configure_archive

    c.MlkkrLocalSpawner.mlkkr_archive_url = configure_archive(c, settings, data_dir / "store", state) or ""


def configure_network(c, settings, state: Path) -> None:
    """Proxy on hub.ip:hub.port; hub and proxy API on 127.0.0.1; hub state files under ``state``."""
    hub = settings["hub"]
    api_port, hub_port = internal_ports(hub)
    c.JupyterHub.bind_url = f"http://{hub['ip']}:{hub['port']}/"
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = hub_port
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{api_port}"
    c.ConfigurableHTTPProxy.command = [hub["proxy_command"]]
    c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")


def configure_auth(c, settings) -> None:
    """NativeAuthenticator, hardened (:mod:`mlkkr.hub.auth`): sign-up with admin approval, lock-out,
    safe usernames (every mode); the hub's cookies are SameSite=Lax."""
    import nativeauthenticator

    from mlkkr.hub.auth import TEMPLATES

    hub = settings["hub"]
    c.JupyterHub.authenticator_class = "mlkkr.hub.auth.MlkkrAuthenticator"
    # mlkkr's templates (the approval page with POST forms) before NativeAuthenticator's.
    c.JupyterHub.template_paths = [str(TEMPLATES), str(Path(nativeauthenticator.__file__).parent / "templates")]
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.allowed_failed_logins = hub["allowed_failed_logins"]
    c.NativeAuthenticator.seconds_before_next_try = hub["lockout_seconds"]
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.minimum_password_length = 8
    c.Authenticator.admin_users = {hub["admin"]}
    # NativeAuthenticator does its own authorisation (approved accounts only), so any user it
    # authenticates is allowed in.
    c.Authenticator.allow_all = True
    c.Authenticator.username_pattern = USERNAME_PATTERN
    # The login cookie, the session id and (by default the same options) the _xsrf cookie: not sent
    # with requests that other sites start, except top-level GET navigation, which changes nothing.
    tornado_settings = dict(c.JupyterHub.tornado_settings) if "tornado_settings" in c.JupyterHub else {}
    cookie_options = dict(tornado_settings.get("cookie_options", {}), samesite="Lax")
    c.JupyterHub.tornado_settings = dict(tornado_settings, cookie_options=cookie_options)


def configure_local_spawner(c, settings) -> None:
    """The simple local process spawner with mlkkr's per-user AiiDA preparation."""
    hub = settings["hub"]
    data_dir = settings.data_dir
    c.JupyterHub.spawner_class = MlkkrLocalSpawner
    c.MlkkrLocalSpawner.mlkkr_settings = settings.as_dict()
    c.MlkkrLocalSpawner.mlkkr_data_dir = str(data_dir)
    c.SimpleLocalProcessSpawner.home_dir_template = str(data_dir / "users" / "{username}")
    c.Spawner.cmd = [sys.executable, "-m", "mlkkr.hub.singleuser"]
    c.Spawner.default_url = hub["default_url"]
    c.Spawner.http_timeout = hub["spawn_timeout"]
    c.Spawner.start_timeout = hub["spawn_timeout"]
    c.JupyterHub.shutdown_on_logout = False
    c.JupyterHub.cleanup_servers = True


def configure_services(c, settings) -> None:
    """Hub-managed services (every mode): the idle culler, with only the scopes it needs."""
    hub = settings["hub"]
    services = list(c.JupyterHub.services) if "services" in c.JupyterHub else []
    roles = list(c.JupyterHub.load_roles) if "load_roles" in c.JupyterHub else []
    if hub["idle_timeout"] > 0:
        services.append({
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                        f"--timeout={hub['idle_timeout']}", "--cull-every=60"],
        })
        roles.append({
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        })
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
