"""Publish and import through the shared store against plain ``verdi archive create`` / ``import``.

The reference is aiida-core's own command line on the same Group, in the same run, on the same
machine. Both sides are timed as a user runs them (a fresh process each time, so start-up costs
count on both sides):

- publish:  ``verdi archive create -G GROUP -- out.aiida``  vs  ``mlkkr archive publish GROUP ...``
  (export with aiida-core + checksum + upload to the archive service of a real hub, which checks the
  archive with aiida's reader and writes it with its RO-Crate into the store);
- import:   ``verdi archive import out.aiida`` into a fresh profile  vs  ``mlkkr archive import NAME``
  into another fresh profile (checksum against the catalog, then aiida's importer), from the store
  folder (``--store``, as a user server reads its read-only mount) and through the service (``--url``,
  download included).

The Group has ``--nodes`` nodes (default 10,000): Int nodes inserted in bulk, plus ArrayData nodes with
real repository files (one per 50 nodes). Prints wall-clock and CPU seconds (the command's process
tree; for publish and the download also the archive service's CPU) and their ratios, mlkkr / verdi
(the goal is ≤ 1.2). On a shared machine the CPU ratio is the steadier one. Never asserts a time.

    python benchmarks/bench_archive.py [--nodes 10000] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from mlkkr.hub.client import HubClient, HubProcess

BIN = Path(sys.executable).parent
PASSWORD = "bench-Green-2026"
GROUP = "bench-set"
STEPS = ("verdi archive create", "mlkkr archive publish", "verdi archive import", "mlkkr archive import --store",
         "mlkkr archive import --url")

FILL = """
import sys, uuid, datetime
import numpy as np
from aiida import load_profile, orm
from aiida.manage import get_manager
from aiida.orm.entities import EntityTypes
load_profile()
n = int(sys.argv[1])
backend = get_manager().get_profile_storage()
user_id = orm.User.collection.get_default().pk
now = datetime.datetime.now(datetime.timezone.utc)
n_arrays = max(1, n // 50)
rows = [{"uuid": str(uuid.uuid4()), "node_type": "data.core.int.Int.", "process_type": None, "label": "",
         "description": "", "ctime": now, "mtime": now, "user_id": user_id, "dbcomputer_id": None,
         "attributes": {"value": i}, "extras": {}, "repository_metadata": {}} for i in range(n - n_arrays)]
group = orm.Group(label=sys.argv[2]).store()
with backend.transaction():
    pks = backend.bulk_insert(EntityTypes.NODE, rows)
    rng = np.random.default_rng(0)
    for i in range(n_arrays):
        array = orm.ArrayData()
        array.set_array("values", rng.normal(size=(64, 16)))
        pks.append(array.store().pk)
    backend.bulk_insert(EntityTypes.GROUP_NODE, [{"dbgroup_id": group.pk, "dbnode_id": pk} for pk in pks])
print(orm.QueryBuilder().append(orm.Group, filters={"label": sys.argv[2]}, tag="g")
      .append(orm.Node, with_group="g").count())
"""


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "MLKKR_", "AIIDA_"))}
    env.update(AIIDA_PATH=str(home), MLKKR_PROFILE=home.name, MLKKR_BROKER="none",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra)
    return env


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds; fails loudly if the command fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-2000:]}\n{err[-2000:]}")
    return elapsed


def timed(cmd: list[str], env: dict[str, str], service: psutil.Process | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of ``cmd`` (its own CPU plus, for publishing, the service's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    service_before = sum(service.cpu_times()[:2]) if service else 0.0
    wall = run(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if service:
        cpu += sum(service.cpu_times()[:2]) - service_before
    return wall, cpu


def new_profile(work: Path, name: str) -> Path:
    home = work / name
    home.mkdir()
    run([str(BIN / "mlkkr"), "setup"], env_for(home))
    return home


def start_hub(work: Path) -> tuple[HubProcess, str]:
    import random
    import socket

    while True:
        port = random.randint(20000, 40000)
        try:
            for offset in range(3):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
            break
        except OSError:
            continue
    config = work / "mlkkr.toml"
    config.write_text("[hub]\nidle_timeout = 0\n\n[aiida]\ndaemon_workers = 0\n")
    hub = HubProcess([str(BIN / "mlkkr"), "hub", "--data-dir", str(work / "hub"), "--port", str(port),
                      "--config", str(config)], f"http://127.0.0.1:{port}", work / "hub.log")
    import requests

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{hub.url}/services/archive/api/openapi.json", timeout=5).ok:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    admin = HubClient(hub.url, "admin", PASSWORD)
    admin.signup()
    if not admin.login():
        raise SystemExit(f"could not log in to the benchmark hub:\n{hub.log_tail()}")
    return hub, admin.make_token("archive benchmark")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes in the Group (default 10000)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions; the median is reported")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlkkr-bench-archive-") as tmp:
        work = Path(tmp)
        alice = new_profile(work, "alice")
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", FILL, str(args.nodes), GROUP], env=env_for(alice),
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        count = int(result.stdout.split()[-1])
        print(f"group {GROUP!r}: {count} nodes made in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        hub, token = start_hub(work)
        url = f"{hub.url}/services/archive/"
        store = work / "hub" / "store"
        service = next(p for p in psutil.process_iter(["cmdline"])
                       if "mlkkr.archive.service" in (p.info["cmdline"] or []) and str(store) in p.info["cmdline"])
        walls: dict[str, list[float]] = {k: [] for k in STEPS}
        cpus: dict[str, list[float]] = {k: [] for k in STEPS}

        def record(step: str, result: tuple[float, float]) -> None:
            walls[step].append(result[0])
            cpus[step].append(result[1])

        try:
            for i in range(1, args.repeat + 1):
                reference = work / f"ref-{i}.aiida"
                record("verdi archive create", timed(
                    [str(BIN / "verdi"), "archive", "create", "-G", GROUP, "--", str(reference)], env_for(alice)))
                record("mlkkr archive publish", timed(
                    [str(BIN / "mlkkr"), "archive", "publish", GROUP, "--name", "bench", "--title", "Benchmark set",
                     "--licence", "CC0-1.0", "--author", "Benchmark", "--url", url, "--token", token],
                    env_for(alice), service))
                record("verdi archive import", timed(
                    [str(BIN / "verdi"), "archive", "import", str(reference)], env_for(new_profile(work, f"v{i}"))))
                record("mlkkr archive import --store", timed(
                    [str(BIN / "mlkkr"), "archive", "import", "bench", "--version", str(i), "--store", str(store)],
                    env_for(new_profile(work, f"m{i}"))))
                record("mlkkr archive import --url", timed(
                    [str(BIN / "mlkkr"), "archive", "import", "bench", "--version", str(i), "--url", url,
                     "--token", token], env_for(new_profile(work, f"u{i}")), service))
                print(f"repeat {i}: " + ", ".join(f"{k} {walls[k][-1]:.1f} s (CPU {cpus[k][-1]:.1f} s)"
                                                  for k in STEPS), file=sys.stderr)
            size = (store / "crates" / "bench-1" / "bench-1.aiida").stat().st_size
        finally:
            hub.stop()

    wall = {k: statistics.median(v) for k, v in walls.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    pairs = {"publish / verdi archive create": ("mlkkr archive publish", "verdi archive create"),
             "import --store / verdi archive import": ("mlkkr archive import --store", "verdi archive import"),
             "import --url / verdi archive import": ("mlkkr archive import --url", "verdi archive import")}
    ratios = {name: {"wall": wall[a] / wall[b], "cpu": cpu[a] / cpu[b]} for name, (a, b) in pairs.items()}
    report = {"nodes": count, "archive_bytes": size, "repeat": args.repeat, "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "wall_seconds": wall, "cpu_seconds": cpu, "ratios": ratios,
              "goal": "ratio <= 1.2"}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"archive benchmark: {count} nodes, archive {size / 1e6:.1f} MB, median of {args.repeat}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"  {'':<30} {'wall':>8} {'CPU':>8}")
    for name in STEPS:
        print(f"  {name:<30} {wall[name]:7.2f}s {cpu[name]:7.2f}s")
    for name, ratio in ratios.items():
        print(f"  ratio {name:<38} wall {ratio['wall']:5.2f}  CPU {ratio['cpu']:5.2f}   (goal <= 1.2)")


if __name__ == "__main__":
    main()
