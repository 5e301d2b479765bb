"""The one-host deployment: docker/compose.yaml brought up with podman-compose, the hub spawning user
containers through Podman's Docker-compatible socket with DockerSpawner, a real Chromium logging in
and reaching JupyterLab in the user's container, the user's data surviving a container restart."""

from __future__ import annotations

import json
import re
import secrets
import socket

import pytest

from labdriver import login, shot, signup, wait_for_lab
from mlkkr.hub.client import HubClient

from .containerlib import ROOT, podman, require, sh, wait_http, wait_mlkkr_status

pytestmark = [pytest.mark.container, pytest.mark.browser, pytest.mark.slow]

PASSWORD = f"kkr-{secrets.token_hex(8)}"

NODE = """
from aiida import load_profile, orm
profile = load_profile()
node = orm.Dict({'kept': 'across restarts'}).store()
print(json.dumps({'uuid': node.uuid, 'profile': profile.name, 'profile_uuid': profile.uuid}))
"""

CHECK = """
from aiida import load_profile, orm
profile = load_profile()
node = orm.load_node(UUID)
print(json.dumps({'value': node.get_dict(), 'profile': profile.name, 'profile_uuid': profile.uuid}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def deployment(singleuser_image, hub_image, podman_socket, tmp_path):
    """docker/compose.yaml up with names of its own; everything it made is removed afterwards."""
    tag = f"mlkkr-t{secrets.token_hex(3)}"
    port = free_port()
    env = {
        "MLKKR_HUB_IMAGE": hub_image, "MLKKR_SINGLEUSER_IMAGE": singleuser_image, "MLKKR_PORT": str(port),
        "DOCKER_SOCKET": str(podman_socket), "MLKKR_NETWORK": tag, "MLKKR_STORE_VOLUME": f"{tag}-store",
        "MLKKR_HUB_STATE_VOLUME": f"{tag}-hub", "MLKKR_HOME_VOLUME": f"{tag}-home-{{username}}",
        "MLKKR_CONTAINER_NAME": f"{tag}-{{username}}", "MLKKR_HUB_CONTAINER": f"{tag}-hub", "MLKKR_ADMIN": "admin",
    }
    compose = [require("podman-compose"), "-p", tag, "-f", str(ROOT / "docker" / "compose.yaml")]
    try:
        sh([*compose, "up", "-d"], timeout=300, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/hub/api", timeout=120, container=f"{tag}-hub")
        yield {"url": url, "tag": tag, "hub": f"{tag}-hub", "user": lambda name: f"{tag}-{name}"}
    finally:
        logs = podman("logs", f"{tag}-hub", check=False)
        (tmp_path / "hub.log").write_text(logs.stdout + logs.stderr)
        print(f"hub log: {tmp_path / 'hub.log'}")
        for name in podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split():
            if name.startswith(f"{tag}-") and name != f"{tag}-hub":
                podman("rm", "-f", "-t", "5", name, check=False)
        sh([*compose, "down", "-v"], check=False, timeout=300, env=env)
        for volume in podman("volume", "ls", "--format", "{{.Name}}", check=False).stdout.split():
            if volume.startswith(tag):
                podman("volume", "rm", "-f", volume, check=False)
        podman("network", "rm", "-f", tag, check=False)


def mounts(container: str) -> dict[str, dict]:
    info = json.loads(podman("inspect", container).stdout)[0]
    return {m["Destination"]: m for m in info["Mounts"]}


def in_user(container: str, code: str) -> dict:
    out = podman("exec", container, "python", "-c", "import json\n" + code, timeout=180).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_hub_spawns_a_user_container_browser_reaches_lab_data_survives_restart(deployment, page):
    url, user_container = deployment["url"], deployment["user"]("admin")

    # A real browser: the admin signs up (approved at once), logs in and lands in JupyterLab, served
    # from the container DockerSpawner started for them through Podman's socket.
    assert "successful" in signup(page, url, "admin", PASSWORD)
    login(page, url, "admin", PASSWORD)
    wait_for_lab(page, timeout=420_000)
    assert re.search(r"/user/admin/lab", page.url), page.url
    shot(page, "container-01-admin-lab-in-user-container")

    # The user's container: the singleuser image, uid 1000, home on the per-user named volume, the
    # shared store read-only at the fixed path given in MLKKR_STORE.
    info = json.loads(podman("inspect", user_container).stdout)[0]
    assert info["State"]["Running"]
    assert podman("exec", user_container, "id", "-u").stdout.strip() == "1000"
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    assert env["MLKKR_STORE"] == "/srv/mlkkr-store" and env["MLKKR_PROFILE"] == "admin"
    found = mounts(user_container)
    assert found["/home/jovyan"]["Name"] == f"{deployment['tag']}-home-admin" and found["/home/jovyan"]["RW"]
    assert found["/srv/mlkkr-store"]["Name"] == f"{deployment['tag']}-store" and not found["/srv/mlkkr-store"]["RW"]
    denied = podman("exec", user_container, "touch", "/srv/mlkkr-store/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    # The hub (its archive service) writes the store; users see what it wrote.
    podman("exec", deployment["hub"], "sh", "-c", "echo catalog > /srv/mlkkr/store/written-by-hub")
    assert podman("exec", user_container, "cat", "/srv/mlkkr-store/written-by-hub").stdout.strip() == "catalog"
    status = wait_mlkkr_status(user_container)
    assert status.returncode == 0, status.stdout + status.stderr
    # The spawned server's profile got the image's JuKKR codes (voronoi/kkrhost/kkrimp@localhost).
    report = json.loads(podman("exec", user_container, "mlkkr", "status", "--json", timeout=120).stdout)
    jukkr = next(c for c in report["checks"] if c["name"] == "jukkr")
    assert jukkr["state"] == "up" and "kkrimp@localhost" in jukkr["detail"], jukkr

    # Data in the home: a file and an AiiDA node in the profile made at the first start.
    podman("exec", user_container, "sh", "-c", "echo 'my notes' > /home/jovyan/notes.txt")
    before = in_user(user_container, NODE)
    first_id = info["Id"]

    # Stop the server (DockerSpawner removes the container), start it again: a new container.
    admin = HubClient(url, "admin", PASSWORD)
    assert admin.login()
    admin.make_token()
    admin.stop_server()
    admin.wait_stopped(timeout=180)
    assert podman("container", "exists", user_container, check=False).returncode != 0
    admin.start_server()
    admin.wait_ready(timeout=420)
    second = json.loads(podman("inspect", user_container).stdout)[0]
    assert second["Id"] != first_id

    # Everything is still there, in the same profile (repaired, not made anew).
    assert podman("exec", user_container, "cat", "/home/jovyan/notes.txt").stdout.strip() == "my notes"
    after = in_user(user_container, CHECK.replace("UUID", repr(before["uuid"])))
    assert after == {"value": {"kept": "across restarts"}, "profile": "admin",
                     "profile_uuid": before["profile_uuid"]}

    # And the browser gets back into JupyterLab in the new container.
    page.goto(f"{url}/user/admin/lab")
    wait_for_lab(page, timeout=300_000)
    shot(page, "container-02-admin-lab-after-restart")
