"""ML-ES on real KKRimp potentials: held-out elements, and the time a prediction saves over JuKKR.

    .venv/bin/python benchmarks/bench_ml_es_real.py [--data benchmarks/data/cu-3d4d-r2.6.h5]

``--data``: an ``mlkkr.radial`` file of real impurity embeddings in one host, as written by
``mlkkr data from-group GROUP -o FILE`` after ``mlkkr run dataset potential --backend jukkr --host H
--elements 3d,4d --radius R`` (the files of the published figures are in benchmarks/data/).

Measures, in one process:

1. leave-one-element-out: for every impurity element, the radial JL model
   (:mod:`mlkkr.models.potential_radial`) fitted on all other elements predicts ΔV(r) on every mesh
   point of every cluster atom of the held-out embedding. Relative RMSE of the stored potential
   (nuclear −2Z/r excluded: it is exact), and the same near the nucleus (r < 0.1 Å) and at the cell
   boundary (outer 10 % of each atom's radii); reference run: the profile of the nearest element
   in the periodic table (same period, closest group);
2. speed-up: wall time of one prediction (features + radial basis for every atom, warm) against
   the wall time of the real kkr_imp_wc it replaces (voronoi + KKRhost write-out + KKRimp SCF,
   recorded in the data's provenance), element by element.

Nothing is asserted; results go to benchmarks/results/bench_ml_es_real-<data file stem>.json and the
figure of predicted vs KKRimp ΔV(r) of the median held-out element to docs/figures/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _figures import save_figure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "cu-3d4d-r2.5.h5",
                    help="an mlkkr.radial file (default: the single impurities of the published figures)")
    ap.add_argument("--tag", default=None, help="results file suffix [default: the data file's stem]")
    ap.add_argument("--n-radial", type=int, default=24)
    ap.add_argument("--n-max", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=20, help="predictions timed per element (best of)")
    args = ap.parse_args()

    from mlkkr.data.h5io import file_sha256, read_radial
    from mlkkr.models.potential_radial import RadialConfig, RadialPotentialModel
    from mlkkr.train.potential_radial import leave_one_element_out

    tag = args.data.stem if args.tag is None else args.tag
    records = read_radial(args.data)
    cfg = RadialConfig(n_radial=args.n_radial, n_max=args.n_max)
    t0 = time.perf_counter()
    loeo = leave_one_element_out(records, cfg, log=lambda m: print(m, flush=True))
    loeo_s = time.perf_counter() - t0

    by_el = {r.impurity: r for r in records}
    speed = []
    model = RadialPotentialModel(cfg).fit([r for r in records if r.converged])
    for row in loeo["per_element"]:
        rec = by_el[row["element"]]
        model.predict_atoms(rec)  # warm
        best = min(_timed(model.predict_atoms, rec) for _ in range(args.repeat))
        jukkr = float(rec.provenance.get("workflow_wall_s", np.nan))
        speed.append({"element": row["element"], "atoms": len(rec.z), "mesh_points": int(sum(len(m) for m in rec.r)),
                      "predict_s": best, "jukkr_wall_s": jukkr, "speedup": jukkr / best})
    s = loeo["summary"]
    sp = np.array([x["speedup"] for x in speed])
    print(f"\nheld-out relative RMSE (median over {s['n_held_out']} elements): model {s['median_relative_rmse']:.4f}, "
          f"nearest element {s['baseline_median_relative_rmse']:.4f}  -> ratio "
          f"{s['baseline_median_relative_rmse'] / s['median_relative_rmse']:.1f}x better")
    print(f"within 5 %: {s['fraction_within_5_percent']:.0%} of the elements; worst {s['worst']} "
          f"({s['max_relative_rmse']:.3f})")
    print(f"speed-up over the JuKKR run (median): {np.median(sp):.3g}x (min {sp.min():.3g}x)")

    result = {
        "benchmark": "bench_ml_es_real", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_end": os.getloadavg()},
        "data": {"file": args.data.name, "sha256": file_sha256(args.data), "records": len(records),
                 "impurities": [r.impurity for r in records], "atoms_per_cluster": sorted({len(r.z) for r in records}),
                 "converged": [r.converged for r in records]},
        "model": {"n_radial": cfg.n_radial, "n_max": cfg.n_max, "cutoff": cfg.cutoff, "r_s": cfg.r_s},
        "leave_one_element_out": loeo, "loeo_seconds": loeo_s,
        "speedup": {"per_element": speed, "median": float(np.median(sp)), "min": float(sp.min())},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_ml_es_real" + (f"-{tag}" if tag else "") + ".json"
    (RESULTS / name).write_text(json.dumps(result, indent=1, default=float))
    print(f"results: benchmarks/results/{name}")
    _figure(records, loeo, cfg, tag)
    return 0


def _timed(f, *a) -> float:
    t = time.perf_counter()
    f(*a)
    return time.perf_counter() - t


def _figure(records, loeo, cfg, tag: str) -> None:
    """ΔV(r) predicted (held out) vs KKRimp for the element of median error: impurity site and a neighbour."""
    from mlkkr.train.potential_radial_plots import heldout_figure

    rows = sorted(loeo["per_element"], key=lambda r: r["model"]["all_relative_rmse"])
    fig = heldout_figure(records, rows[len(rows) // 2]["element"], cfg)
    save_figure(fig, "ml-es-real" + (f"-{tag}" if tag else ""))


if __name__ == "__main__":
    raise SystemExit(main())
