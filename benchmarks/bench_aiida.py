"""AiiDA overhead: exchange pairs per second through the dataset work chain against the engine in one process.

    .venv/bin/python benchmarks/bench_aiida.py [--batch 500] [--batches 4] [--kgrid 24] [--repeat 1]

Reference run (same process, same pairs): the engine called directly — one ``Engine`` (its host
Green function computed once), ``build_exchange`` for each batch's (n, seed) in turn.
AiiDA path: a throw-away service profile (PostgreSQL + RabbitMQ, one daemon worker, computer
``localhost`` with the direct scheduler), ``DatasetWorkChain`` of ``batches × batch`` pairs submitted
to the daemon; timed from ``submit`` until the work chain has finished (jobs: ``mlkkr data exchange``
on the computer, one per batch, run in parallel; parse; Group). The records of both paths are
compared (same tensors). Prints pairs/s of both and the ratio ``t_workchain / t_direct``
(goal ≤ 1.5 at batch size 500); nothing is asserted. Results: benchmarks/results/bench_aiida-batch<B>.json.
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


def direct(plan: list[tuple[str, int, int]], kgrid: int | None) -> tuple[float, np.ndarray]:
    """Seconds and tensors (n, 3, 3) of the plan's pairs computed by the engine in this process."""
    from mlkkr.data.builders import ExchangeSampler, build_exchange
    from mlkkr.greens import Engine, make_host

    t0 = time.perf_counter()
    engine = Engine(make_host("ti"), kgrid)
    tensors = []
    for _, n, seed in plan:
        records, _ = build_exchange(engine, n, seed, ExchangeSampler())
        tensors += [r.tensor for r in records]
    return time.perf_counter() - t0, np.array(tensors)


#: job-side clock: the job script writes the time it starts and ends (retrieved with the outputs)
TIMING = {"prepend_text": "date +%s.%N > _t_start", "append_text": "date +%s.%N > _t_end",
          "additional_retrieve_list": ["_t_start", "_t_end"]}


def workchain(sp, n: int, batch: int, kgrid: int | None) -> tuple[float, np.ndarray, dict]:
    """Seconds from submit to finished, tensors in plan order, and where the time went."""
    from aiida.engine import submit

    from mlkkr.aiida.launch import dataset_builder
    from mlkkr.aiida.testing import wait_for

    params = {} if kgrid is None else {"kgrid": kgrid}
    builder = dataset_builder("exchange", n, batch, sp.computer, seed=7, parameters=params, options=TIMING)
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
            "to_retrieved_s": retrieved.ctime.timestamp() - t_end,
            "parse_s": j.outputs.dataset.ctime.timestamp() - retrieved.ctime.timestamp(),
        })
    last = max(j.outputs.dataset.ctime.timestamp() for j in jobs)
    return elapsed, tensors, {"job_phases": phases, "after_last_job_s": node.mtime.timestamp() - last,
                              "workchain_node_lifetime_s": node.mtime.timestamp() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=500, help="Pairs per job (the goal is stated for 500).")
    ap.add_argument("--batches", type=int, default=4, help="Number of jobs.")
    ap.add_argument("--kgrid", type=int, default=None, help="Engine k-grid [default: the engine's, 24].")
    ap.add_argument("--repeat", type=int, default=1, help="Repeat both paths, keep the best of each.")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mlkkr-bench-aiida-"))
    os.environ["AIIDA_PATH"] = str(tmp / "config")  # a throw-away AiiDA configuration
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    from aiida.manage.configuration import get_config, profile_context

    from mlkkr.aiida.testing import ServiceProfile
    from mlkkr.aiida.workflows import batch_plan

    get_config(create=True)
    n = args.batch * args.batches
    plan = batch_plan(n, args.batch, 7)
    sp = ServiceProfile(tmp, workers=1).create()
    try:
        with profile_context(sp.name, allow_switch=True):
            sp.setup_computer()
            sp.start_daemon()
            t_direct, t_wc, ref, got, info = [], [], None, None, {}
            for _ in range(args.repeat):
                s, ref = direct(plan, args.kgrid)
                t_direct.append(s)
                s, got, info = workchain(sp, n, args.batch, args.kgrid)
                t_wc.append(s)
    finally:
        sp.destroy()
    same = bool(ref is not None and got is not None and ref.shape == got.shape and np.allclose(ref, got, atol=1e-9))
    td, tw = min(t_direct), min(t_wc)
    result = {
        "pairs": n, "batch": args.batch, "jobs": args.batches, "kgrid": args.kgrid or 24,
        "direct_seconds": td, "workchain_seconds": tw,
        "direct_pairs_per_second": n / td, "workchain_pairs_per_second": n / tw,
        "overhead_ratio": tw / td, "goal_ratio": 1.5, "same_tensors": same, **info,
        "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "machine": platform.node(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bench_aiida-batch{args.batch}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n} exchange pairs, {args.batches} jobs of {args.batch} (k-grid {result['kgrid']}), "
          f"{os.cpu_count()} CPUs, load {result['load_average_1min']:.1f}")
    print(f"  engine directly, one process : {td:8.2f} s  {n / td:8.1f} pairs/s   (reference)")
    print(f"  DatasetWorkChain via daemon  : {tw:8.2f} s  {n / tw:8.1f} pairs/s")
    print(f"  overhead ratio t_wc / t_direct: {tw / td:.2f}x   (goal <= 1.5x at batch 500)")
    print("  per job (s): created after submit | to job start | job (imports + engine) | engine | to retrieved "
          "| parse")
    for p in info.get("job_phases", []):
        keys = ("created_after_s", "to_job_start_s", "job_s", "engine_s", "to_retrieved_s", "parse_s")
        print("    " + " | ".join(f"{p[k]:6.2f}" for k in keys))
    print(f"  after the last job's dataset until the work chain ended: {info.get('after_last_job_s', 0):.2f} s")
    print(f"  same tensors on both paths: {same}")


if __name__ == "__main__":
    main()
