"""Two hubs side by side for the platform benchmarks: mlkkr's and a plain JupyterHub + JupyterLab
with the same spawner class (SimpleLocalProcessSpawner), the same authenticator and no mlkkr."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import nativeauthenticator

from mlkkr.hub.client import HubClient, HubProcess

BIN = Path(sys.executable).parent
PASSWORD = "bench-Green-2026"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PLAIN_CONFIG = """
c.JupyterHub.bind_url = "http://127.0.0.1:{port}/"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {port} + 2
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
c.JupyterHub.template_paths = [{templates!r}]
c.Authenticator.admin_users = {{"admin"}}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{state}/users/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"] if {root} else []
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = c.Spawner.start_timeout = 180
"""


def free_port() -> int:
    for _ in range(200):
        port = random.randint(20000, 40000)
        try:
            for offset in range(3):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    raise RuntimeError("no free ports")


class BenchHub(HubProcess):
    def __init__(self, kind: str, workdir: Path):
        self.kind = kind
        self.workdir = workdir
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        if kind == "mlkkr":
            self.users_dir = workdir / "data" / "users"
            # Like the plain hub below (--allow-root), every user's server may run as root here: the
            # benchmark opts in explicitly (the default, "admin-only", refuses other users when root).
            config = workdir / "mlkkr.toml"
            config.write_text('[hub]\nroot_spawn = "all"\n')
            cmd = [str(BIN / "mlkkr"), "hub", "--data-dir", str(workdir / "data"), "--port", str(port),
                   "--config", str(config)]
        else:
            self.users_dir = workdir / "users"
            config = workdir / "jupyterhub_config.py"
            config.write_text(PLAIN_CONFIG.format(
                port=port, api=port + 1, proxy=str(BIN / "configurable-http-proxy"), state=workdir,
                templates=str(Path(nativeauthenticator.__file__).parent / "templates"),
                singleuser=str(BIN / "jupyterhub-singleuser"), root=os.geteuid() == 0))
            cmd = [str(BIN / "jupyterhub"), "-f", str(config)]
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        super().__init__(cmd, f"http://127.0.0.1:{port}", workdir / "hub.log", env=env, cwd=workdir)
        self.admin = HubClient(self.url, "admin", PASSWORD)
        self.admin.signup()
        assert self.admin.login(), self.log_tail()

    def add_user(self, name: str) -> HubClient:
        """An approved user. On the plain hub the user makes an AiiDA profile by hand (verdi presto),
        as they would have to before `load_profile()` works there; that is not timed."""
        client = HubClient(self.url, name, PASSWORD)
        client.signup()
        if self.kind == "mlkkr":
            self.admin.authorize(name)  # POST with the xsrf token (mlkkr.hub.auth)
        else:  # stock NativeAuthenticator approves on GET /hub/authorize/<name>
            response = self.admin.session.get(f"{self.url}/hub/authorize/{name}", timeout=30)
            assert response.status_code < 400, response.status_code
        if self.kind == "plain":
            home = self.users_dir / name
            home.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(BIN / "verdi"), "presto", "--profile-name", name, "--use-zeromq"],
                           env=dict(os.environ, AIIDA_PATH=str(home)), check=True, capture_output=True)
        return client
