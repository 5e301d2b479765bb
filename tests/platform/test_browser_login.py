"""The whole way in, with a real hub, proxy and Chromium: sign up, approval, login, a notebook cell
that loads the user's AiiDA profile and stores a calcfunction node."""

from __future__ import annotations

import json
import re

import pytest

from labdriver import login, new_notebook, run_cell, shot, signup, wait_for_lab
from support import PASSWORD, aiida_run

pytestmark = pytest.mark.browser

CELL_PROFILE = """from aiida import load_profile, orm
import mlkkr
profile = load_profile()
computer = orm.load_computer('localhost')
print('PROFILE', profile.name, profile.storage_backend,
      computer.label, computer.is_configured, mlkkr.__version__)"""

CELL_CALC = """from aiida.engine import calcfunction

@calcfunction
def add(x, y):
    return x + y

node = add(orm.Int(20), orm.Int(22))
print('RESULT', node.value, node.is_stored, node.uuid)"""


def test_signup_approval_login_and_a_stored_calcfunction(hub_factory, page):
    hub = hub_factory("--admin", "admin")

    # The configured admin signs up, is approved at once and lands in JupyterLab 4.
    assert "successful" in signup(page, hub.url, "admin", PASSWORD)
    login(page, hub.url, "admin", PASSWORD)
    wait_for_lab(page)
    assert re.search(r"/user/admin/lab", page.url)
    shot(page, "01-admin-jupyterlab")

    # A second user signs up and is refused until an admin approves them.
    page.context.clear_cookies()
    message = signup(page, hub.url, "bob", PASSWORD)
    assert "sent to the admin" in message, message
    login(page, hub.url, "bob", PASSWORD)
    page.wait_for_load_state()
    assert "/hub/login" in page.url
    refusal = page.inner_text("body")
    assert "User bob has not been authorized by an administrator yet" in refusal, refusal
    shot(page, "02-bob-waits-for-approval")

    # The admin approves bob at /hub/authorize.
    page.context.clear_cookies()
    login(page, hub.url, "admin", PASSWORD)
    wait_for_lab(page)
    page.goto(f"{hub.url}/hub/authorize")
    row = page.locator("tr", has_text="bob")
    shot(page, "03-admin-authorizes")
    row.get_by_text("Authorize").click()
    page.wait_for_load_state()
    assert page.locator("tr", has_text="bob").get_by_text("Unauthorize").count() == 1

    # bob logs in, JupyterLab loads, and a notebook cell uses his ready AiiDA profile.
    page.context.clear_cookies()
    login(page, hub.url, "bob", PASSWORD)
    wait_for_lab(page)
    assert "/user/bob/lab" in page.url
    new_notebook(page)
    out = run_cell(page, CELL_PROFILE, "PROFILE")
    assert "PROFILE bob core.sqlite_dos localhost True" in out, out
    out = run_cell(page, CELL_CALC, "RESULT")
    match = re.search(r"RESULT 42 True ([0-9a-f-]{36})", out)
    assert match, out
    shot(page, "04-bob-notebook-aiida")

    # The node is really in bob's profile on disk, made by the calcfunction with its inputs.
    stored = json.loads(aiida_run(hub.home("bob"), f"""
import json
from aiida import load_profile, orm
load_profile()
node = orm.load_node('{match.group(1)}')
calc = node.creator
inputs = sorted(n.value for n in calc.base.links.get_incoming().all_nodes())
print(json.dumps({{"value": node.value, "process": calc.process_label, "inputs": inputs,
                  "profile": load_profile().name}}))
"""))
    assert stored == {"value": 42, "process": "add", "inputs": [20, 22], "profile": "bob"}
