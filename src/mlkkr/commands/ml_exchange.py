"""``mlkkr train exchange`` · ``mlkkr predict exchange`` · ``mlkkr evaluate MODEL`` (kind "exchange").

torch and e3nn are imported inside the commands, so listing commands stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mlkkr.commands._common import emit, handle_errors, json_option
from mlkkr.errors import InputError


def _floats(value: str, field: str, n: int) -> list[float]:
    try:
        out = [float(x) for x in value.split(",")]
    except ValueError:
        raise InputError(field, value, allowed=f"{n} comma-separated numbers") from None
    if len(out) != n:
        raise InputError(field, value, allowed=f"{n} comma-separated numbers")
    return out


def _read_data(path: str) -> tuple[list[Any], str]:
    from mlkkr.data.h5io import file_sha256, read_exchange

    if not Path(path).is_file():
        raise InputError("--data", path, reason="no such file")
    return read_exchange(path), file_sha256(path)


@click.command("exchange")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Training data: HDF5 of exchange pairs (mlkkr data exchange / from-archive).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--epochs", default=300, show_default=True, help="Most epochs.")
@click.option("--batch-size", default=32, show_default=True, help="Pairs per optimisation step.")
@click.option("--lr", default=3e-3, show_default=True, help="Adam learning rate (halved on plateaus).")
@click.option("--patience", default=25, show_default=True, help="Early stopping: epochs without improvement.")
@click.option("--seed", default=0, show_default=True, help="Seed of weights, shuffling and the split.")
@click.option("--split", default="0.8,0.1,0.1", show_default=True,
              help="Train,val,test fractions; whole environments go to one split.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float64"]))
@click.option("--mul", default=8, show_default=True, help="Channels per irrep.")
@click.option("--layers", default=1, show_default=True, help="Message layers.")
@click.option("--latent", default=32, show_default=True, help="Width of the scalar MLPs.")
@click.option("--r-env", default=9.0, show_default=True, help="Other defects within this distance (Å) of i or j.")
@click.option("--r-host", default=4.5, show_default=True, help="Host atoms within this distance (Å) of i or j.")
@click.option("--achiral", is_flag=True,
              help="No pseudoscalar channels: fully O(3)-equivariant (centrosymmetric hosts).")
@click.option("--loss-weights", default="1,1,1", show_default=True, help="Weights of J, D, S in the loss.")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also fit the distance-and-species kernel-ridge baseline.")
@click.option("--resume", is_flag=True, help="Continue an interrupted training in OUTPUT from its checkpoint.")
@click.option("--init-from", default=None, type=click.Path(exists=True, file_okay=False),
              help="Fine-tune this trained model folder (e.g. engine-trained) on DATA: its architecture is "
                   "kept (--mul/--layers/--latent/--r-* ignored), new species start as its host label.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option("--threads", default=None, type=int, help="CPU threads for torch [default: torch's choice].")
@json_option
@handle_errors
def train_cmd(data_path: str, output: str, epochs: int, batch_size: int, lr: float, patience: int, seed: int,
              split: str, device: str, dtype: str, mul: int, layers: int, latent: int, r_env: float,
              r_host: float, achiral: bool, loss_weights: str, baseline: bool, resume: bool, init_from: str | None,
              progress: bool, threads: int | None, as_json: bool) -> None:
    """Train the e3nn exchange model on DATA into the model folder OUTPUT.

    Validation after every epoch, early stopping, an atomic checkpoint after every epoch
    (`--resume` continues after a kill), and the distance-only baseline on the same split.
    """
    import torch

    from mlkkr.models.exchange import ExchangeModelConfig
    from mlkkr.train.exchange import TrainConfig, fit

    for name, v, lo in (("--mul", mul, 1), ("--layers", layers, 1), ("--latent", latent, 4)):
        if v < lo:
            raise InputError(name, v, allowed=f"an integer >= {lo}")
    for name, v in (("--r-env", r_env), ("--r-host", r_host)):
        if not v >= 0:
            raise InputError(name, v, allowed="a distance >= 0 (Å)")
    if threads is not None:
        if threads < 1:
            raise InputError("--threads", threads, allowed="an integer >= 1")
        torch.set_num_threads(threads)
    w = _floats(loss_weights, "--loss-weights", 3)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                      split=_floats(split, "--split", 3), device=device, dtype=dtype,
                      loss_weights={"J": w[0], "D": w[1], "S": w[2]}, baseline=baseline)
    cfg.validate()
    mcfg = ExchangeModelConfig(species=[], r_env=r_env, r_host=r_host, mul=mul, latent=latent, layers=layers,
                               chiral=not achiral)
    pairs, sha = _read_data(data_path)
    log = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))
    result = fit(pairs, output, mcfg, cfg, data_sha256=sha, resume=resume, progress=progress and not as_json,
                 log=log, init_from=init_from)
    meta = result.meta
    summary = {"model": str(result.folder), "best_epoch": meta["best_epoch"], "epochs_run": meta["epochs_run"],
               "stopped": meta["stopped"], "seconds_per_epoch": meta["seconds_per_epoch"], "device": meta["device"],
               "split": meta["data"]["split"], "metrics": meta["metrics"]}
    emit(summary, as_json, _human_train)


def _human_train(s: dict[str, Any]) -> str:
    from mlkkr.train.exchange_metrics import format_table

    lines = [f"model: {s['model']}  (best epoch {s['best_epoch']} of {s['epochs_run']}; {s['stopped']}; "
             f"{s['seconds_per_epoch']:.1f} s/epoch on {s['device']})"]
    m = s["metrics"]
    if "test" in m:
        tables = {"e3nn": m["test"]}
        if "baseline_test" in m:
            tables["baseline"] = m["baseline_test"]
        lines += ["held-out test split:", format_table(tables)]
    return "\n".join(lines)


@click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False), help="HDF5 of exchange pairs.")
@click.option("--split", default="auto", show_default=True,
              type=click.Choice(["auto", "test", "val", "train", "all"]),
              help="auto: the model's held-out test split if DATA is its training file, else all records.")
@click.option("--plots", "plots_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for the parity plots (HTML + PNG) [default: MODEL/plots].")
@click.option("--no-plots", is_flag=True, help="Skip the parity plots.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@json_option
@handle_errors
def evaluate_cmd(model: str, data_path: str, split: str, plots_dir: str | None, no_plots: bool, device: str,
                 as_json: bool) -> None:
    """MAE, RMSE and R² (meV) of J, each D component and S, for the model and the baseline; parity plots."""
    from mlkkr.train.exchange import choose_split, evaluate, load_model

    loaded = load_model(model, device)
    pairs, sha = _read_data(data_path)
    idx, what = choose_split(loaded, pairs, sha, split)
    res = evaluate(loaded, pairs, idx)
    out: dict[str, Any] = {"model": model, "data": data_path, "selection": what, "n": res["n"],
                           "metrics": res["tables"]}
    if not no_plots:
        from mlkkr.train.exchange_plots import parity_figure, write_parity

        fig = parity_figure(res["true"], res["pred"], title=f"{Path(model).name}: {what} ({res['n']} pairs)")
        out["plots"] = write_parity(fig, plots_dir or Path(model) / "plots")
    emit(out, as_json, _human_eval)


def _human_eval(s: dict[str, Any]) -> str:
    from mlkkr.train.exchange_metrics import format_table

    lines = [f"{s['model']} on {s['data']}: {s['selection']}, {s['n']} pairs", format_table(s["metrics"])]
    if "plots" in s:
        p = s["plots"]
        lines.append(f"parity plots: {p['html']}" + (f", {p['png']}" if p.get("png") else
                                                      f" (no PNG: {p.get('png_error')})"))
    return "\n".join(lines)


def _pairs_from_json(path: Path, model: Any) -> list[Any]:
    """Pairs from a JSON file ``{"pairs": [{host, species_i, species_j, position_i, position_j,
    environment: [{species, position}], cell?}]}`` (Å); the host's cell defaults to the model's."""
    import numpy as np

    from mlkkr.data.schema import ExchangePair

    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError("INPUT", str(path), reason=f"cannot read JSON ({exc})") from None
    items = doc.get("pairs") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items:
        raise InputError("INPUT.pairs", items, reason="need a non-empty list of pairs")
    hosts = model.meta.get("hosts", {})
    out = []
    for r, it in enumerate(items):
        if not isinstance(it, dict):
            raise InputError(f"pairs[{r}]", it, reason="expected a table")
        allowed = {"host", "species_i", "species_j", "position_i", "position_j", "environment", "cell"}
        for key in it:
            if key not in allowed:
                raise InputError(f"pairs[{r}].{key}", it[key], allowed=sorted(allowed))
        for key in ("host", "species_i", "species_j", "position_i", "position_j"):
            if key not in it:
                raise InputError(f"pairs[{r}].{key}", None, reason="missing")
        host = str(it["host"])
        cell = it.get("cell", hosts.get(host))
        if cell is None:
            raise InputError(f"pairs[{r}].host", host, allowed=sorted(hosts),
                             reason="unknown host and no cell given")
        env = it.get("environment", [])
        try:
            pair = ExchangePair(host=host, species_i=str(it["species_i"]), species_j=str(it["species_j"]),
                                position_i=np.asarray(it["position_i"], float),
                                position_j=np.asarray(it["position_j"], float), tensor=np.zeros((3, 3)),
                                environment_species=[str(e["species"]) for e in env],
                                environment_positions=np.asarray([e["position"] for e in env], float).reshape(-1, 3),
                                cell=np.asarray(cell, float))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"pairs[{r}]", it, reason=f"malformed pair ({exc})") from None
        out.append(pair)
    return out


@click.command("exchange")
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Write the predictions: .h5 (mlkkr.exchange schema) or .json [default: print].")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@json_option
@handle_errors
def predict_cmd(model: str, input_path: str, output: str | None, device: str, as_json: bool) -> None:
    """Predict J_ij (meV) with MODEL for the pairs in INPUT (.h5 of exchange pairs, or .json).

    JSON input: {"pairs": [{"host": "ti", "species_i": "Fe", "species_j": "Mn", "position_i": [0,0,0],
    "position_j": [4.38,0,0], "environment": [{"species": "Sb", "position": [0,4.38,0]}]}]} (Å).
    """
    import numpy as np

    from mlkkr.greens.exchange import decompose
    from mlkkr.train.exchange import load_model

    loaded = load_model(model, device)
    path = Path(input_path)
    if not path.is_file():
        raise InputError("INPUT", input_path, reason="no such file")
    if path.suffix.lower() == ".json":
        pairs = _pairs_from_json(path, loaded)
    else:
        from mlkkr.data.h5io import read_exchange

        pairs = read_exchange(path)
    pred = loaded.predict(pairs)
    records = []
    for p, t in zip(pairs, pred, strict=True):
        dec = decompose(t)
        records.append({"species_i": p.species_i, "species_j": p.species_j, "distance_angstrom": p.distance,
                        "tensor_meV": t.tolist(), "J_meV": float(dec.J), "D_meV": dec.D.tolist(),
                        "S_meV": dec.S.tolist()})
    result: dict[str, Any] = {"model": model, "n": len(pairs)}
    if output:
        out = Path(output)
        if out.suffix.lower() == ".json":
            from mlkkr.train.exchange import write_json

            write_json(out, {"model": model, "pairs": records})
        elif out.suffix.lower() in (".h5", ".hdf5"):
            from mlkkr.data.h5io import write_exchange
            from mlkkr.data.schema import ExchangePair

            prov = {"source": "mlkkr predict exchange", "model": str(Path(model).resolve().name),
                    "model_data_sha256": loaded.meta["data"]["sha256"]}
            write_exchange(out, [ExchangePair(host=p.host, species_i=p.species_i, species_j=p.species_j,
                                              position_i=p.position_i, position_j=p.position_j, tensor=t,
                                              environment_species=p.environment_species,
                                              environment_positions=p.environment_positions, cell=p.cell,
                                              provenance=prov) for p, t in zip(pairs, pred, strict=True)],
                           {"source": "mlkkr predict exchange", "input": path.name, **prov})
        else:
            raise InputError("--output", output, allowed=[".h5", ".json"])
        result["output"] = str(out)
    else:
        result["pairs"] = records
    emit(result, as_json, lambda s: _human_predict(s, np))


def _human_predict(s: dict[str, Any], np: Any) -> str:
    if "output" in s:
        return f"{s['n']} predictions written to {s['output']}"
    lines = [f"{'#':>4} {'i':>3} {'j':>3} {'r/Å':>7} {'J/meV':>9}  D/meV"]
    for k, r in enumerate(s["pairs"]):
        d = np.round(r["D_meV"], 4).tolist()
        lines.append(f"{k:>4} {r['species_i']:>3} {r['species_j']:>3} {r['distance_angstrom']:>7.3f} "
                     f"{r['J_meV']:>9.4f}  {d}")
    return "\n".join(lines)
