"""AiiDA overhead: exchange pairs per second through the dataset work chain against the engine in one process.

    .venv/bin/python benchmarks/bench_aiida.py [--batch 500] [--batches 4] [--kgrid 24] [--repeat 1]

Reference run (same process, same pairs): the engine called directly, as ``mlkkr data exchange --n N
--seed 7`` would — one ``Engine`` computing its host Green function (no cache), ``build_exchange`` of
all N pairs. AiiDA path: a throw-away service profile (PostgreSQL + RabbitMQ, one daemon worker,
computer ``localhost`` with the direct scheduler), ``DatasetWorkChain`` of ``batches × batch`` pairs
submitted to the daemon; timed from ``submit`` until the work chain has finished (jobs: ``mlkkr data
exchange --start …`` on the computer, one per batch, run in parallel; parse; Group). It runs twice
with a fresh host-table cache folder (``$MLKKR_CACHE_DIR``, inherited by the daemon and its jobs):
**cold** (empty: one job computes the tables, the others wait for it and load them) and **warm**
(every job loads them). The tensors of every path are compared bit for bit with the reference.
Prints pairs/s and the ratio ``t_workchain / t_direct`` (goal ≤ 1.5 at batch size 500) for both, the
engine in one process with a warm cache for comparison, and where each job's time went; nothing is
asserted. Results: benchmarks/results/bench_aiida-batch<B>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def direct(n: int, kgrid: int | None, cache: bool = False) -> tuple[float, np.ndarray]:
    """Seconds and tensors (n, 3, 3) of the dataset's pairs computed by the engine in this process."""
    from mlkkr.data.builders import ExchangeSampler, build_exchange
    from mlkkr.greens import Engine, make_host

    t0 = time.perf_counter()
    engine = Engine(make_host("ti"), kgrid, cache=cache)
    records, _ = build_exchange(engine, n, SEED, ExchangeSampler())
    return time.perf_counter() - t0, np.array([r.tensor for r in records])


SEED = 7

#: job-side clock: the job script writes the time it starts and ends (retrieved with the outputs)
TIMING = {"prepend_text": "date +%s.%N > _t_start", "append_text": "date +%s.%N > _t_end",
          "additional_retrieve_list": ["_t_start", "_t_end"]}


def workchain(sp, n: int, batch: int, kgrid: int | None) -> tuple[float, np.ndarray, dict]:
    """Seconds from submit to finished, tensors in plan order, and where the time went."""
    from aiida.engine import submit

    from mlkkr.aiida.launch import dataset_builder
    from mlkkr.aiida.testing import wait_for

    params = {} if kgrid is None else {"kgrid": kgrid}
    builder = dataset_builder("exchange", n, batch, sp.computer, seed=SEED, parameters=params, options=TIMING)
    t0 = time.perf_counter()
    node = submit(builder)
    wait_for(node, 3600, poll=0.2)
    elapsed = time.perf_counter() - t0
    if not node.is_finished_ok:
        raise RuntimeError(f"work chain {node.pk} {node.process_state} {node.exit_status} {node.exit_message}\n"
                           f"{sp.daemon_log()[-3000:]}")
    batches = node.outputs.batches
    tensors = np.concatenate([np.array([r.tensor for r in batches[k].records()]) for k in sorted(batches)])
    jobs = [j for r in node.called if r.process_label == "EngineBaseWorkChain" for j in r.called]
    start = node.ctime.timestamp()
    phases = []
    for j in sorted(jobs, key=lambda j: j.pk):
        retrieved = j.outputs.retrieved
        t_start = float(retrieved.base.repository.get_object_content("_t_start"))
        t_end = float(retrieved.base.repository.get_object_content("_t_end"))
        phases.append({
            "created_after_s": j.ctime.timestamp() - start,
            "to_job_start_s": t_start - j.ctime.timestamp(),
            "job_s": t_end - t_start,
            "engine_s": j.outputs.summary["seconds"],
            "tables_s": j.outputs.summary["host_tables"]["seconds"],
            "cache": j.outputs.summary["host_tables"]["cache"],
            "to_retrieved_s": retrieved.ctime.timestamp() - t_end,
            "parse_s": j.outputs.dataset.ctime.timestamp() - retrieved.ctime.timestamp(),
        })
    last = max(j.outputs.dataset.ctime.timestamp() for j in jobs)
    return elapsed, tensors, {"job_phases": phases, "after_last_job_s": node.mtime.timestamp() - last,
                              "workchain_node_lifetime_s": node.mtime.timestamp() - start}


