"""Benchmarks of the model Green-function engine (mlkkr.greens). Prints figures and ratios; asserts nothing.

    python benchmarks/bench_engine.py                 # all sections except the CLI run and convergence
    python benchmarks/bench_engine.py --cli 10000     # + `mlkkr data exchange --n 10000` end to end
    python benchmarks/bench_engine.py --convergence   # + the k-grid / contour convergence table

Sections, each against a named reference run in the same process:

1. exchange throughput, 4-defect clusters (2 magnetic + 2 others), TI host: the batched builder
   (``build_exchange``: one gather of G0 blocks and one ``linalg.solve`` per batch) at the default
   26-point contour and at 40 points, against the reference *per-pair loop* (``exchange_tensor``
   one pair at a time, same formula); peak traced memory.
2. host G0(R, z) for all R of the supercell by FFT, against the reference *direct k-sum*
   ``(1/N³) Σ_k e^{ik·R} G(k)`` for the same R and energies: speed ratio and max difference.
2b. host G0 tables from the on-disk cache (``mlkkr.greens.cache``): loading a warm entry (read +
   SHA-256 check) and filling a cold one (compute + write) against the reference *computing them*
   (what every process did before the cache), default TI and metal engines; bit-identity checked.
3. screening: Anderson mixing against the reference *linear mixing 0.3* (iterations, time).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from mlkkr.data.builders import ExchangeSampler, build_exchange
from mlkkr.greens import ContourParams, Engine, KGrid, make_contour_params, make_defects, make_host, make_scf_params
from mlkkr.greens import screen as scf_screen
from mlkkr.greens.exchange import exchange_tensor
from mlkkr.greens.green import host_green, host_green_direct

GOAL_PAIRS_PER_S = 300.0


def timed(fn):
    """(result, wall seconds); the CPU seconds of the last call are in ``timed.cpu``."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    timed.cpu = time.process_time() - c0
    return out, time.perf_counter() - t0


