"""Training and held-out evaluation of the all-electron ML-ES model on real KKRimp data.

:func:`leave_one_element_out` is the test the science asks: for each impurity element, fit on the
embeddings of every *other* element and predict ΔV(r) of the held-out one on its own radial meshes
(all cluster atoms). The reference it must beat is :func:`nearest_element_baseline`: the profile of
the element nearest in the periodic table (same period, closest group), scaled by the ratio of the
extra nuclear charges ΔZ (linear response) — what a scientist would guess without a model; the
unscaled neighbour's profile is reported too. Unconverged embeddings are flagged and left out of
training and evaluation unless ``include_unconverged``; a host-in-host embedding (no defect) is used
for training but not held out (its ΔV is the KKRimp/KKRhost difference, ≈ 0: a relative error of it
means nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlkkr.data.schema import RadialEmbedding
from mlkkr.errors import InputError
from mlkkr.models.potential_radial import RadialConfig, RadialPotentialModel, errors, group_period


def usable(records: Sequence[RadialEmbedding], include_unconverged: bool = False
           ) -> tuple[list[RadialEmbedding], list[dict[str, Any]]]:
    """The records to learn from, and one entry per record left out saying why."""
    keep, skipped = [], []
    for k, rec in enumerate(records):
        if not rec.converged and not include_unconverged:
            skipped.append({"record": k, "impurity": rec.impurity,
                            "reason": f"not converged (rms {rec.rms:.3g}); include_unconverged to use it"})
        else:
            keep.append(rec)
    return keep, skipped


def nearest_element_baseline(held: RadialEmbedding, others: Sequence[RadialEmbedding], scaled: bool = True
                             ) -> list[np.ndarray]:
    """ΔV of the embedding whose impurity is nearest in the periodic table (same period first, then the
    closest group; one that differs from the host), interpolated onto the held-out record's meshes atom by
    atom; ``scaled``: multiplied by ΔZ_held / ΔZ_neighbour (linear response to the extra nuclear charge)."""
    if len(held.defects) != 1:
        raise InputError("record", held.impurity, reason="the baseline is defined for single impurities")
    g0, p0 = group_period(held.z[held.defects[0]])

    def distance(rec: RadialEmbedding) -> tuple[int, int, float]:
        if len(rec.defects) != 1 or len(rec.z) != len(held.z):
            return (99, 99, 0.0)
        g, p = group_period(rec.z[rec.defects[0]])
        return (abs(p - p0), abs(g - g0), rec.z[rec.defects[0]])

    best = min(others, key=distance)
    if distance(best)[0] == 99:
        raise InputError("records", held.impurity, reason="no single impurity of the same cluster shape to compare")
    k0, kb = held.defects[0], best.defects[0]
    factor = (held.z[k0] - held.host_z[k0]) / (best.z[kb] - best.host_z[kb]) if scaled else 1.0
    return [factor * np.interp(r, rb, vb) for r, rb, vb in zip(held.r, best.r, best.delta_v, strict=True)]


def superposition_baseline(pair: RadialEmbedding, singles: Sequence[RadialEmbedding], tol: float = 1e-3
                           ) -> list[np.ndarray]:
    """ΔV of a cluster with several impurities as the sum of the single embeddings' ΔV (first order in the
    perturbations): each cluster atom gets, from every defect X of ``pair``, the ΔV that X's single
    embedding has on the atom at the same position relative to X (the defect's own site included), on
    the atom's mesh; nothing where X's cluster has no atom there. The reference a pair model must beat:
    what is not additive is what pairs teach. The singles must be in the same host and frame."""
    by_element = {}
    for rec in singles:
        if len(rec.defects) == 1 and rec.host == pair.host:
            by_element.setdefault(rec.species[rec.defects[0]], rec)
    out = [np.zeros_like(v) for v in pair.delta_v]
    for x in pair.defects:
        single = by_element.get(pair.species[x])
        if single is None:
            raise InputError("records", pair.impurity, reason=f"no single embedding of {pair.species[x]} in "
                                                              f"{pair.host} to superpose")
        rel = single.positions - single.positions[single.defects[0]]
        for i in range(len(pair.z)):
            d = np.linalg.norm(rel - (pair.positions[i] - pair.positions[x]), axis=1)
            j = int(np.argmin(d))
            if d[j] < tol:
                out[i] = out[i] + np.interp(pair.r[i], single.r[j], single.delta_v[j])
    return out


def leave_one_element_out(records: Sequence[RadialEmbedding], config: RadialConfig | None = None, *,
                          include_unconverged: bool = False,
                          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per held-out element: relative RMSE of the model and of the baseline; and the summary over elements."""
    data, skipped = usable(records, include_unconverged)
    labels = [rec.impurity for rec in data]
    # the elements of each record's defects: a held-out element leaves training with every record holding it
    # (its pairs too), so nothing of it is seen; the test is its single embedding
    holds = [rec.impurity_elements for rec in data]
    held_out = [lab for lab in dict.fromkeys(labels) if lab != "host" and "+" not in lab
                and sum(1 for h in holds if lab not in h) >= 3]
    if not held_out:
        raise InputError("data", len(data), reason="need at least 4 usable embeddings of different elements")
    rows = []
    for lab in held_out:
        t0 = time.perf_counter()
        train = [r for r, h in zip(data, holds, strict=True) if lab not in h]
        test = [r for r, x in zip(data, labels, strict=True) if x == lab]
        model = RadialPotentialModel(config).fit(train)
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        preds = [model.predict_atoms(r) for r in test]
        predict_s = (time.perf_counter() - t1) / len(test)
        row: dict[str, Any] = {"element": lab, "z": float(test[0].z[test[0].defects[0]]) if len(test[0].defects) else 0,
                               "model": errors(test, preds), "alpha": model.alpha_, "degree": model.degree_,
                               "basis_floor": model.info["basis_floor_relative_rmse"],
                               "fit_seconds": fit_s, "predict_seconds": predict_s}
        for name, scaled in (("baseline", True), ("baseline_unscaled", False)):
            try:
                row[name] = errors(test, [nearest_element_baseline(r, train, scaled) for r in test])
            except InputError as exc:
                row[name] = {"error": str(exc)}
        rows.append(row)
        if log:
            b = row["baseline"].get("all_relative_rmse", float("nan"))
            log(f"{lab:>3}: model {row['model']['all_relative_rmse']:.4f}, nearest element {b:.4f}")
    rel = np.array([r["model"]["all_relative_rmse"] for r in rows])
    scr = np.array([r["model"]["screened_relative_rmse"] for r in rows])
    base = np.array([r["baseline"].get("all_relative_rmse", np.nan) for r in rows])
    base_scr = np.array([r["baseline"].get("screened_relative_rmse", np.nan) for r in rows])
    return {"per_element": rows, "skipped": skipped, "n_records": len(data),
            "summary": {"median_relative_rmse": float(np.median(rel)), "mean_relative_rmse": float(rel.mean()),
                        "max_relative_rmse": float(rel.max()), "worst": rows[int(rel.argmax())]["element"],
                        "fraction_within_5_percent": float(np.mean(rel <= 0.05)),
                        "baseline_median_relative_rmse": float(np.nanmedian(base)),
                        "median_screened_relative_rmse": float(np.median(scr)),
                        "max_screened_relative_rmse": float(scr.max()),
                        "baseline_median_screened_relative_rmse": float(np.nanmedian(base_scr)),
                        "n_held_out": len(rows)}}
