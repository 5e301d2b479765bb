"""Restarting a user's server keeps the profile and its data and never makes a second profile."""

from __future__ import annotations

import json

from support import aiida_run

PROFILES = """
import json
from aiida.manage.configuration import get_config
config = get_config()
print(json.dumps({"profiles": config.profile_names, "default": config.default_profile_name}))
"""


def test_restart_keeps_profile_and_nodes(hub_factory):
    hub = hub_factory()
    admin = hub.user("admin")
    dora = hub.user("dora", admin=admin)
    dora.start_server()
    dora.wait_ready()
    home = hub.home("dora")
    uuid = aiida_run(home, "from aiida import load_profile, orm; load_profile(); "
                           "print(orm.Dict({'kkr': 'Fe@Bi2Te3'}).store().uuid)").strip()
    before = json.loads(aiida_run(home, PROFILES))
    assert before == {"profiles": ["dora"], "default": "dora"}

    assert dora.stop_server() in (202, 204)
    dora.wait_stopped()
    assert dora.start_server() in (201, 202)
    dora.wait_ready()

    after = json.loads(aiida_run(home, PROFILES))
    assert after == before
    node = aiida_run(home, f"from aiida import load_profile, orm; load_profile(); "
                           f"print(orm.load_node('{uuid}').get_dict()['kkr'])").strip()
    assert node == "Fe@Bi2Te3"
    log = hub.log_tail(400)
    assert log.count("created profile 'dora'") == 1, "the profile must be made exactly once"
    assert "profile 'dora' ready" in log
