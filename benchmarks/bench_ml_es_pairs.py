"""ML-ES on real impurity pairs: held-out pairs, against the superposition of the real single embeddings.

    .venv/bin/python benchmarks/bench_ml_es_pairs.py [--data benchmarks/data/cu-3d-pairs-r2.6.h5]

``--data``: an ``mlkkr.radial`` file with single impurities *and* nearest-neighbour pairs in one host, all
with the same shells, as written by ``mlkkr data from-group GROUP -o FILE`` after
``mlkkr run dataset potential --backend jukkr --host H --elements … --pairs Fe-Fe,… --radius 2.6``
(singles: the impurity and its 12 neighbours; pairs: the two clusters joined, 20 atoms).

Measures, in one process, for every pair P:

1. reference run — superposition: ΔV of P as the sum of the real single embeddings' ΔV
   (:func:`mlkkr.train.potential_radial.superposition_baseline`): what is not additive is what a pair
   model must learn;
2. the radial JL model fitted on the single embeddings only, predicting P;
3. the same model fitted on the singles and every *other* pair (leave-one-pair-out), predicting P;
4. as 3 with the defect–defect term (``RadialConfig(pair_terms=True)``), which only pairs can train;
5. superposition + learned correction: the real singles superposed, plus a model (with the defect–defect
   term) fitted on the *other* pairs' non-additive parts (pair − superposition) — what a user gets who
   has the single embeddings (cheap) and wants the pairs (costly).

Errors as in bench_ml_es_real (relative RMSE of the stored ΔV on every mesh point of every cluster atom;
near the nucleus, at the cell boundary; screened: relative to the full ΔV outside the core) and, the
stringent one, the relative error of the **non-additive part** ΔV_P − superposition. Speed-up: one
prediction against the wall time of the pair's combine_imps_wc (host GF write-out + KKRimp), and against
that plus its two single embeddings (what a user without the singles waits for).

Nothing is asserted; results go to benchmarks/results/bench_ml_es_pairs-<data file stem>.json and the
figure of one pair's ΔV(r) to docs/figures/.
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


def _rel(pred: list[np.ndarray], true: list[np.ndarray]) -> float:
    num = sum(float(np.sum((p - t) ** 2)) for p, t in zip(pred, true, strict=True))
    den = sum(float(np.sum(t ** 2)) for t in true)
    return float(np.sqrt(num / max(den, 1e-300)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "cu-3d-pairs-r2.6.h5",
                    help="an mlkkr.radial file of single impurities and pairs with the same shells")
    ap.add_argument("--tag", default=None, help="results file suffix [default: the data file's stem]")
    ap.add_argument("--n-radial", type=int, default=24)
    ap.add_argument("--n-max", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=20, help="predictions timed per pair (best of)")
    args = ap.parse_args()

    from mlkkr.data.h5io import file_sha256, read_radial
    from mlkkr.models.potential_radial import RadialConfig, RadialPotentialModel, errors
    from mlkkr.train.potential_radial import superposition_baseline

    tag = args.data.stem if args.tag is None else args.tag
    records = [r for r in read_radial(args.data) if r.converged]
    singles = [r for r in records if len(r.defects) == 1]
    pairs = [r for r in records if len(r.defects) == 2]
    if not pairs or len(singles) < 4:
        raise SystemExit(f"{args.data}: need pairs and at least 4 single embeddings "
                         f"({len(pairs)} pairs, {len(singles)} singles converged)")
    cfg = RadialConfig(n_radial=args.n_radial, n_max=args.n_max)
    cfg_pairs = RadialConfig(n_radial=args.n_radial, n_max=args.n_max, pair_terms=True)
    from_singles = RadialPotentialModel(cfg).fit(singles)
    wall = {r.provenance.get("sub_workflow_uuid"): float(r.provenance.get("workflow_wall_s", np.nan))
            for r in singles}
    rows = []
    for k, pair in enumerate(pairs):
        sup = superposition_baseline(pair, singles)
        t0 = time.perf_counter()
        lopo = RadialPotentialModel(cfg).fit(singles + [p for j, p in enumerate(pairs) if j != k])
        fit_s = time.perf_counter() - t0
        others = singles + [p for j, p in enumerate(pairs) if j != k]
        pred_lopo, pred_singles = lopo.predict_atoms(pair), from_singles.predict_atoms(pair)
        pred_terms = RadialPotentialModel(cfg_pairs).fit(others).predict_atoms(pair)
        pred_corrected = None
        residuals = [_residual(p, singles) for j, p in enumerate(pairs) if j != k]
        if len(residuals) >= 2:
            corr = RadialPotentialModel(cfg_pairs).fit(residuals).predict_atoms(pair)
            pred_corrected = [s_ + c for s_, c in zip(sup, corr, strict=True)]
        lopo.predict_atoms(pair)  # warm
        best = min(_timed(lopo.predict_atoms, pair) for _ in range(args.repeat))
        nonadd = [t - s for t, s in zip(pair.delta_v, sup, strict=True)]
        pair_wall = float(pair.provenance.get("workflow_wall_s", np.nan))
        with_singles = pair_wall + sum(wall.get(u, np.nan) for u in pair.provenance.get("combined_from") or [])
        row = {"pair": pair.impurity, "atoms": len(pair.z),
               "distance_angstrom": float(np.linalg.norm(np.subtract(*pair.positions[pair.defects]))),
               "superposition": errors([pair], [sup]), "model_from_singles": errors([pair], [pred_singles]),
               "model_leave_one_pair_out": errors([pair], [pred_lopo]),
               "model_leave_one_pair_out_pair_terms": errors([pair], [pred_terms]),
               "superposition_plus_learned_correction": errors([pair], [pred_corrected]) if pred_corrected
               else None,
               "non_additive": {"rms_eV": float(np.sqrt(np.mean(np.concatenate(nonadd) ** 2))),
                                "model_from_singles_relative": _rel([p - s for p, s in zip(pred_singles, sup,
                                                                                          strict=True)], nonadd),
                                "model_leave_one_pair_out_relative": _rel([p - s for p, s in zip(pred_lopo, sup,
                                                                                                strict=True)], nonadd),
                                "model_leave_one_pair_out_pair_terms_relative": _rel(
                                    [p - s for p, s in zip(pred_terms, sup, strict=True)], nonadd),
                                "superposition_plus_learned_correction_relative": _rel(
                                    [p - s for p, s in zip(pred_corrected, sup, strict=True)], nonadd)
                                if pred_corrected else None},
               "fit_seconds": fit_s, "predict_s": best, "jukkr_pair_wall_s": pair_wall,
               "jukkr_with_singles_wall_s": with_singles, "speedup_pair": pair_wall / best,
               "speedup_with_singles": with_singles / best}
        rows.append(row)
        print(f"{pair.impurity:>6}: superposition {row['superposition']['all_relative_rmse']:.2e}, "
              f"model (singles) {row['model_from_singles']['all_relative_rmse']:.2e}, "
              f"model (LOPO) {row['model_leave_one_pair_out']['all_relative_rmse']:.2e}, with pair terms "
              f"{row['model_leave_one_pair_out_pair_terms']['all_relative_rmse']:.2e}; non-additive part "
              f"{row['non_additive']['rms_eV'] * 1e3:.1f} meV rms, its relative error: LOPO "
              f"{row['non_additive']['model_leave_one_pair_out_relative']:.2f}, with pair terms "
              f"{row['non_additive']['model_leave_one_pair_out_pair_terms_relative']:.2f}, superposition + learned "
              f"correction {row['non_additive']['superposition_plus_learned_correction_relative']}", flush=True)

    def med(key: str, sub: str = "all_relative_rmse") -> float:
        return float(np.median([r[key][sub] for r in rows]))

    summary = {name: {"median_relative_rmse": med(name), "median_screened_relative_rmse":
                      med(name, "screened_relative_rmse"), "median_near_nucleus_relative_rmse":
                      med(name, "near_nucleus_relative_rmse"), "median_cell_boundary_relative_rmse":
                      med(name, "cell_boundary_relative_rmse")}
               for name in ("superposition", "model_from_singles", "model_leave_one_pair_out",
                            "model_leave_one_pair_out_pair_terms")}
    summary["non_additive_median_relative_error"] = {
        k: float(np.median([r["non_additive"][f"{k}_relative"] for r in rows
                            if r["non_additive"][f"{k}_relative"] is not None] or [np.nan]))
        for k in ("model_from_singles", "model_leave_one_pair_out", "model_leave_one_pair_out_pair_terms",
                  "superposition_plus_learned_correction")}
    corrected = [r["superposition_plus_learned_correction"]["all_relative_rmse"] for r in rows
                 if r["superposition_plus_learned_correction"]]
    summary["superposition_plus_learned_correction"] = {
        "median_relative_rmse": float(np.median(corrected)) if corrected else None}
    summary["speedup_pair_median"] = float(np.median([r["speedup_pair"] for r in rows]))
    summary["speedup_with_singles_median"] = float(np.median([r["speedup_with_singles"] for r in rows]))
    print(f"\nmedian relative RMSE over {len(rows)} pairs: superposition "
          f"{summary['superposition']['median_relative_rmse']:.2e}, model from singles "
          f"{summary['model_from_singles']['median_relative_rmse']:.2e}, leave-one-pair-out "
          f"{summary['model_leave_one_pair_out']['median_relative_rmse']:.2e}, with pair terms "
          f"{summary['model_leave_one_pair_out_pair_terms']['median_relative_rmse']:.2e}")
    print(f"non-additive part, median relative error: {summary['non_additive_median_relative_error']}")
    print(f"speed-up (median): {summary['speedup_pair_median']:.3g}x over the pair run, "
          f"{summary['speedup_with_singles_median']:.3g}x over pair + singles")
    result = {
        "benchmark": "bench_ml_es_pairs", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_end": os.getloadavg()},
        "data": {"file": args.data.name, "sha256": file_sha256(args.data), "singles": [r.impurity for r in singles],
                 "pairs": [r.impurity for r in pairs], "atoms_per_cluster": sorted({len(r.z) for r in records})},
        "model": {"n_radial": cfg.n_radial, "n_max": cfg.n_max, "cutoff": cfg.cutoff, "r_s": cfg.r_s},
        "reference_run": "superposition of the real single embeddings",
        "per_pair": rows, "summary": summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_ml_es_pairs" + (f"-{tag}" if tag else "") + ".json"
    (RESULTS / name).write_text(json.dumps(result, indent=1, default=float))
    print(f"results: benchmarks/results/{name}")
    _figure(pairs, singles, rows, cfg, tag)
    return 0


def _residual(pair, singles):
    """``pair`` with ΔV replaced by its non-additive part (ΔV − superposition of the singles)."""
    from dataclasses import replace as dc_replace

    from mlkkr.train.potential_radial import superposition_baseline

    sup = superposition_baseline(pair, singles)
    return dc_replace(pair, delta_v=[v - s for v, s in zip(pair.delta_v, sup, strict=True)])


def _timed(f, *a) -> float:
    t = time.perf_counter()
    f(*a)
    return time.perf_counter() - t


def _figure(pairs, singles, rows, cfg, tag: str) -> None:
    """The median pair (leave-one-pair-out): the full ΔV outside the core on its first impurity, and ΔV on a
    Cu atom next to both impurities — KKRimp, the superposition of the singles, the model fitted on singles
    only, and the model that saw the other pairs."""
    from plotly.subplots import make_subplots

    from mlkkr.data.schema import nuclear_term
    from mlkkr.models.potential_radial import RadialPotentialModel
    from mlkkr.train.potential_radial import superposition_baseline

    order = sorted(range(len(rows)), key=lambda k: rows[k]["model_leave_one_pair_out"]["screened_relative_rmse"])
    k = order[len(order) // 2]
    pair = pairs[k]
    a = int(pair.defects[0])
    centres = pair.positions[pair.defects]
    shared = [i for i in range(len(pair.z)) if i not in pair.defects
              and np.all(np.linalg.norm(centres - pair.positions[i], axis=1) < 2.6)]
    b = shared[0] if shared else int(pair.defects[1])
    curves = {"KKRimp pair": pair.delta_v, "superposition of the singles": superposition_baseline(pair, singles),
              "ML-ES fitted on singles": RadialPotentialModel(cfg).fit(singles).predict_atoms(pair),
              "ML-ES fitted on singles + other pairs": RadialPotentialModel(cfg).fit(
                  singles + [p for j, p in enumerate(pairs) if j != k]).predict_atoms(pair)}
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"{pair.species[a]} site: full ΔV outside the core", f"{pair.species[b]} next to both impurities: ΔV"))
    for n, (name, v) in enumerate(curves.items()):
        style = {"dash": ["solid", "dot", "dashdot", "dash"][n],
                 "color": ["#222222", "#1f77b4", "#ff7f0e", "#d62728"][n]}
        out = pair.r[a] >= 0.3
        full = v[a][out] + nuclear_term(pair.r[a][out], pair.z[a] - pair.host_z[a])
        fig.add_scatter(x=pair.r[a][out], y=full, name=name, line=style, legendgroup=name, row=1, col=1)
        fig.add_scatter(x=pair.r[b], y=v[b] * 1e3, name=name, line=style, legendgroup=name, showlegend=False,
                        row=1, col=2)
    fig.update_xaxes(title_text="r (Å)")
    fig.update_yaxes(title_text="ΔV (eV)", row=1, col=1)
    fig.update_yaxes(title_text="ΔV (meV)", row=1, col=2)
    fig.update_layout(title=f"{pair.impurity} nearest-neighbour pair in {pair.host}, held out", template="plotly_white",
                      width=1200, height=480)
    save_figure(fig, "ml-es-pairs" + (f"-{tag}" if tag else ""))


if __name__ == "__main__":
    raise SystemExit(main())
