"""Fixtures of the notebook tests: a throw-away AiiDA profile per notebook (``mlkkr setup``: SQLite +
ZeroMQ broker, in its own AIIDA_PATH; with a daemon where the notebook submits), the reference
archives, and a real hub whose archive service notebook 5 publishes to."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
import requests
from nbrun import IN_CI, KKR_REFERENCE, Profile


def kill_strays(marker: Path) -> None:
    """Kill processes left behind by a test's folder (daemon workers, kernels) — only those."""
    text = str(marker)
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
            if text in cmd or text in env.get("AIIDA_PATH", ""):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


@pytest.fixture
def profile(tmp_path):
    """A fresh profile for one notebook (no daemon)."""
    prof = Profile.create(tmp_path / "aiida")
    yield prof
    prof.stop_daemon()
    kill_strays(tmp_path / "aiida")


@pytest.fixture
def daemon_profile(profile):
    """A fresh profile with its daemon running (for notebooks that submit work chains)."""
    profile.start_daemon()
    return profile


@pytest.fixture(scope="session")
def kkr_reference() -> Path:
    """The folder of the reference JuKKR archives ($MLKKR_KKR_REFERENCE or ../shared/kkr-reference)."""
    if not (KKR_REFERENCE / "SHA256SUMS").is_file():
        message = (f"the reference archives are missing: no SHA256SUMS in {KKR_REFERENCE} "
                   "(set MLKKR_KKR_REFERENCE to the folder of jij.aiida and kkrimp_full_wc.aiida)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return KKR_REFERENCE


def server_env(home: Path, username: str) -> dict[str, str]:
    """The environment of the user's running server process — what a kernel in that server sees."""
    for proc in psutil.process_iter(["environ", "cmdline"]):
        try:
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get("JUPYTERHUB_USER") == username and env.get("AIIDA_PATH") == str(home) and \
                "JUPYTERHUB_API_TOKEN" in env and "jupyterhub-singleuser" in " ".join(proc.info["cmdline"] or []):
            return dict(env)
    raise AssertionError(f"no running server process of {username}")


@pytest.fixture(scope="module")
def hub_user_server(hub_factory, tmp_path_factory):
    """A real hub (``mlkkr hub``, with its archive service), and alice's running server: returns
    (hub, the environment of alice's server process)."""
    config = tmp_path_factory.mktemp("config") / "mlkkr.toml"
    config.write_text("[hub]\nidle_timeout = 0\n\n[aiida]\ndaemon_workers = 0\n")
    hub = hub_factory("--config", str(config))
    deadline = time.monotonic() + 90
    while True:
        try:
            if requests.get(f"{hub.url}/services/archive/api/openapi.json", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the archive service did not answer in 90 s:\n{hub.log_tail()}")
        time.sleep(0.5)
    admin = hub.user("admin")
    alice = hub.user("alice", admin=admin)
    alice.make_token()
    assert alice.start_server() in (201, 202)
    alice.wait_ready()
    return hub, server_env(hub.home("alice"), "alice")
