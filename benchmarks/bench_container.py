"""Singleuser image sizes (CPU and GPU variant) and container start-to-ready time, against the AiiDAlab
Quantum ESPRESSO image.

Reference (as its maintainers report): the AiiDAlab QE image is 3.9–6.4 GB and takes 6–60 s to start.
Goals here: <= 3 GB with CPU torch, ready in <= 10 s. Printed as ratios (and the GPU/CPU size ratio of
the two variants); nothing is asserted. Results: benchmarks/results/bench_container.json, which says
for each variant whether its size was measured in this run (and whether the image was built in it).

"Ready" is measured twice: when the container's Jupyter server answers ``/api/status`` on its published
port (the start command has made — first start, empty home — or checked the user's AiiDA profile, and
JupyterLab is up: the user can work), and when ``mlkkr status`` exits 0 (the AiiDA daemon and its ZeroMQ
broker, started detached once JupyterLab answers, are up too). Measured for a first start on a fresh home volume
and for restarts on the same volume (what a user sees after the idle culler stopped their server).

    python benchmarks/bench_container.py [--runs 3] [--variant cpu|gpu] [--build-gpu]

The image that is timed (--variant, default cpu) and the hub image are built first with docker/build.sh
when missing (from the debootstrap base). The GPU variant (PyPI's CUDA torch: a slow build, ~11 min
here) is built only with --build-gpu; without it its size is measured only if the image exists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REF_SIZE_GB = (3.9, 6.4)
REF_START_S = (6.0, 60.0)
GOAL_SIZE_GB, GOAL_START_S = 3.0, 10.0


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.setdefault("CONTAINERS_CONF", str(ROOT / ".tools" / "containers.conf"))
    return out


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env(), check=check)


def exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def ensure(image: str, what: str, variant: str) -> float | None:
    """Build ``image`` with docker/build.sh when it is missing; the seconds the build took, or None."""
    if exists(image):
        return None
    print(f"building {image} (docker/build.sh --variant {variant} {what}) ...", flush=True)
    t0 = time.monotonic()
    subprocess.run([str(ROOT / "docker" / "build.sh"), "--variant", variant, what], check=True,
                   env={**env(), "MLKKR_SINGLEUSER_IMAGE": image} if what == "singleuser" else env(),
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def inspect(image: str) -> dict:
    return json.loads(podman("image", "inspect", image).stdout)[0]


def size_gb(image: str) -> float:
    return inspect(image)["Size"] / 1e9


def variant_sizes(variants: dict[str, str], built: dict[str, float | None]) -> dict[str, dict]:
    """Per variant: whether its size was measured in this run, the size, which image it was."""
    out = {}
    for variant, image in variants.items():
        if not exists(image):
            hint = " (python benchmarks/bench_container.py --build-gpu builds it)" if variant == "gpu" else ""
            out[variant] = {"image": image, "measured": False, "reason": "not built here" + hint}
            continue
        info = inspect(image)
        out[variant] = {"image": image, "measured": True, "size_bytes": info["Size"], "size_gb": info["Size"] / 1e9,
                        "image_id": info["Id"][:12], "created": info.get("Created"),
                        "built_in_this_run": built.get(variant) is not None, "build_seconds": built.get(variant)}
    return out


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
    parser.add_argument("--variant", default=os.environ.get("MLKKR_TORCH_VARIANT", "cpu"), choices=["cpu", "gpu"],
                        help="the singleuser variant whose start-to-ready time is measured (built if missing)")
    parser.add_argument("--build-gpu", action="store_true",
                        help="build the GPU variant when it is missing (slow), so that both sizes are measured")
    args = parser.parse_args()
    if subprocess.run(["which", "podman"], capture_output=True).returncode != 0:
        print("podman is missing: run scripts/install-container-tools.sh")
        return 1

    variants = {v: f"localhost/mlkkr-singleuser:{v}" for v in ("cpu", "gpu")}
    if os.environ.get("MLKKR_SINGLEUSER_IMAGE"):
        variants[args.variant] = os.environ["MLKKR_SINGLEUSER_IMAGE"]
    singleuser = variants[args.variant]
    hub = os.environ.get("MLKKR_HUB_IMAGE", "localhost/mlkkr-hub:latest")
    built = {args.variant: ensure(singleuser, "singleuser", args.variant)}
    if args.build_gpu and args.variant != "gpu":
        built["gpu"] = ensure(variants["gpu"], "singleuser", "gpu")
    ensure(hub, "hub", args.variant)

    print("== image sizes (podman image inspect; uncompressed, as `docker images` shows them)")
    sizes = variant_sizes(variants, built)
    for variant, info in sizes.items():
        torch = "torch CPU, CUDA stubs" if variant == "cpu" else "PyPI torch = CUDA build"
        if info["measured"]:
            note = f" (built in this run, {info['build_seconds']:.0f} s)" if info["built_in_this_run"] else ""
            print(ratio_line(f"singleuser:{variant} ({torch})", info["size_gb"], "GB", REF_SIZE_GB, GOAL_SIZE_GB)
                  + note)
        else:
            print(f"singleuser:{variant:<30} {info['reason']}")
    ratio = None
    if sizes["cpu"]["measured"] and sizes["gpu"]["measured"]:
        ratio = sizes["gpu"]["size_gb"] / sizes["cpu"]["size_gb"]
        print(f"{'gpu / cpu size':<40} x{ratio:.2f}  ({sizes['gpu']['size_gb'] - sizes['cpu']['size_gb']:.2f} GB "
              "more: nvidia-* libraries, triton, torch's symbol tables and headers)")
    else:
        print(f"{'gpu / cpu size':<40} not measured in this run (both images are needed; --build-gpu)")
    print(f"{'hub':<34} {size_gb(hub):7.2f} GB")
    base = "localhost/mlkkr-base:bookworm-py3.12"
    if exists(base):
        print(f"{'base (debootstrap + CPython 3.12)':<34} {size_gb(base):7.2f} GB")
    result = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.node(),
              "cpus": os.cpu_count(), "reference": {"aiidalab_qe_size_gb": REF_SIZE_GB,
                                                    "aiidalab_qe_start_s": REF_START_S},
              "goal": {"size_gb": GOAL_SIZE_GB, "start_s": GOAL_START_S},
              "singleuser": sizes, "gpu_over_cpu_size": ratio,
              "hub_size_gb": size_gb(hub), "base_size_gb": size_gb(base) if exists(base) else None}

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
        result["start_to_ready"] = {
            "image": singleuser, "variant": args.variant, "load_average_1min": os.getloadavg()[0],
            "first_start": {"lab_s": lab, "daemon_s": full},
            "restarts": [{"lab_s": a, "daemon_s": b} for a, b in again],
            "restart_median": {"lab_s": statistics.median(labs), "daemon_s": statistics.median(fulls)}}
    finally:
        podman("volume", "rm", "-f", volume, check=False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_container.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'bench_container.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