def _phases(label: str, info: dict) -> None:
    print(f"  {label}, per job (s): created after submit | to job start | job (start-up + engine) | engine "
          "(of which G0 tables, cache) | to retrieved | parse")
    for p in info.get("job_phases", []):
        print(f"    {p['created_after_s']:6.2f} | {p['to_job_start_s']:6.2f} | {p['job_s']:6.2f} | "
              f"{p['engine_s']:6.2f} ({p['tables_s']:5.2f} {p['cache']:>4}) | {p['to_retrieved_s']:6.2f} | "
              f"{p['parse_s']:6.2f}")
    print(f"    after the last job's dataset until the work chain ended: {info.get('after_last_job_s', 0):.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=500, help="Pairs per job (the goal is stated for 500).")
    ap.add_argument("--batches", type=int, default=4, help="Number of jobs.")
    ap.add_argument("--kgrid", type=int, default=None, help="Engine k-grid [default: the engine's, 24].")
    ap.add_argument("--repeat", type=int, default=1, help="Repeat every path, keep the best of each.")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mlkkr-bench-aiida-"))
    os.environ["AIIDA_PATH"] = str(tmp / "config")  # a throw-away AiiDA configuration
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.environ.pop("MLKKR_NO_CACHE", None)
    from aiida.manage.configuration import get_config, profile_context

    from mlkkr.aiida.testing import ServiceProfile

    get_config(create=True)
    n = args.batch * args.batches
    sp = ServiceProfile(tmp, workers=1).create()
    times: dict[str, list[float]] = {"direct": [], "cold": [], "warm": [], "direct_warm": []}
    info: dict[str, dict] = {}
    same: dict[str, bool] = {}
    try:
        with profile_context(sp.name, allow_switch=True):
            sp.setup_computer()
            for rep in range(args.repeat):
                # a fresh cache folder per repetition, set before the daemon starts: it and its jobs inherit it
                os.environ["MLKKR_CACHE_DIR"] = str(tmp / f"greens-cache-{rep}")
                sp.stop_daemon()
                sp.start_daemon()
                s, ref = direct(n, args.kgrid)
                times["direct"].append(s)
                for label in ("cold", "warm"):
                    s, got, phases = workchain(sp, n, args.batch, args.kgrid)
                    times[label].append(s)
                    if s <= min(times[label]):
                        info[label] = phases
                    same[label] = same.get(label, True) and got.tobytes() == ref.tobytes()
                s, got = direct(n, args.kgrid, cache=True)
                times["direct_warm"].append(s)
                same["direct_warm"] = same.get("direct_warm", True) and got.tobytes() == ref.tobytes()
    finally:
        sp.destroy()
    best = {k: min(v) for k, v in times.items()}
    td = best["direct"]
    result = {
        "pairs": n, "batch": args.batch, "jobs": args.batches, "kgrid": args.kgrid or 24, "repeat": args.repeat,
        "direct_seconds": td, "direct_warm_cache_seconds": best["direct_warm"],
        "workchain_cold_cache_seconds": best["cold"], "workchain_warm_cache_seconds": best["warm"],
        "direct_pairs_per_second": n / td, "workchain_warm_cache_pairs_per_second": n / best["warm"],
        "overhead_ratio_cold_cache": best["cold"] / td, "overhead_ratio_warm_cache": best["warm"] / td,
        "goal_ratio": 1.5, "same_tensors_bit_for_bit": same,
        "cold": info.get("cold", {}), "warm": info.get("warm", {}),
        "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "machine": platform.node(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bench_aiida-batch{args.batch}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n} exchange pairs, {args.batches} jobs of {args.batch} (k-grid {result['kgrid']}), "
          f"{os.cpu_count()} CPUs, load {result['load_average_1min']:.1f}")
    print(f"  engine directly, one process (computes its G0 tables) : {td:7.2f} s {n / td:7.1f} pairs/s  (reference)")
    print(f"  engine directly, one process, G0 tables from the cache: {best['direct_warm']:7.2f} s "
          f"{n / best['direct_warm']:7.1f} pairs/s")
    for label, text in (("cold", "DatasetWorkChain, empty cache"), ("warm", "DatasetWorkChain, warm cache")):
        print(f"  {text:<54}: {best[label]:7.2f} s {n / best[label]:7.1f} pairs/s   ratio t_wc / t_direct "
              f"{best[label] / td:.2f}x (goal <= 1.5x at batch 500)")
    for label in ("cold", "warm"):
        _phases(label, info.get(label, {}))
    print(f"  same tensors as the reference, bit for bit: {same}")


if __name__ == "__main__":
    main()
