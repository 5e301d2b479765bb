"""Fixtures of the container tests: images built once per session, Podman's Docker-compatible socket."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from .containerlib import BUILD_TIMES, PodmanService, build, image_size


@pytest.fixture(scope="session")
def singleuser_image() -> str:
    return build("singleuser")


@pytest.fixture(scope="session")
def hub_image() -> str:
    return build("hub")


@pytest.fixture(scope="session")
def podman_socket():
    """Podman's Docker-compatible API (what the docker CLI and DockerSpawner talk to)."""
    folder = Path(tempfile.mkdtemp(prefix="mlkkr-podman-"))
    service = PodmanService(folder / "podman.sock", folder / "service.log")
    yield service.socket
    service.stop()


def pytest_terminal_summary(terminalreporter):
    if not BUILD_TIMES:
        return
    terminalreporter.section("mlkkr images")
    from .containerlib import HUB, SINGLEUSER

    for what, seconds in BUILD_TIMES.items():
        image = SINGLEUSER if what == "singleuser" else HUB
        try:
            size = f"{image_size(image) / 1e9:.2f} GB"
        except Exception:  # noqa: BLE001 - a summary line must not fail the run
            size = "?"
        terminalreporter.write_line(f"{image}: built or refreshed in {seconds:.0f} s, {size}")
