"""``mlkkr train|evaluate|predict potential-radial``: the all-electron ML-ES model on real KKRimp ΔV(r).

Data: an ``mlkkr.radial`` file (``mlkkr data from-group`` / ``from-archive --kind potential`` after an impurity
series). The model (:mod:`mlkkr.models.potential_radial`) is a folder with ``model.json`` (kind
``potential-radial``) and ``weights.npz`` (no pickle).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import numpy as np

from mlkkr.commands._common import emit, handle_errors, json_option
from mlkkr.errors import InputError


def _records(path: str) -> list[Any]:
    from mlkkr.data.h5io import read_radial

    if not Path(path).is_file():
        raise InputError("--data", path, reason="no such file")
    return read_radial(path)


def _pct(x: float | None) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{100 * x:.2f} %"


@click.command("potential-radial")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="mlkkr.radial HDF5 of real impurity embeddings (mlkkr data from-group GROUP).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--n-radial", default=24, show_default=True, help="Log-Chebyshev radial functions per atom.")
@click.option("--n-max", default=4, show_default=True, help="Jacobi order of the two-body term.")
@click.option("--pair-terms", is_flag=True,
              help="Add the defect–defect term (trained only by data with impurity pairs).")
@click.option("--include-unconverged", is_flag=True, help="Also learn from embeddings whose KKRimp did not converge.")
@click.option("--loeo/--no-loeo", default=True, show_default=True,
              help="Also measure leave-one-element-out errors (one fit per element) into model.json.")
@json_option
@handle_errors
def train_cmd(data_path: str, output: str, n_radial: int, n_max: int, pair_terms: bool, include_unconverged: bool,
              loeo: bool, as_json: bool) -> None:
    """Fit the radial Jacobi–Legendre model of ΔV(r) on real KKRimp embeddings (the nuclear term is exact)."""
    from mlkkr.data.h5io import file_sha256
    from mlkkr.models.potential_radial import RadialConfig, RadialPotentialModel
    from mlkkr.train.potential_radial import leave_one_element_out, usable

    folder = Path(output)
    if (folder / "model.json").exists():
        raise InputError("output", output, reason="a model already exists there; choose another folder")
    records = _records(data_path)
    data, skipped = usable(records, include_unconverged)
    if not data:
        raise InputError("--data", data_path, reason="no usable embedding: " + "; ".join(
            f"{s.get('impurity', '?')}: {s.get('reason', '')}" for s in skipped))
    cfg = RadialConfig(n_radial=n_radial, n_max=n_max, pair_terms=pair_terms)
    model = RadialPotentialModel(cfg).fit(data)
    metrics: dict[str, Any] = {}
    if loeo and len({r.impurity for r in data if "+" not in r.impurity}) >= 4:
        res = leave_one_element_out(data, cfg)
        metrics = {"leave_one_element_out": res["summary"],
                   "per_element": {r["element"]: r["model"]["all_relative_rmse"] for r in res["per_element"]}}
    model.save(folder, {"data": {"sha256": file_sha256(data_path), "n_records": len(records), "n_used": len(data),
                                 "elements": [r.impurity for r in data], "hosts": sorted({r.host for r in data}),
                                 "skipped": skipped}, "metrics": metrics})
    emit({"model": str(folder), "elements": [r.impurity for r in data], "skipped": skipped, "metrics": metrics,
          "degree": model.degree_, "alpha": model.alpha_}, as_json, _human_train)


def _human_train(s: dict[str, Any]) -> str:
    lines = [f"model: {s['model']}  ({len(s['elements'])} embeddings: {', '.join(s['elements'])}; "
             f"chemistry degree {s['degree']}, ridge alpha {s['alpha']:.3g})"]
    if s["skipped"]:
        lines.append(f"skipped: {len(s['skipped'])} ({'; '.join(x.get('reason', '') for x in s['skipped'])})")
    loeo = s["metrics"].get("leave_one_element_out")
    if loeo:
        lines.append(f"leave-one-element-out relative RMSE: median {_pct(loeo['median_relative_rmse'])}, worst "
                     f"{loeo['worst']} {_pct(loeo['max_relative_rmse'])} (nearest element: "
                     f"{_pct(loeo['baseline_median_relative_rmse'])})")
    return "\n".join(lines)


def _load(model_path: str) -> tuple[Any, dict[str, Any]]:
    from mlkkr.models.potential_radial import RadialPotentialModel

    model = RadialPotentialModel.load(model_path)
    return model, json.loads((Path(model_path) / "model.json").read_text())


@click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False), help="mlkkr.radial HDF5.")
@json_option
@handle_errors
def evaluate_cmd(model: str, data_path: str, as_json: bool) -> None:
    """Relative RMSE of ΔV(r) per embedding of DATA (all mesh points, near the nucleus, at the cell boundary,
    the screened part); elements the model was not trained on are marked held out."""
    from mlkkr.models.potential_radial import errors

    mdl, meta = _load(model)
    trained = set(meta.get("data", {}).get("elements", []))
    keys = ("all_relative_rmse", "near_nucleus_relative_rmse", "cell_boundary_relative_rmse", "screened_relative_rmse")
    rows = []
    for rec in _records(data_path):
        e = errors([rec], [mdl.predict_atoms(rec)])
        rows.append({"element": rec.impurity, "host": rec.host, "atoms": len(rec.z),
                     "held_out": rec.impurity not in trained, **{k: e[k] for k in keys if k in e}})
    emit({"model": model, "data": data_path, "records": rows}, as_json, _human_evaluate)


def _human_evaluate(s: dict[str, Any]) -> str:
    lines = [f"{'element':8s} {'atoms':>5s} {'all':>9s} {'nucleus':>9s} {'boundary':>9s} {'screened':>9s}"]
    for r in s["records"]:
        lines.append(f"{r['element'] + (' *' if r['held_out'] else ''):8s} {r['atoms']:5d} "
                     f"{_pct(r.get('all_relative_rmse')):>9s} {_pct(r.get('near_nucleus_relative_rmse')):>9s} "
                     f"{_pct(r.get('cell_boundary_relative_rmse')):>9s} {_pct(r.get('screened_relative_rmse')):>9s}")
    lines.append("relative RMSE of ΔV(r); * not in the model's training data")
    return "\n".join(lines)


@click.command("potential-radial")
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--like", "template", required=True, type=click.Path(dir_okay=False),
              help="mlkkr.radial HDF5 whose embedding gives the cluster and the radial meshes (same host).")
@click.option("--index", default=0, show_default=True, help="Which embedding of --like.")
@click.option("--element", required=True, help="The impurity to predict (put on the template's impurity sites).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the prediction: .h5 (mlkkr.radial, ΔV = the prediction) or .json.")
@json_option
@handle_errors
def predict_cmd(model: str, template: str, index: int, element: str, output: str | None, as_json: bool) -> None:
    """Predict ΔV(r) of ELEMENT embedded like the --like embedding (its cluster, its radial meshes)."""
    from ase.data import atomic_numbers

    from mlkkr.data.schema import RadialEmbedding

    mdl, _ = _load(model)
    records = _records(template)
    if not 0 <= index < len(records):
        raise InputError("--index", index, allowed=f"0 … {len(records) - 1}")
    if element not in atomic_numbers or element == "X":
        raise InputError("--element", element, reason="not an element symbol")
    like = records[index]
    if len(like.defects) == 0:
        raise InputError("--like", template, reason=f"embedding {index} has no impurity site to replace")
    z = like.z.copy()
    species = list(like.species)
    for a in like.defects:
        z[a], species[a] = atomic_numbers[element], element
    rec = RadialEmbedding(host=like.host, species=species, z=z, host_species=like.host_species, host_z=like.host_z,
                          positions=like.positions, r=like.r, delta_v=[np.zeros_like(r) for r in like.r],
                          cell=like.cell, converged=False,
                          provenance={"predicted_by": str(model), "template": f"{Path(template).name}[{index}]"})
    rec.delta_v = mdl.predict_atoms(rec)
    total = mdl.predict_total(rec)
    out = {"element": element, "host": rec.host, "template": rec.provenance["template"],
           "atoms": [{"species": s, "z": float(zz), "position": p.tolist(), "r_angstrom": r.tolist(),
                      "delta_v_ev": v.tolist(), "delta_v_total_ev": t.tolist()}
                     for s, zz, p, r, v, t in zip(species, z, rec.positions, rec.r, rec.delta_v, total, strict=True)]}
    if output:
        if output.endswith(".json"):
            dest = Path(output)
            if not dest.parent.is_dir():
                raise InputError("output", output, reason=f"folder {str(dest.parent)!r} does not exist")
            tmp = dest.with_name(f".{dest.name}.tmp")
            tmp.write_text(json.dumps(out))
            os.replace(tmp, dest)
        else:
            from mlkkr.data.h5io import write_radial

            write_radial(output, [rec], {"predicted_by": str(model)})
    emit({**out, "output": output} if as_json else out, as_json,
         lambda s: f"ΔV(r) of {element} in {s['host']} predicted on {len(s['atoms'])} atoms "
                   f"(meshes of {s['template']})" + (f" → {output}" if output else ""))
