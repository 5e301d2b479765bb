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
engine in one process with a warm cache for comparison, where each job's time went, and CPU time:
of the reference, of every job's ``mlkkr`` process (bash ``times`` in the job script) and of the
daemon worker (psutil) — less sensitive than wall time to the other work on a shared machine. Nothing
is asserted. Results: benchmarks/results/bench_aiida-batch<B>[-<tag>].json. To measure another
checkout with the same script, put its ``src`` first on PYTHONPATH (the daemon and the jobs inherit
it) and give ``--tag``.
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


def direct(n: int, kgrid: int | None, cache: bool = False) -> tuple[float, float, np.ndarray]:
    """Wall seconds, CPU seconds and tensors (n, 3, 3) of the dataset's pairs computed by the engine here."""
    from mlkkr.data.builders import ExchangeSampler, build_exchange
    from mlkkr.greens import Engine, make_host

    t0, c0 = time.perf_counter(), time.process_time()
    engine = Engine(make_host("ti"), kgrid, **({"cache": True} if cache else {}))
    records, _ = build_exchange(engine, n, SEED, ExchangeSampler())
    return time.perf_counter() - t0, time.process_time() - c0, np.array([r.tensor for r in records])


SEED = 7

#: job-side clocks: the job script writes the time it starts and ends, and (bash ``times``) the CPU time
#: of its children — the mlkkr process; retrieved with the outputs
TIMING = {"prepend_text": "date +%s.%N > _t_start", "append_text": "date +%s.%N > _t_end; times > _t_times",
          "additional_retrieve_list": ["_t_start", "_t_end", "_t_times"]}


def _seconds(text: str) -> float:
    """``1m2.500s`` -> 62.5."""
    minutes, _, rest = text.strip().partition("m")
    return 60 * float(minutes) + float(rest.rstrip("s"))


def _job_cpu(retrieved) -> float:
    """User + system CPU seconds of the job's mlkkr process (second line of bash ``times``)."""
    lines = retrieved.base.repository.get_object_content("_t_times").splitlines()
    return sum(_seconds(x) for x in lines[1].split())


