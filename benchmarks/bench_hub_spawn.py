"""10 users log in and start their servers at the same moment, through the hub's REST API:
how many get a server, and the median and worst time to ready; mlkkr against a plain JupyterHub
(same spawner, no mlkkr) as the reference. Goal: 10 of 10, none lost. Nothing is asserted.

    .venv/bin/python benchmarks/bench_hub_spawn.py [--users 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _hubs import BenchHub

from mlkkr.hub.client import HubError


def login_and_spawn(client) -> float | str:
    start = time.monotonic()
    try:
        if not client.login():
            return "login refused"
        client.make_token()
        if client.start_server() not in (201, 202):
            return "spawn refused"
        client.wait_ready(timeout=300)
        return time.monotonic() - start
    except HubError as exc:
        return f"failed: {exc}"


def run(kind: str, workdir: Path, users: int) -> tuple[list[float], list[str]]:
    hub = BenchHub(kind, workdir)
    try:
        clients = [hub.add_user(f"u{i:02d}") for i in range(users)]
        with ThreadPoolExecutor(users) as pool:
            outcomes = list(pool.map(login_and_spawn, clients))
        times = [o for o in outcomes if isinstance(o, float)]
        return times, [o for o in outcomes if not isinstance(o, float)]
    finally:
        hub.stop(timeout=180)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("plain", "mlkkr"):
            times, failures = run(kind, Path(tmp) / kind, args.users)
            rows[kind] = times
            print(f"{kind:5s}: {len(times)} of {args.users} ready; failures: {failures or 'none'}", flush=True)
    print(f"\n{args.users} users at once        plain (reference)   mlkkr    ratio mlkkr/plain")
    print(f"{'servers ready':26s} {len(rows['plain']):10d} {len(rows['mlkkr']):10d}")
    for label, fn in (("median time to ready [s]", statistics.median), ("worst time to ready [s]", max)):
        if rows["plain"] and rows["mlkkr"]:
            p, m = fn(rows["plain"]), fn(rows["mlkkr"])
            print(f"{label:26s} {p:10.2f} {m:10.2f} {m / p:10.2f}")


if __name__ == "__main__":
    main()
