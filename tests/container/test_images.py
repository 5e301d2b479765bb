"""Both images, built with Podman from the debootstrap base; the singleuser image run on its own."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time

import pytest

from .containerlib import BASE, ROOT, image_layers, podman, require, wait_http, wait_mlkkr_status

pytestmark = pytest.mark.container


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("dockerfile", ["docker/singleuser/Dockerfile", "docker/hub/Dockerfile"])
def test_hadolint_reports_nothing_above_warnings(dockerfile):
    hadolint = require("hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "error", "--format", "tty", "--no-color",
                             str(ROOT / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " error:" not in result.stdout, result.stdout
    print(result.stdout)


@pytest.mark.slow
def test_both_images_are_built_from_the_debootstrap_base(singleuser_image, hub_image):
    base = image_layers(BASE)
    for image in (singleuser_image, hub_image):
        layers = image_layers(image)
        assert layers[: len(base)] == base, f"{image} is not built on {BASE}"
    os_release = podman("run", "--rm", singleuser_image, "cat", "/etc/os-release").stdout
    assert 'VERSION_CODENAME=bookworm' in os_release
    for image in (singleuser_image, hub_image):
        version = podman("run", "--rm", image, "python", "-c", "import sys; print(sys.version_info[:2])").stdout
        assert version.strip() == "(3, 12)"


@pytest.mark.slow
def test_singleuser_image_runs_alone_profile_ready_lab_answers_as_uid_1000(singleuser_image):
    port = free_port()
    token = secrets.token_hex(16)
    name = f"mlkkr-test-su-{secrets.token_hex(3)}"
    started = time.monotonic()
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8888", "-e", f"JUPYTER_TOKEN={token}",
           singleuser_image)
    try:
        seconds = wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=240, container=name)
        print(f"singleuser container ready (JupyterLab answering) {seconds:.1f} s after start")
        # JupyterLab 4 answers on its port, and its page is served.
        lab = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/lab?token={token}"], capture_output=True,
                             text=True)
        assert "JupyterLab" in lab.stdout
        # The AiiDA profile is ready: `mlkkr status` exits 0 (as the image's user, uid 1000) once the
        # daemon, started detached after JupyterLab answers, is up.
        status = wait_mlkkr_status(name)
        assert status.returncode == 0, status.stdout + status.stderr
        print(f"profile and daemon healthy (`mlkkr status` exit 0) {time.monotonic() - started:.1f} s after start")
        assert podman("exec", name, "id", "-u").stdout.strip() == "1000"
        assert podman("exec", name, "whoami").stdout.strip() == "jovyan"
        # Every process of the container (tini, the daemon, JupyterLab) runs as jovyan.
        users = podman("top", name, "user").stdout.split()[1:]
        assert users and set(users) == {"jovyan"}, users
        # mlkkr works as that user: a calcfunction stored in the profile made at start.
        out = podman("exec", name, "python", "-c",
                     "from aiida import load_profile, orm; from aiida.engine import calcfunction\n"
                     "load_profile()\n"
                     "@calcfunction\n"
                     "def add(x, y): return x + y\n"
                     "print('SUM', add(orm.Int(1), orm.Int(2)).value)", timeout=120).stdout
        assert "SUM 3" in out
        # The image's HEALTHCHECK agrees.
        podman("healthcheck", "run", name)
    finally:
        podman("rm", "-f", "-t", "5", name, check=False)