def _worker_cpu(sp) -> float:
    """CPU seconds used so far by the profile's daemon worker processes."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if sp.name in cmd and "daemon" in cmd and cmd.endswith("worker") and proc.info["cpu_times"]:
            total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


def workchain(sp, n: int, batch: int, kgrid: int | None) -> tuple[float, np.ndarray, dict]:
    """Seconds from submit to finished, tensors in plan order, and where the time went."""
    from aiida.engine import submit

    from mlkkr.aiida.launch import dataset_builder
    from mlkkr.aiida.testing import wait_for

    params = {} if kgrid is None else {"kgrid": kgrid}
    builder = dataset_builder("exchange", n, batch, sp.computer, seed=SEED, parameters=params, options=TIMING)
    worker0 = _worker_cpu(sp)
    t0 = time.perf_counter()
    node = submit(builder)
    wait_for(node, 3600, poll=0.2)
    elapsed = time.perf_counter() - t0
    worker_cpu = _worker_cpu(sp) - worker0
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
            "cpu_s": _job_cpu(retrieved),
            "engine_s": j.outputs.summary["seconds"],
            "tables_s": j.outputs.summary.get("host_tables", {}).get("seconds", float("nan")),
            "cache": j.outputs.summary.get("host_tables", {}).get("cache", "-"),
            "to_retrieved_s": retrieved.ctime.timestamp() - t_end,
            "parse_s": j.outputs.dataset.ctime.timestamp() - retrieved.ctime.timestamp(),
        })
    last = max(j.outputs.dataset.ctime.timestamp() for j in jobs)
    return elapsed, tensors, {"job_phases": phases, "after_last_job_s": node.mtime.timestamp() - last,
                              "workchain_node_lifetime_s": node.mtime.timestamp() - start,
                              "jobs_cpu_s": sum(p["cpu_s"] for p in phases), "daemon_worker_cpu_s": worker_cpu}


def _phases(label: str, info: dict) -> None:
    print(f"  {label}, per job (s): created after submit | to job start | job (start-up + engine) [CPU] | "
          "engine (of which G0 tables, cache) | to retrieved | parse")
    for p in info.get("job_phases", []):
        print(f"    {p['created_after_s']:6.2f} | {p['to_job_start_s']:6.2f} | {p['job_s']:6.2f} [{p['cpu_s']:5.2f}] | "
              f"{p['engine_s']:6.2f} ({p['tables_s']:5.2f} {p['cache']:>4}) | {p['to_retrieved_s']:6.2f} | "
              f"{p['parse_s']:6.2f}")
    print(f"    after the last job's dataset until the work chain ended: {info.get('after_last_job_s', 0):.2f} s; "
          f"CPU: jobs {info.get('jobs_cpu_s', 0):.2f} s, daemon worker {info.get('daemon_worker_cpu_s', 0):.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=500, help="Pairs per job (the goal is stated for 500).")
    ap.add_argument("--batches", type=int, default=4, help="Number of jobs.")
    ap.add_argument("--kgrid", type=int, default=None, help="Engine k-grid [default: the engine's, 24].")
    ap.add_argument("--repeat", type=int, default=1, help="Repeat every path, keep the best of each.")
    ap.add_argument("--tag", default="", help="Suffix of the results file (e.g. 'before' for another checkout).")
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
    runs: dict[str, list[tuple[float, float]]] = {"direct": [], "direct_warm": [], "cold": [], "warm": []}
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
                wall, cpu, ref = direct(n, args.kgrid)
                runs["direct"].append((wall, cpu))
                for label in ("cold", "warm"):
                    wall, got, phases = workchain(sp, n, args.batch, args.kgrid)
                    runs[label].append((wall, phases["jobs_cpu_s"] + phases["daemon_worker_cpu_s"]))
                    if wall <= min(w for w, _ in runs[label]):
                        info[label] = phases
                    same[label] = same.get(label, True) and got.tobytes() == ref.tobytes()
                try:
                    wall, cpu, got = direct(n, args.kgrid, cache=True)
                except TypeError:  # an mlkkr without the cache (a checkout from before it)
                    continue
                runs["direct_warm"].append((wall, cpu))
                same["direct_warm"] = same.get("direct_warm", True) and got.tobytes() == ref.tobytes()
    finally:
        sp.destroy()
    best = {k: min(v) for k, v in runs.items() if v}  # (wall, cpu) of the fastest run
    td, cd = best["direct"]
    result = {
        "pairs": n, "batch": args.batch, "jobs": args.batches, "kgrid": args.kgrid or 24, "repeat": args.repeat,
        "direct_seconds": td, "direct_cpu_seconds": cd,
        "direct_warm_cache_seconds": best.get("direct_warm", (None,))[0],
        "workchain_cold_cache_seconds": best["cold"][0], "workchain_warm_cache_seconds": best["warm"][0],
        "direct_pairs_per_second": n / td, "workchain_warm_cache_pairs_per_second": n / best["warm"][0],
        "overhead_ratio_cold_cache": best["cold"][0] / td, "overhead_ratio_warm_cache": best["warm"][0] / td,
        "cpu_ratio_cold_cache": best["cold"][1] / cd, "cpu_ratio_warm_cache": best["warm"][1] / cd,
        "goal_ratio": 1.5, "same_tensors_bit_for_bit": same,
        "cold": info.get("cold", {}), "warm": info.get("warm", {}),
        "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "machine": platform.node(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = f"-{args.tag}" if args.tag else ""
    (RESULTS / f"bench_aiida-batch{args.batch}{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n} exchange pairs, {args.batches} jobs of {args.batch} (k-grid {result['kgrid']}), "
          f"{os.cpu_count()} CPUs, load {result['load_average_1min']:.1f}; best of {args.repeat}")
    rows = [("direct", "engine directly, one process (computes its G0 tables)"),
            ("direct_warm", "engine directly, one process, G0 tables from the cache"),
            ("cold", "DatasetWorkChain, empty cache"), ("warm", "DatasetWorkChain, warm cache")]
    for key, text in rows:
        if key not in best:
            continue
        wall, cpu = best[key]
        line = f"  {text:<55}: {wall:7.2f} s {n / wall:7.1f} pairs/s, CPU {cpu:6.2f} s"
        if key == "direct":
            line += "   (reference)"
        elif key in ("cold", "warm"):
            line += (f" (jobs + daemon worker)   ratio t_wc / t_direct {wall / td:.2f}x (goal <= 1.5x at batch 500), "
                     f"CPU ratio {cpu / cd:.2f}x")
        print(line)
    for label in ("cold", "warm"):
        _phases(label, info.get(label, {}))
    print(f"  same tensors as the reference, bit for bit: {same}")


if __name__ == "__main__":
    main()
