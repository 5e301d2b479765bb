"""Fixtures of the app tests: one hub for the module, a logged-in browser session per user, a dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: made in the user's profile for the ML and archive tests: a small exchange dataset from the engine
DATASET_GROUP = "demo/exchange-pairs"
MAKE_DATASET = """
import subprocess, sys, tempfile
from pathlib import Path
from aiida import load_profile, orm
load_profile()
from mlkkr.aiida.nodes import DatasetData
with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / "pairs.h5"
    subprocess.run([str(Path(sys.executable).with_name("mlkkr")), "data", "exchange", "--n", "{n}", "--seed", "3",
                    "--kgrid", "16", "--no-progress", "-o", str(out)], check=True)
    node = DatasetData(out).store()
group, _ = orm.Group.collection.get_or_create("{group}")
group.add_nodes([node])
print("DATASET", node.pk, node.n_records)
"""


@pytest.fixture(scope="session")
def root(pytestconfig):
    """The module tests/conftest.py (its PASSWORD, aiida_run ...)."""
    from appdriver import root_conftest

    return root_conftest(pytestconfig)


@pytest.fixture(scope="module")
def apps_hub(hub_factory):
    """A hub whose first admin is ``alice`` (approved at sign-up)."""
    return hub_factory("--admin", "alice")


@pytest.fixture(scope="module")
def browser_session(chromium, root):
    """Make logged-in pages that live for the module: ``session(hub, user)`` signs up, logs in, waits for Lab."""
    from labdriver import login, signup, wait_for_lab

    PASSWORD = root.PASSWORD

    contexts = []

    def open_session(hub, user: str, approve_by=None):
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(120_000)
        message = signup(page, hub.url, user, PASSWORD)
        assert "successful" in message or "sent to the admin" in message, message
        if approve_by is not None:
            approve_by.authorize(user)
        login(page, hub.url, user, PASSWORD)
        wait_for_lab(page, timeout=600_000)
        return page

    yield open_session
    for context in contexts:
        context.close()
