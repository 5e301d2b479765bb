"""The hub image's configuration (mlkkr.hub.docker + docker/hub/jupyterhub_config.py), without a container."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from mlkkr.errors import InputError
from mlkkr.hub.docker import MlkkrDockerSpawner, configure_docker, profile_env
from mlkkr.settings import load_settings

from .containerlib import ROOT

pytestmark = pytest.mark.container


def settings(tmp_path, **overrides):
    values = {"hub.data_dir": str(tmp_path / "data"), "docker.hub_connect_ip": "10.99.0.2", **overrides}
    return load_settings(ROOT / "docker" / "hub" / "mlkkr.toml", overrides=values)


def test_configure_docker_spawner_volumes_auth_services(tmp_path):
    c = Config()
    s = settings(tmp_path, **{"docker.image": "localhost/mlkkr-singleuser:gpu", "archive.port": 18999})
    configure_docker(c, s, state=tmp_path / "state")
    assert c.JupyterHub.spawner_class is MlkkrDockerSpawner
    assert c.DockerSpawner.image == "localhost/mlkkr-singleuser:gpu"
    assert c.DockerSpawner.network_name == "mlkkr" and c.DockerSpawner.use_internal_ip is True
    assert c.DockerSpawner.volumes == {
        "mlkkr-home-{username}": "/home/jovyan",
        "mlkkr-store": {"bind": "/srv/mlkkr-store", "mode": "ro"},
    }
    assert c.JupyterHub.hub_connect_ip == "10.99.0.2" and c.JupyterHub.hub_ip == "0.0.0.0"
    assert c.JupyterHub.bind_url == "http://0.0.0.0:8000/"
    # Shared with every mode: NativeAuthenticator with approval (state changes by POST only), the idle
    # culler, the archive service.
    assert c.JupyterHub.authenticator_class == "mlkkr.hub.auth.MlkkrAuthenticator"
    assert c.NativeAuthenticator.open_signup is False
    services = {svc["name"]: svc for svc in c.JupyterHub.services}
    assert {"idle-culler", "archive"} <= set(services)
    archive = services["archive"]
    assert archive["url"] == "http://10.99.0.2:18999"
    assert str(tmp_path / "data" / "store") in archive["command"]
    assert c.MlkkrDockerSpawner.mlkkr_archive_url.startswith("http://10.99.0.2:")


def test_user_containers_get_their_profile_settings(tmp_path):
    s = settings(tmp_path, **{"aiida.broker": "rabbitmq", "rabbitmq.host": "rmq.internal"})
    env = profile_env(s.as_dict(), "alice")
    assert env["MLKKR_PROFILE"] == "alice" and env["MLKKR_STORE"] == "/srv/mlkkr-store"
    assert env["MLKKR_STORAGE"] == "sqlite" and env["MLKKR_BROKER"] == "rabbitmq"
    assert env["MLKKR_RMQ_HOST"] == "rmq.internal"


def test_hub_config_file_reads_mlkkr_setting_variables(tmp_path):
    namespace: dict = {}
    source = (ROOT / "docker" / "hub" / "jupyterhub_config.py").read_text()
    exec(compile(source.split("c = get_config()")[0], "jupyterhub_config.py", "exec"), namespace)
    overrides = namespace["env_overrides"]({
        "MLKKR_SETTING_DOCKER__IMAGE": "localhost/x:gpu", "MLKKR_SETTING_HUB__PORT": "8001",
        "MLKKR_SETTING_DOCKER__REMOVE_CONTAINERS": "false", "MLKKR_SETTING_DOCKER__HOME_VOLUME": "",
        "MLKKR_STORE": "/ignored"})
    assert overrides == {"docker.image": "localhost/x:gpu", "hub.port": 8001, "docker.remove_containers": False}
    with pytest.raises(InputError, match="docker.cpu_limit"):
        settings(tmp_path, **{"docker.cpu_limit": "two"})
