"""Shared fixtures: real hubs started with ``mlkkr hub``, real Chromium through Playwright.

Plain helpers (``RunningHub``, ``aiida_run``, ``PASSWORD`` ...) live in ``tests/support.py``: import them
from there, never from ``conftest`` (several folders have a conftest.py; the name is ambiguous).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import (  # noqa: F401 - PASSWORD, aiida_run, kill_tree_under re-exported for older imports
    CHROMIUM,
    CHROMIUM_FLAGS,
    PASSWORD,
    RunningHub,
    aiida_run,
    free_port_block,
    kill_tree_under,
)

# aiida-core's own fixtures: a throw-away SQLite profile for the session (``aiida_profile``,
# ``aiida_profile_clean``, ``aiida_localhost``, ``aiida_code_installed``, ``submit_and_await`` ...).
pytest_plugins = ["aiida.tools.pytest_fixtures"]


@pytest.fixture(scope="module")
def hub_factory(tmp_path_factory):
    """Start real hubs (``mlkkr hub``) on free loopback ports; all are stopped after the module."""
    hubs: list[RunningHub] = []

    def start(*args: str) -> RunningHub:
        data_dir = tmp_path_factory.mktemp("hub") / "data"
        hub = RunningHub(data_dir, free_port_block(), list(args))
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium driven by Playwright (never a downloaded browser).

    Module-scoped on purpose: while Playwright's sync API is open its asyncio loop counts as running
    in the main thread, and plumpy then refuses to run any AiiDA process in-process ("event loop is
    running but no greenback portal"). Closing it after each browser module keeps the tests that run
    calcfunctions (tests/archive, tests/aiida) independent of the order pytest runs the folders in.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


