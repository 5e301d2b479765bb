"""Fixtures of the app tests: one hub for the module, a logged-in browser session per user."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def apps_hub(hub_factory):
    """A hub whose first admin is ``alice`` (approved at sign-up)."""
    return hub_factory("--admin", "alice")


@pytest.fixture(scope="module")
def browser_session(chromium):
    """Make logged-in pages that live for the module: ``session(hub, user)`` signs up, logs in, waits for Lab."""
    from labdriver import login, signup, wait_for_lab
    from support import PASSWORD

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