def throughput(n: int) -> None:
    print(f"\n== 1. exchange throughput: {n} pairs, 4-defect clusters, TI host, k-grid 24³ (+adaptive) ==")
    sampler = ExchangeSampler(n_others=2)
    ref_n = max(50, n // 20)
    for label, contour in (("default 26-point contour", ContourParams()),
                           ("40-point contour", make_contour_params(n_vertical=4, n_horizontal=20, n_fermi=8,
                                                                    n_poles=8))):
        eng = Engine(make_host("ti"), None, contour)
        _, t_table = timed(eng.tables)
        _, t_batch = timed(lambda eng=eng: build_exchange(eng, n, 1, sampler))
        c_batch = timed.cpu
        tracemalloc.start()  # separately: tracing slows every allocation down
        build_exchange(eng, min(n, 1000), 2, sampler)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak += eng.table_bytes()
        configs = [sampler.sample(np.random.default_rng([1, r])) for r in range(ref_n)]
        defects = [make_defects([{"element": e, "position": list(p)} for e, p in zip(sp, si, strict=True)])
                   for sp, si in configs]
        _, t_ref = timed(lambda eng=eng, defects=defects: [exchange_tensor(eng, d, 0, 1) for d in defects])
        c_ref = timed.cpu
        rate, rate_ref = n / t_batch, ref_n / t_ref
        print(f"{label} ({len(eng.contour)} points): G0 table {t_table:.2f} s; batched {rate:6.0f} pairs/s wall, "
              f"{n / c_batch:6.0f} pairs per CPU-s; peak memory (G0 table + traced) {peak / 2**20:.0f} MiB")
        print(f"   reference per-pair loop {rate_ref:6.0f} pairs/s wall, {ref_n / c_ref:6.0f} per CPU-s -> ratio "
              f"batched/reference {rate / rate_ref:.1f}x (CPU {(n / c_batch) / (ref_n / c_ref):.1f}x); "
              f"ratio to the {GOAL_PAIRS_PER_S:.0f} pairs/s goal {rate / GOAL_PAIRS_PER_S:.2f} wall, "
              f"{n / c_batch / GOAL_PAIRS_PER_S:.2f} CPU")


def cli_run(n: int) -> None:
    print(f"\n== 1b. `mlkkr data exchange --n {n}` end to end (subprocess; default sampler: 0-3 others) ==")
    exe = str(Path(sys.executable).with_name("mlkkr"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.h5"
        t0 = time.perf_counter()
        subprocess.run([exe, "data", "exchange", "--n", str(n), "--seed", "1", "-o", str(out), "--no-progress"],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss, cpu = usage.ru_maxrss / 2**10, usage.ru_utime + usage.ru_stime
        print(f"{n / wall:.0f} pairs/s wall including start-up, G0 table and writing ({wall:.1f} s; CPU {cpu:.1f} s "
              f"= {n / cpu:.0f} pairs per CPU-s); peak RSS {rss:.0f} MiB; file {out.stat().st_size / 2**20:.1f} MiB;"
              f" ratio to the goal {n / wall / GOAL_PAIRS_PER_S:.2f} wall, {n / cpu / GOAL_PAIRS_PER_S:.2f} CPU")


def fft_vs_direct() -> None:
    print("\n== 2. G0(R, z): FFT for all R vs the reference direct k-sum (TI host, 26 contour energies) ==")
    host = make_host("ti")
    z = Engine(host).contour.z
    for n, radius in ((12, None), (24, 4.0)):
        g = np.arange(n) if radius is None else np.arange(-int(radius), int(radius) + 1)
        d = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        if radius is not None:
            d = d[np.linalg.norm(d, axis=1) <= radius]
        full, t_fft = timed(lambda n=n: host_green(host, n, z))
        direct, t_direct = timed(lambda n=n, d=d: host_green_direct(host, n, z, d))
        m = d % n
        diff = np.abs(full[:, m[:, 0], m[:, 1], m[:, 2]] - direct).max() / np.abs(direct).max()
        what = "all R" if radius is None else f"{len(d)} R within |R| <= {radius}"
        print(f"N = {n}: FFT (all {n**3} R) {t_fft:.2f} s; direct k-sum ({what}) {t_direct:.2f} s; "
              f"speed ratio {t_direct / t_fft:.1f}x; max relative difference {diff:.1e}")


def table_cache() -> None:
    print("\n== 2b. host G0 tables: cold vs warm on-disk cache vs the reference computing them (default engines) ==")
    with tempfile.TemporaryDirectory() as folder:
        for name in ("ti", "metal"):
            host = make_host(name)
            computed, t_ref = timed(Engine(host).tables)
            cold = Engine(host, cache=folder)
            _, t_cold = timed(cold.tables)
            warm = Engine(host, cache=folder)
            loaded, t_warm = timed(warm.tables)
            same = all(computed[n].tobytes() == loaded[n].tobytes() for n in computed)
            size = sum(a.nbytes for a in loaded.values())
            print(f"{name}: {size / 2**20:.0f} MiB; computed (reference) {t_ref:.2f} s; "
                  f"cold cache ({cold.cache_status}: compute + write) {t_cold:.2f} s; "
                  f"warm cache ({warm.cache_status}: read + SHA-256 check) {t_warm:.2f} s; "
                  f"speed ratio reference/warm {t_ref / t_warm:.1f}x; bit-identical {same}")


def screening() -> None:
    print("\n== 3. screening: Anderson mixing vs the reference linear mixing 0.3 (TI host, radius 2) ==")
    eng = Engine(make_host("ti"))
    eng.tables()
    for label, items in (("1 defect", [("Mn", (0, 0, 0))]),
                         ("3 defects", [("Mn", (0, 0, 0)), ("In", (1, 0, 0)), ("Vac", (0, 1, 1))])):
        defects = make_defects([{"element": e, "position": list(p)} for e, p in items])
        a, t_a = timed(lambda d=defects: scf_screen(eng, d))
        lin, t_l = timed(lambda d=defects: scf_screen(eng, d, make_scf_params(mixer="linear", mixing=0.3,
                                                                              max_iterations=200)))
        print(f"{label} ({len(a.sites)} sites): Anderson {a.iterations} iterations {t_a:.2f} s; linear "
              f"{lin.iterations} iterations {t_l:.2f} s; speed-up {t_l / t_a:.1f}x; "
              f"max |ΔV_A − ΔV_lin| {np.abs(a.dv - lin.dv).max():.1e} eV")


def convergence() -> None:
    print("\n== 4. convergence at the defaults (relative change of each pair's tensor, max over elements) ==")
    pairs = [
        [("Fe", (0, 0, 0)), ("Fe", (1, 0, 0))],
        [("Mn", (0, 0, 0)), ("Co", (1, 1, 0)), ("Sn", (1, 0, 0)), ("Vac", (0, 1, 1))],
        [("Cr", (0, 0, 0)), ("Mn", (2, 1, 0)), ("In", (1, 0, 0))],
        [("Mn", (0, 0, 0)), ("Mn", (0, 0, 2))],
        [("Fe", (0, 0, 0)), ("Ni", (3, 1, 1)), ("Se", (2, 1, 0))],
    ]
    defs = [make_defects([{"element": e, "position": list(p)} for e, p in c]) for c in pairs]
    for host_name in ("metal", "ti"):
        host = make_host(host_name)
        base = np.array([exchange_tensor(Engine(host), d, 0, 1) for d in defs])
        print(f"{host_name}: J_iso at the defaults (meV) {np.round(np.trace(base, axis1=1, axis2=2) / 3, 4)}")
        for label, eng in (("k-grid x2", Engine(host, KGrid().scaled(2))),
                           ("contour x2", Engine(host, None, ContourParams().scaled(2))),
                           ("contour /2", Engine(host, None, make_contour_params(n_vertical=2, n_horizontal=6,
                                                                                 n_fermi=3, n_poles=3)))):
            other = np.array([exchange_tensor(eng, d, 0, 1) for d in defs])
            change = np.abs(other - base).max(axis=(1, 2)) / np.abs(base).max(axis=(1, 2))
            print(f"   {label:<11} change per pair (%): {np.round(100 * change, 3)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000, help="pairs in the throughput section (default 4000)")
    ap.add_argument("--cli", type=int, default=0, metavar="N", help="also run `mlkkr data exchange --n N`")
    ap.add_argument("--convergence", action="store_true", help="also print the convergence table")
    args = ap.parse_args()
    print(f"load average before the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores "
          "(wall-clock rates drop when other work shares the cores; CPU-time rates do not)")
    throughput(args.n)
    if args.cli:
        cli_run(args.cli)
    fft_vs_direct()
    table_cache()
    screening()
    if args.convergence:
        convergence()


if __name__ == "__main__":
    main()
