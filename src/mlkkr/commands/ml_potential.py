"""``mlkkr train potential``, ``mlkkr predict potential``, ``mlkkr evaluate MODEL`` (kind "potential").

The model is a folder: ``model.json`` (kind, mlkkr version, descriptor and ridge hyper-parameters,
species, metrics, training-data checksum) and ``weights.npz``. ΔV in eV, positions in Å.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from mlkkr.commands._common import emit, handle_errors, json_option
from mlkkr.errors import InputError


def _alphas(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(x) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise InputError("--alphas", text, reason="expected comma-separated numbers") from None
    if not vals:
        raise InputError("--alphas", text, reason="expected at least one number")
    return vals


def _read_data(path: str) -> list[Any]:
    from mlkkr.data.h5io import read_embeddings

    if not Path(path).is_file():
        raise InputError("--data", path, reason="no such file")
    return read_embeddings(path)


def _bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="emb", disable=not enabled, leave=False)


def _fmt_errors(e: dict[str, Any]) -> str:
    return (f"MAE {e['mae_eV']:.4g} eV, RMSE {e['rmse_eV']:.4g} eV, relative RMSE {e['relative_rmse']:.4g} "
            f"({e['n_points']} points)")


def _human_metrics(title: str, m: dict[str, Any]) -> list[str]:
    lines = [f"{title}: {_fmt_errors(m)}"]
    if "off_defect" in m:
        lines.append(f"  host sites only: {_fmt_errors(m['off_defect'])}")
    if "screening" in m:
        lines.append(f"  screening part ΔV − V_bare: relative RMSE {m['screening']['relative_rmse']:.4g}")
    for sp, e in m.get("by_nearest_defect", {}).items():
        lines.append(f"  nearest defect {sp:>4}: RMSE {e['rmse_eV']:.4g} eV, MAE {e['mae_eV']:.4g} eV "
                     f"({e['n_points']} points)")
    return lines


@click.command("potential")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Embedding dataset (HDF5 from `mlkkr data potential`).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--cutoff", type=float, default=None,
              help="Descriptor cutoff (Å) [default: twice the largest grid-point-to-nearest-defect distance].")
@click.option("--n-max", default=8, show_default=True, help="Jacobi order of the 2-body terms.")
@click.option("--n-max3", default=2, show_default=True, help="Jacobi order of the 3-body terms.")
@click.option("--l-max", default=2, show_default=True, help="Legendre order of the 3-body terms.")
@click.option("--body-order", default=3, show_default=True, help="1, 2 or 3.")
@click.option("--alpha", "jacobi_alpha", default=0.0, show_default=True, help="Jacobi parameter α (> −1).")
@click.option("--beta", "jacobi_beta", default=0.0, show_default=True, help="Jacobi parameter β (> −1).")
@click.option("--host-atoms/--no-host-atoms", default=False, show_default=True,
              help="Let grid points also see the host lattice sites (species channel 'host').")
@click.option("--alphas", "alphas_text", default=None,
              help="Ridge strengths to choose from by CV, comma-separated [default: 1e-10 … 1e6, 33 values].")
@click.option("--folds", default=5, show_default=True, help="Cross-validation folds (groups = embeddings).")
@click.option("--test-fraction", default=0.2, show_default=True, help="Fraction of embeddings held out.")
@click.option("--seed", default=0, show_default=True, help="Seed of the train/test split.")
@click.option("--force", is_flag=True, help="Replace an existing model folder.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@json_option
@handle_errors
def train_cmd(data_path: str, output: str, cutoff: float | None, n_max: int, n_max3: int, l_max: int,
              body_order: int, jacobi_alpha: float, jacobi_beta: float, host_atoms: bool, alphas_text: str | None,
              folds: int, test_fraction: float, seed: int, force: bool, progress: bool, as_json: bool) -> None:
    """Train a JL ridge model of ΔV (eV) on an embedding dataset; write the model folder."""
    from mlkkr import __version__
    from mlkkr.data.h5io import file_sha256, read_parameters
    from mlkkr.models.potential import DEFAULT_ALPHAS
    from mlkkr.train.potential import train_potential

    out = Path(output)
    if out.exists() and not force:
        raise InputError("--output", output, reason="exists; pass --force to replace it")
    records = _read_data(data_path)
    alphas = _alphas(alphas_text) or list(DEFAULT_ALPHAS)
    host_species = "host" if host_atoms else None
    t0 = time.perf_counter()
    with _bar(len(records), progress and not as_json, "descriptors") as bar:
        model, rep = train_potential(records, cutoff=cutoff, n_max=n_max, l_max=l_max, n_max3=n_max3,
                                     alpha=jacobi_alpha, beta=jacobi_beta, body_order=body_order,
                                     host_species=host_species, alphas=alphas, n_folds=folds,
                                     test_fraction=test_fraction, seed=seed, progress=bar.update)
    seconds = time.perf_counter() - t0
    try:
        data_params = read_parameters(data_path)
    except Exception:  # noqa: BLE001 - optional metadata
        data_params = {}
    meta = {
        "metrics": {k: rep[k] for k in ("train", "test") if k in rep},
        "split": rep["split"], "environment": rep["environment"],
        "training_data": {"file": Path(data_path).name, "sha256": file_sha256(data_path),
                          "n_embeddings": len(records), "n_points": int(sum(len(r.grid) for r in records)),
                          "parameters": data_params},
        "timings_s": {"total": round(seconds, 3), "fit": round(rep["fit_seconds"], 3)},
        "command": "mlkkr train potential", "trained_with": __version__,
    }
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        model.save(tmp, meta)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = {"model": str(out), "n_features": model.descriptor.n_features, "alpha": model.alpha_,
               "descriptor": model.params.to_dict(), **meta["metrics"], "split": rep["split"],
               "seconds": round(seconds, 3)}
    emit(summary, as_json, _human_train)


def _human_train(s: dict[str, Any]) -> str:
    d = s["descriptor"]
    lines = [f"wrote {s['model']}: {s['n_features']} JL features (body order {d['body_order']}, n_max {d['n_max']}, "
             f"l_max {d['l_max']}, cutoff {d['cutoff']} Å), ridge alpha {s['alpha']:.3g} (CV)"]
    lines += _human_metrics("train", s["train"])
    if "test" in s:
        lines += _human_metrics(f"test ({s['split']['n_test_embeddings']} held-out embeddings)", s["test"])
    return "\n".join(lines)


def _load(model_path: str) -> tuple[Any, dict[str, Any]]:
    from mlkkr.models.potential import PotentialModel

    return PotentialModel.load(model_path)


@click.command("potential")
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the predictions: an HDF5 embedding file (ΔV replaced by the prediction) for an .h5 "
                   "INPUT, a JSON file for a .json INPUT.")
@json_option
@handle_errors
def predict_cmd(model: str, input_path: str, output: str | None, as_json: bool) -> None:
    """Predict ΔV (eV) with MODEL on the grid points of INPUT.

    INPUT is an embedding dataset (.h5) or a JSON file
    {"species": [...], "positions": [[x, y, z], ...], "grid": [[x, y, z], ...], "cell": [[...], ...]}
    (Å; "cell", the host lattice vectors, only for a model trained with --host-atoms).
    """
    import numpy as np

    from mlkkr.data.schema import ImpurityEmbedding
    from mlkkr.train.potential import environment

    mdl, meta = _load(model)
    host_species = meta.get("environment", {}).get("host_species")
    path = Path(input_path)
    if not path.is_file():
        raise InputError("INPUT", input_path, reason="no such file")
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError("INPUT", input_path, reason=f"not JSON: {exc}") from None
        for key in ("species", "positions", "grid"):
            if key not in doc:
                raise InputError(f"INPUT:{key}", None, reason="missing; the JSON needs species, positions, grid")
        if host_species is not None and "cell" not in doc:
            raise InputError("INPUT:cell", None, reason="this model sees host atoms: give the host lattice vectors")
        records = [ImpurityEmbedding(host="input", species=doc["species"], positions=doc["positions"],
                                     grid=doc["grid"], delta_v=np.zeros(len(doc["grid"])),
                                     cell=doc.get("cell", np.eye(3)))]
    else:
        records = _read_data(input_path)
    preds = []
    for rec in records:
        pos, sp = environment(rec, mdl.params.cutoff, host_species)
        preds.append(mdl.predict_points(rec.grid, pos, sp))
    result: dict[str, Any] = {"model": model, "input": input_path, "n_embeddings": len(records),
                              "n_points": int(sum(len(p) for p in preds)), "units": "eV"}
    if output is not None:
        if path.suffix == ".json":
            Path(output).write_text(json.dumps({"delta_v_eV": preds[0].tolist()}) + "\n")
        else:
            from mlkkr.data.h5io import read_parameters, write_embeddings

            for rec, p in zip(records, preds, strict=True):
                rec.delta_v = p
            params = {"predicted_by": {"model": Path(model).name, "model_json": meta.get("training_data", {})},
                      "source_parameters": read_parameters(input_path)}
            write_embeddings(output, records, params)
        result["output"] = output
    else:
        result["delta_v_eV"] = [p.tolist() for p in preds]
    emit(result, as_json, _human_predict)


def _human_predict(s: dict[str, Any]) -> str:
    if "output" in s:
        return f"predicted ΔV on {s['n_points']} grid points of {s['n_embeddings']} embeddings; wrote {s['output']}"
    return "\n".join(" ".join(f"{v:.6g}" for v in p) for p in s["delta_v_eV"])


@click.command("evaluate")
@click.argument("model", type=click.Path(file_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Embedding dataset (HDF5) with true ΔV.")
@click.option("--progress/--no-progress", default=False, show_default=True, help="Progress bar on stderr.")
@json_option
@handle_errors
def evaluate_cmd(model: str, data_path: str, progress: bool, as_json: bool) -> None:
    """Errors of a potential MODEL on a dataset: MAE, RMSE, relative RMSE (eV), per nearest-defect species."""
    from mlkkr.data.h5io import file_sha256
    from mlkkr.train.potential import evaluate

    mdl, meta = _load(model)
    records = _read_data(data_path)
    host_species = meta.get("environment", {}).get("host_species")
    with _bar(len(records), progress and not as_json, "evaluate") as bar:
        res = evaluate(mdl, records, host_species, progress=bar.update)
    sha = file_sha256(data_path)
    res["data"] = {"file": data_path, "sha256": sha,
                   "is_training_data": sha == meta.get("training_data", {}).get("sha256")}
    res["model"] = model
    emit(res, as_json, lambda s: "\n".join(_human_metrics(f"{s['model']} on {s['data']['file']}", s)))
