"""Singleuser image size and container start-to-ready time, against the AiiDAlab Quantum ESPRESSO image.

Reference (as its maintainers report): the AiiDAlab QE image is 3.9–6.4 GB and takes 6–60 s to start.
Goals here: <= 3 GB with CPU torch, ready in <= 10 s. Printed as ratios; nothing is asserted.

"Ready" is measured twice: when the container's Jupyter server answers ``/api/status`` on its published
port (the start command has made — first start, empty home — or checked the user's AiiDA profile, and
JupyterLab is up: the user can work), and when ``mlkkr status`` exits 0 (the AiiDA daemon and its ZeroMQ
broker, started detached once JupyterLab answers, are up too). Measured for a first start on a fresh home volume
and for restarts on the same volume (what a user sees after the idle culler stopped their server).

    python benchmarks/bench_container.py [--runs 3] [--variant gpu]

Images missing locally are built first with docker/build.sh (from the debootstrap base).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
REF_SIZE_GB = (3.9, 6.4)
REF_START_S = (6.0, 60.0)
GOAL_SIZE_GB, GOAL_START_S = 3.0, 10.0


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.setdefault("CONTAINERS_CONF", str(ROOT / ".tools" / "containers.conf"))
    return out


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env(), check=check)


def ensure(image: str, what: str, variant: str) -> None:
    if podman("image", "exists", image, check=False).returncode == 0:
        return
    print(f"building {image} (docker/build.sh --variant {variant} {what}) ...", flush=True)
    subprocess.run([str(ROOT / "docker" / "build.sh"), "--variant", variant, what], env=env(), check=True,
                   stdout=subprocess.DEVNULL)


def size_gb(image: str) -> float:
    return json.loads(podman("image", "inspect", image).stdout)[0]["Size"] / 1e9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_to_ready(image: str, volume: str, timeout: float = 300) -> tuple[float, float]:
    """(seconds to JupyterLab answering, seconds to `mlkkr status` exit 0: profile, broker, daemon)."""
    port, token, name = free_port(), secrets.token_hex(16), f"mlkkr-bench-{secrets.token_hex(3)}"
    t0 = time.monotonic()
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8888", "-e", f"JUPYTER_TOKEN={token}",
           "-v", f"{volume}:/home/jovyan", image)
    try:
        lab = None
        while time.monotonic() - t0 < timeout:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2).status_code == 200:
                    lab = time.monotonic() - t0
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        while lab is not None and time.monotonic() - t0 < timeout:
            if podman("exec", name, "mlkkr", "status", check=False).returncode == 0:
                return lab, time.monotonic() - t0
            time.sleep(2)  # `mlkkr status` itself costs CPU: poll gently
        raise RuntimeError(f"{image} not ready in {timeout} s:\n{podman('logs', name, check=False).stderr[-2000:]}")
    finally:
        podman("rm", "-f", "-t", "3", name, check=False)


def ratio_line(label: str, value: float, unit: str, ref: tuple[float, float], goal: float) -> str:
    return (f"{label:<40} {value:7.2f} {unit:<2}  vs AiiDAlab QE {ref[0]:g}–{ref[1]:g} {unit}: "
            f"x{value / ref[0]:.2f}–x{value / ref[1]:.2f}   (goal <= {goal:g} {unit}: "
            f"{'met' if value <= goal else 'not met'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="restarts to time after the first start")
    parser.add_argument("--variant", default=os.environ.get("MLKKR_TORCH_VARIANT", "gpu"), choices=["cpu", "gpu"])
    args = parser.parse_args()
    if subprocess.run(["which", "podman"], capture_output=True).returncode != 0:
        print("podman is missing: run scripts/install-container-tools.sh")
        return 1

    singleuser = os.environ.get("MLKKR_SINGLEUSER_IMAGE", f"localhost/mlkkr-singleuser:{args.variant}")
    hub = os.environ.get("MLKKR_HUB_IMAGE", "localhost/mlkkr-hub:latest")
    ensure(singleuser, "singleuser", args.variant)
    ensure(hub, "hub", args.variant)

    print("== image sizes (podman image inspect; uncompressed, as `docker images` shows them)")
    for variant in ("cpu", "gpu"):
        image = f"localhost/mlkkr-singleuser:{variant}"
        if podman("image", "exists", image, check=False).returncode == 0:
            torch = "CPU torch" if variant == "cpu" else "PyPI torch = CUDA build"
            print(ratio_line(f"singleuser:{variant} ({torch})", size_gb(image), "GB", REF_SIZE_GB, GOAL_SIZE_GB))
        else:
            print(f"singleuser:{variant:<26} not built here")
    print(f"{'hub':<34} {size_gb(hub):7.2f} GB")
    base = "localhost/mlkkr-base:bookworm-py3.12"
    if podman("image", "exists", base, check=False).returncode == 0:
        print(f"{'base (debootstrap + CPython 3.12)':<34} {size_gb(base):7.2f} GB")

    print(f"== start-to-ready of {singleuser} (container start -> profile ready, JupyterLab answering)")
    volume = f"mlkkr-bench-home-{secrets.token_hex(3)}"
    try:
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        lab, full = start_to_ready(singleuser, volume)
        print(ratio_line("first start: JupyterLab answers", lab, "s", REF_START_S, GOAL_START_S))
        print(ratio_line("first start: daemon up too", full, "s", REF_START_S, GOAL_START_S))
        again = [start_to_ready(singleuser, volume) for _ in range(args.runs)]
        labs, fulls = [a for a, _ in again], [b for _, b in again]
        print(ratio_line(f"restart: JupyterLab (median of {args.runs})", statistics.median(labs), "s",
                         REF_START_S, GOAL_START_S))
        print(ratio_line(f"restart: daemon up (median of {args.runs})", statistics.median(fulls), "s",
                         REF_START_S, GOAL_START_S))
        print(f"{'restarts (lab / daemon)':<34} {', '.join(f'{a:.1f}/{b:.1f}' for a, b in again)} s")
    finally:
        podman("volume", "rm", "-f", volume, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
