"""Helpers of the container tests: Podman (with the project's containers.conf), the image builds, the
Docker-compatible socket, the compose deployment.

Every image is built once per test session by docker/build.sh from the debootstrap base of
docker/make-base.sh; Podman's layer cache keeps rebuilds to the layers that changed (the pip layers
depend only on the dependency list cut out of pyproject.toml). Missing tools fail the tests with the
command that installs them; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
#: torch variant the tests build: `cpu` (default) is PyPI's torch without its CUDA wheels, with stub CUDA
#: libraries (docker/singleuser/torch-cpu.py): 2.74 GB instead of 6.60 GB and quicker to build than `gpu`,
#: PyPI's torch as it is (the CUDA build with its nvidia-* wheels).
VARIANT = os.environ.get("MLKKR_TORCH_VARIANT", "cpu")
SINGLEUSER = os.environ.get("MLKKR_SINGLEUSER_IMAGE", f"localhost/mlkkr-singleuser:{VARIANT}")
HUB = os.environ.get("MLKKR_HUB_IMAGE", "localhost/mlkkr-hub:latest")
BASE = "localhost/mlkkr-base:bookworm-py3.12"
BUILD_TIMES: dict[str, float] = {}


def container_env() -> dict[str, str]:
    """The environment for podman: CONTAINERS_CONF of scripts/install-container-tools.sh."""
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF"):
        conf = ROOT / ".tools" / "containers.conf"
        if not conf.exists():
            pytest.fail(f"{conf} is missing: run scripts/install-container-tools.sh")
        env["CONTAINERS_CONF"] = str(conf)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", os.defpath)])
    return env


def require(tool: str) -> str:
    path = shutil.which(tool, path=container_env()["PATH"])
    if not path:
        pytest.fail(f"{tool} is missing: run scripts/install-container-tools.sh "
                    "(and pip install -e '.[deploy]' for podman-compose, hadolint)")
    return path


def sh(cmd: list[str], check: bool = True, timeout: float = 300, env: dict | None = None,
       **kw) -> subprocess.CompletedProcess:
    full_env = {**container_env(), **(env or {})}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return sh([require("podman"), *args], check=check, timeout=timeout)


def build(what: str) -> str:
    """Build (or refresh from the layer cache) one image with docker/build.sh; returns its name."""
    require("podman")
    require("debootstrap")
    t0 = time.monotonic()
    env = container_env()
    env.update(MLKKR_SINGLEUSER_IMAGE=SINGLEUSER, MLKKR_HUB_IMAGE=HUB)
    log = ROOT / ".tools" / f"build-{what}.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "w") as handle:
        result = subprocess.run([str(ROOT / "docker" / "build.sh"), "--variant", VARIANT, what], env=env,
                                stdout=subprocess.PIPE, stderr=handle, text=True, timeout=3600)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        pytest.fail(f"docker/build.sh {what} failed ({result.returncode}):\n{tail}")
    BUILD_TIMES[what] = time.monotonic() - t0
    return SINGLEUSER if what == "singleuser" else HUB


def image_size(image: str) -> int:
    return int(json.loads(podman("image", "inspect", image).stdout)[0]["Size"])


def image_layers(image: str) -> list[str]:
    return json.loads(podman("image", "inspect", image).stdout)[0]["RootFS"]["Layers"]


def wait_http(url: str, timeout: float, ok=(200,), container: str | None = None) -> float:
    """Seconds until ``url`` answers with one of ``ok``; fails with the container's log otherwise."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if requests.get(url, timeout=3).status_code in ok:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        if container:
            state = podman("inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()
            if state in ("exited", "stopped"):
                break
        time.sleep(0.25)
    logs = podman("logs", container, check=False) if container else None
    raise AssertionError(f"{url} did not answer in {timeout} s" +
                         (f"; container log:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}" if logs else ""))


class PodmanService:
    """``podman system service``: Podman's Docker-compatible API on a unix socket of our own."""

    def __init__(self, socket_path: Path, log_path: Path):
        self.socket = socket_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([require("podman"), "system", "service", "--time=0", f"unix://{socket_path}"],
                                     env=container_env(), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if socket_path.exists():
                probe = subprocess.run(["curl", "-s", "--unix-socket", str(socket_path), "http://d/_ping"],
                                       capture_output=True, text=True)
                if probe.stdout.strip() == "OK":
                    return
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"podman system service did not answer on {socket_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def wait_mlkkr_status(container: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`mlkkr status` in the container until it exits 0 (the daemon starts detached after the server)."""
    deadline = time.monotonic() + timeout
    while True:
        status = podman("exec", container, "mlkkr", "status", check=False, timeout=120)
        if status.returncode == 0 or time.monotonic() > deadline:
            return status
        time.sleep(2)
