"""A hub run as root in the local mode ran every user's server as root (``--allow-root``): any approved
user was root on the machine (issue 15). Now only the configured admin may start a server there, unless
``hub.root_spawn = "all"`` says otherwise; everybody else is refused with the reason."""

from __future__ import annotations

import os
import re

import pytest

from mlkkr.errors import InputError
from mlkkr.settings import validate
from support import RunningHub, free_port_block


@pytest.fixture(scope="module")
def default_hub(tmp_path_factory):
    """``mlkkr hub`` with the default ``hub.root_spawn`` (the tests' usual hubs opt in to "all")."""
    config = tmp_path_factory.mktemp("config") / "mlkkr.toml"
    config.write_text("[hub]\nidle_timeout = 0\n\n[aiida]\ndaemon_workers = 0\n")
    hub = RunningHub(tmp_path_factory.mktemp("hub") / "data", free_port_block(), ["--config", str(config)],
                     root_spawn=None)
    yield hub
    hub.stop()


def test_root_spawn_setting_defaults_to_admin_only_and_is_validated():
    assert validate({})["hub"]["root_spawn"] == "admin-only"
    assert validate({"hub": {"root_spawn": "all"}})["hub"]["root_spawn"] == "all"
    with pytest.raises(InputError, match=r"hub\.root_spawn.*allowed: admin-only, all"):
        validate({"hub": {"root_spawn": "everyone"}})


def test_a_root_hub_starts_servers_for_the_admin_only(default_hub):
    hub = default_hub
    admin = hub.user("admin")
    bob = hub.user("bob", admin=admin)
    if os.geteuid() != 0:  # not root: nobody gets root through a server, so everybody may start one
        assert bob.start_server() in (201, 202)
        bob.wait_ready(timeout=600)
        return
    response = bob.api("POST", "/users/bob/server")
    assert response.status_code == 403, (response.status_code, response.text[:500])
    message = response.json()["message"]
    assert "runs as root" in message and "admin (admin)" in message, message
    assert "non-root user" in message and "single-host" in message, message
    assert not bob.server_state(), "bob's server must not be running or pending"
    assert not hub.home("bob").exists(), "nothing was made for bob"
    # The same reason on the page a browser gets.
    page = bob.session.get(f"{hub.url}/hub/spawn", timeout=60)
    assert page.status_code == 403, page.status_code
    assert "runs as root" in " ".join(re.sub(r"<[^>]+>", " ", page.text).split())
    # The configured admin still may.
    assert admin.start_server() in (201, 202)
    admin.wait_ready(timeout=600)
    assert admin.stop_server() in (202, 204)
    admin.wait_stopped()
