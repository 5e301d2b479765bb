"""The ML training app's model: datasets, hyper-parameters, the training job, its loss curve and results.

* Datasets: the profile's Groups that hold mlkkr datasets (:class:`~mlkkr.aiida.nodes.DatasetData`,
  e.g. made by ``mlkkr run dataset`` or imported from the shared store), and the store's published
  archives (imported on use; their Groups then appear).
* Training: :func:`mlkkr.aiida.launch.training_builder` — a ``TrainEvaluateWorkChain`` that merges
  the datasets, runs the training CalcJob (``mlkkr train <kind>``, restartable) and evaluates the model
  on its held-out test split — submitted to the daemon. The trained model is a
  :class:`~mlkkr.aiida.nodes.ModelData` node, linked to its data.
* Live loss curve: the training job writes a checkpoint after every epoch (``model/checkpoint.pt`` in
  its remote folder); :func:`loss_history` reads its history through the job's transport.
* Results: :func:`parity` recomputes the test-split predictions of the stored model for the parity
  plot; :func:`error_rows` formats the evaluation's error table (meV for exchange, eV for ΔV).
* Predict: :func:`predict_pair` runs the ``predict`` calcfunction on one pair given in the form.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlkkr.errors import InputError

KINDS = {"exchange": "exchange tensors J_ij (e3nn)", "potential": "impurity potential ΔV (JL ridge)"}


@dataclass(frozen=True)
class Hyper:
    """One hyper-parameter of the form: the ``mlkkr train <kind>`` option, its type, default and range."""

    name: str
    label: str
    kind: type
    default: float | int
    lo: float
    hi: float
    help: str = ""


HYPERS: dict[str, list[Hyper]] = {
    "exchange": [
        Hyper("epochs", "epochs", int, 100, 1, 100_000, "most epochs (early stopping may end sooner)"),
        Hyper("batch_size", "batch size", int, 32, 1, 100_000),
        Hyper("lr", "learning rate", float, 3e-3, 1e-6, 1.0),
        Hyper("mul", "channels per irrep", int, 16, 1, 512),
        Hyper("layers", "message layers", int, 2, 1, 8),
        Hyper("latent", "MLP width", int, 64, 4, 4096),
        Hyper("patience", "early-stopping patience", int, 25, 1, 100_000),
        Hyper("seed", "seed", int, 0, 0, 2**31 - 1),
    ],
    "potential": [
        Hyper("n_max", "Jacobi order (2-body)", int, 8, 1, 40),
        Hyper("l_max", "Legendre order (3-body)", int, 2, 0, 12),
        Hyper("body_order", "body order", int, 3, 1, 3),
        Hyper("test_fraction", "held-out fraction", float, 0.2, 0.05, 0.9),
        Hyper("seed", "seed", int, 0, 0, 2**31 - 1),
    ],
}


@dataclass
class TrainRequest:
    """What the form holds."""

    group: str | None = None
    kind: str | None = None  # taken from the datasets when None
    hyper: dict[str, Any] = field(default_factory=dict)
    code: Any = None
    walltime: int = 3600
    label: str = ""


# -------------------------------------------------------------------------------------------- datasets


def dataset_groups() -> list[dict[str, Any]]:
    """Groups holding mlkkr datasets: label, kind(s), number of files and of records."""
    from aiida import orm

    from mlkkr.aiida.nodes import DatasetData

    qb = orm.QueryBuilder()
    qb.append(orm.Group, tag="g", project=["label", "id"])
    qb.append(DatasetData, with_group="g", project=["attributes.kind", "attributes.n_records"])
    groups: dict[str, dict[str, Any]] = {}
    for label, pk, kind, n in qb.iterall():
        g = groups.setdefault(label, {"label": label, "pk": pk, "kinds": set(), "files": 0, "records": 0})
        g["kinds"].add(kind)
        g["files"] += 1
        g["records"] += int(n or 0)
    out = []
    for g in sorted(groups.values(), key=lambda g: g["pk"]):
        g["kinds"] = sorted(g["kinds"])
        out.append(g)
    return out


def group_label_text(g: dict[str, Any]) -> str:
    return f"{g['label']} — {'/'.join(g['kinds'])}, {g['records']} records in {g['files']} file(s)"


def check_hyper(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """Range-checked hyper-parameters, as ``mlkkr train <kind>`` options (checked by its own parser too)."""
    from mlkkr.aiida.cli_args import model_command, to_argv

    if kind not in HYPERS:
        raise InputError("kind", kind, allowed=list(HYPERS))
    out: dict[str, Any] = {}
    for h in HYPERS[kind]:
        value = values.get(h.name, h.default)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float) or \
                (h.kind is int and not float(value).is_integer()):
            raise InputError(f"hyper.{h.name}", value, allowed=f"{'an integer' if h.kind is int else 'a number'} "
                                                             f"from {h.lo:g} to {h.hi:g}")
        if not h.lo <= value <= h.hi:
            raise InputError(f"hyper.{h.name}", value, allowed=f"{h.lo:g} … {h.hi:g}")
        out[h.name] = h.kind(value)
    try:
        to_argv(model_command(kind, "train_cmd"), out, "hyper")
    except InputError as exc:
        raise exc from None
    return out


def datasets_of(group: str | None) -> tuple[str, dict[str, Any]]:
    """(kind, {name: DatasetData}) of a dataset group; InputError on field ``group``."""
    from mlkkr.aiida.launch import group_datasets

    if not group:
        raise InputError("group", group, reason="choose a dataset (a Group of mlkkr datasets, or import an archive)")
    try:
        datasets = group_datasets(group)
    except InputError as exc:
        raise InputError("group", group, reason=exc.reason) from None
    kinds = {d.kind for d in datasets.values()}
    if len(kinds) != 1:
        raise InputError("group", group, reason=f"holds datasets of several kinds {sorted(kinds)}; use one kind")
    kind = kinds.pop()
    if kind not in ("exchange", "potential"):
        raise InputError("group", group, reason=f"holds {kind} data (real KKRimp ΔV(r)): this app trains exchange and "
                         "engine potential models; fit it with mlkkr.models.potential_radial (notebook 8)")
    n = sum(d.n_records for d in datasets.values())
    if n < 10:
        raise InputError("group", group, reason=f"only {n} records: train, validation and test splits need at least 10")
    return kind, datasets


def check(request: TrainRequest) -> tuple[str, dict[str, Any], dict[str, Any], Any]:
    """(kind, datasets, train parameters, code) of a valid request; InputError naming the field otherwise."""
    from mlkkr.apps.kkr import resolve_code

    kind, datasets = datasets_of(request.group)
    if request.kind not in (None, kind):
        raise InputError("kind", request.kind, reason=f"the dataset holds {kind} data")
    params = check_hyper(kind, request.hyper)
    code = resolve_code(request.code, "mlkkr.train")
    if isinstance(request.walltime, bool) or not isinstance(request.walltime, int) or request.walltime < 1:
        raise InputError("walltime", request.walltime, allowed="a positive number of seconds")
    return kind, datasets, params, code


def submit(request: TrainRequest):
    """Check and submit the training work chain; returns its node."""
    from mlkkr.aiida.launch import job_options, launch, training_builder

    kind, datasets, params, code = check(request)
    evaluate = {"no_plots": True} if kind == "exchange" else {}
    builder = training_builder(datasets, code.computer, code=code, train_parameters=params,
                               evaluate_parameters=evaluate, options=job_options(walltime=request.walltime))
    builder.metadata.label = request.label or f"{kind} model on {request.group}"
    builder.metadata.description = "Submitted by the ML training app."
    node = launch(builder)
    node.base.extras.set_many({"mlkkr_app": "ml-training", "mlkkr_kind": kind, "mlkkr_group": request.group})
    return node


# --------------------------------------------------------------------------------------------- follow


def training_job(node):
    """The latest training CalcJob under a training work chain (None before it is created)."""
    from aiida import orm

    jobs = [n for n in node.called_descendants
            if isinstance(n, orm.CalcJobNode) and n.process_label == "TrainCalculation"]
    return max(jobs, key=lambda n: n.pk) if jobs else None


def loss_history(job) -> list[dict[str, Any]]:
    """Per-epoch history of a running or finished training job (empty when nothing is written yet).

    Read from the job's remote folder (``model/checkpoint.pt``, through the computer's transport) while
    it runs, from the stored model's ``history.json`` once it has finished.
    """
    import json

    if job is None:
        return []
    if "model" in job.outputs:
        try:
            return json.loads(job.outputs.model.base.repository.get_object_content("history.json"))
        except (FileNotFoundError, OSError, ValueError):
            return []
    if "remote_folder" not in job.outputs:
        return []
    with tempfile.TemporaryDirectory(prefix="mlkkr-ckpt-") as tmp:
        target = Path(tmp) / "checkpoint.pt"
        try:
            job.outputs.remote_folder.getfile("model/checkpoint.pt", str(target))
        except Exception:  # noqa: BLE001 - not written yet, or the transport is busy: try again later
            return []
        from mlkkr.train.exchange import load_checkpoint

        try:
            state = load_checkpoint(target)  # tensors and plain data only: nothing in the file runs
        except InputError:  # caught mid-write (or not a checkpoint): the next poll reads the next one
            return []
    return list(state.get("state", {}).get("history", []))


def loss_figure(history: list[dict[str, Any]] | None = None):
    """Plotly figure of training and validation loss per epoch."""
    import plotly.graph_objects as go

    history = history or []
    epochs = [h["epoch"] for h in history]
    fig = go.Figure([go.Scatter(x=epochs, y=[h["train_loss"] for h in history], mode="lines+markers", name="train"),
                     go.Scatter(x=epochs, y=[h["val_loss"] for h in history], mode="lines+markers",
                                name="validation")])
    fig.update_layout(title="Loss per epoch", xaxis_title="epoch", yaxis_title="loss", yaxis_type="log",
                      height=320, width=640, template="plotly_white", margin={"t": 40})
    return fig


# -------------------------------------------------------------------------------------------- results


def parity(node) -> dict[str, Any]:
    """Test-split predictions of the trained model: ``{"figure", "tables", "n", "kind"}``."""
    model_node = node.outputs.model
    dataset = node.outputs.dataset
    with tempfile.TemporaryDirectory(prefix="mlkkr-parity-") as tmp:
        folder = model_node.export(Path(tmp) / "model")
        records = dataset.records()
        if model_node.kind == "exchange":
            from mlkkr.train.exchange import choose_split, evaluate, load_model
            from mlkkr.train.exchange_plots import parity_figure

            model = load_model(folder)
            idx, what = choose_split(model, records, dataset.base.attributes.get("sha256"), "auto")
            result = evaluate(model, records, idx)
            fig = parity_figure(result["true"], result["pred"], title=f"Parity on the {what} ({result['n']} pairs)")
            fig.update_layout(width=1100, height=420)
            return {"figure": fig, "tables": result["tables"], "n": result["n"], "kind": "exchange"}
        return _parity_potential(folder, records)


def _parity_potential(folder: Path, records: list[Any]) -> dict[str, Any]:
    import plotly.graph_objects as go

    from mlkkr.models.potential import PotentialModel
    from mlkkr.train.potential import featurize
    from mlkkr.train.potential_metrics import errors

    model, meta = PotentialModel.load(folder)
    host = (meta.get("environment") or {}).get("host_species")
    data = featurize(records, model.descriptor, host)
    pred = model.predict(data.X)
    lo, hi = float(min(data.y.min(), pred.min())), float(max(data.y.max(), pred.max()))
    fig = go.Figure([go.Scattergl(x=data.y, y=pred, mode="markers", name="JL ridge", marker={"size": 4}),
                     go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "black"},
                                showlegend=False)])
    fig.update_layout(title=f"Parity of ΔV on all {len(data.y)} grid points", xaxis_title="true ΔV (eV)",
                      yaxis_title="predicted ΔV (eV)", width=560, height=420, template="plotly_white")
    return {"figure": fig, "tables": {"JL ridge": {"ΔV": errors(data.y, pred)}}, "n": len(data.y), "kind": "potential"}


def error_rows(tables: dict[str, dict[str, dict[str, float]]]) -> list[list[Any]]:
    """Rows ``[model, part, MAE, RMSE, R², std]`` of the error tables."""
    rows = []
    for model, table in tables.items():
        for part, row in table.items():
            rows.append([model, part, float(row.get("mae", np.nan)), float(row.get("rmse", np.nan)),
                         float(row.get("r2", np.nan)), float(row.get("std", np.nan))])
    return rows


def error_headers(kind: str) -> list[str]:
    unit = "meV" if kind == "exchange" else "eV"
    return ["model", "part", f"MAE ({unit})", f"RMSE ({unit})", "R²", f"std ({unit})"]


# -------------------------------------------------------------------------------------------- predict


def predict_pair(model_node, species_i: str, species_j: str, offset: tuple[int, int, int], host: str = "ti"):
    """Predicted tensor (3×3, meV) of one pair: ``species_j`` at ``offset`` lattice vectors from ``species_i``.

    Runs the ``predict`` calcfunction (so the prediction is linked to the model); returns (tensor, node).
    """
    from aiida import orm

    from mlkkr.aiida.functions import predict

    if model_node.kind != "exchange":
        raise InputError("model", model_node.kind, reason="predicting pairs needs an exchange model")
    meta = model_node.meta
    cell = np.asarray((meta.get("hosts") or {}).get(host, np.zeros((3, 3))), float)
    if not cell.any():
        raise InputError("predict.host", host, allowed=sorted(meta.get("hosts") or {}))
    off = np.asarray(offset, float)
    if off.shape != (3,) or not off.any():
        raise InputError("predict.offset", list(offset), reason="give a non-zero lattice vector (three integers)")
    position_j = (off @ cell).tolist()
    pairs = {"pairs": [{"host": host, "species_i": species_i, "species_j": species_j, "position_i": [0.0, 0.0, 0.0],
                        "position_j": position_j, "environment": []}]}
    try:
        result = predict(model_node, orm.Dict(pairs))
    except InputError as exc:
        raise InputError("predict", exc.value, reason=exc.reason) from None
    records = result.records()
    return np.asarray(records[0].tensor, float), result


# ------------------------------------------------------------------ real data: an impurity series with JuKKR

#: the series form's limits (a local server runs each embedding on its own CPUs)
SERIES_RADIUS = (0.5, 4.0)
SERIES_CONCURRENT = (1, 4)


@dataclass
class SeriesRequest:
    """The real-data form: impurity elements embedded one by one in a converged JuKKR host."""

    host: int | None = None
    elements: str = "3d"
    radius: float = 2.5
    max_concurrent: int = 1
    pairs: str = ""


def series_hosts(promote: bool = True) -> list[tuple[str, int]]:
    """(label, pk) of the converged JuKKR hosts of the profile (the KKR launcher's ``mlkkr/kkr-hosts``)."""
    from mlkkr.aiida.kkr_results import converged_hosts

    return [(f"{h['pk']}: {h['formula']} — E_F {h['fermi_energy_ry']:.5f} Ry ({h['label'] or 'host SCF'})", h["pk"])
            for h in converged_hosts(promote=promote)]


def series_pairs(request: SeriesRequest) -> list[str]:
    """The request's impurity pairs as "A-B" strings (none when the field is empty); :class:`InputError`
    naming ``series.pairs`` otherwise."""
    from mlkkr.aiida.kkr_series import parse_pairs

    try:
        return [f"{a}-{b}" for a, b in parse_pairs([p for p in request.pairs.split(",") if p.strip()])]
    except InputError as exc:
        raise InputError("series.pairs", request.pairs, reason=exc.reason or f"{exc.value!r} is not a pair",
                         allowed=exc.allowed if exc.field == "pairs" else None) from None


def check_series(request: SeriesRequest) -> list[str]:
    """The elements of a valid request (with those its pairs need); :class:`InputError` naming the
    ``series.*`` field otherwise."""
    from mlkkr.aiida.kkr_launch import parse_elements

    if request.host is None:
        raise InputError("series.host", None, reason="choose a converged host (run one in the KKR launcher first)")
    try:
        elements = parse_elements(request.elements)
    except InputError as exc:
        reason = exc.reason if exc.value == request.elements else f"{exc.value!r}: {exc.reason or 'not allowed'}"
        raise InputError("series.elements", request.elements, reason=reason, allowed=exc.allowed) from None
    lo, hi = SERIES_RADIUS
    radius = request.radius
    if isinstance(radius, bool) or not isinstance(radius, int | float) or not lo <= radius <= hi:
        raise InputError("series.radius", request.radius, allowed=f"a cluster radius in Å, {lo} … {hi}")
    lo, hi = SERIES_CONCURRENT
    if isinstance(request.max_concurrent, bool) or not isinstance(request.max_concurrent, int) \
            or not lo <= request.max_concurrent <= hi:
        raise InputError("series.max_concurrent", request.max_concurrent, allowed=f"an integer {lo} … {hi}")
    pairs = series_pairs(request)
    return elements + [el for el in dict.fromkeys(x for p in pairs for x in p.split("-")) if el not in elements]


def submit_series(request: SeriesRequest):
    """Check, then submit the series (``KkrImpuritySeriesWorkChain`` through the daemon); its node."""
    from mlkkr.aiida.kkr_launch import submit_series as submit

    elements = check_series(request)
    try:
        return submit(request.host, elements, radius=float(request.radius), max_concurrent=request.max_concurrent,
                      pairs=series_pairs(request))
    except InputError as exc:  # the launcher's own checks (host state, radius on this computer …)
        field = {"host": "series.host", "radius": "series.radius", "elements": "series.elements",
                 "max_concurrent": "series.max_concurrent", "pairs": "series.pairs"}.get(
            exc.field.split(".")[0].split("[")[0])
        if exc.field.startswith("impurity."):
            field = "series.radius" if "radius" in exc.field else "series.elements"
        raise InputError(field or exc.field, exc.value, reason=exc.reason, allowed=exc.allowed) from None


def series_progress(node) -> str:
    """``"2 of 5 embeddings done (Fe, Co running)"`` for a series node; embeddings an earlier series finished
    are reused, not run again, and counted once the series has ended."""
    elements = list(node.inputs.elements.get_list())
    pairs = list(node.inputs.pairs.get_list()) if "pairs" in node.inputs else []

    def name(c) -> str:
        pair = c.base.extras.get("mlkkr_pair", None)
        return "-".join(pair) if pair else c.base.extras.get("mlkkr_element", "?")

    children = [c for c in node.called if c.process_label in ("kkr_imp_wc", "combine_imps_wc")]
    done = {name(c) for c in children if c.is_finished_ok}
    running = [name(c) for c in children if not c.is_terminated]
    summary = node.base.extras.get("mlkkr_series_summary", None)
    if summary:
        done |= {e.get("element") or e.get("pair") for e in summary["elements"]}
    return (f"{len(done & set(elements))} of {len(elements)} embeddings"
            + (f" and {len(done & set(pairs))} of {len(pairs)} pairs" if pairs else "") + " done"
            + (f" ({', '.join(running)} running)" if running else ""))


def series_fit(node, element: str | None = None) -> dict[str, Any]:
    """Leave-one-element-out of the radial ML-ES model on the series' dataset: a table row per held-out
    element and the figure of ``element`` (default: the one of median error) predicted vs KKRimp."""
    from mlkkr.train.potential_radial import leave_one_element_out
    from mlkkr.train.potential_radial_plots import heldout_figure

    records = node.outputs.dataset.records()
    loeo = leave_one_element_out(records)
    rows = sorted(loeo["per_element"], key=lambda r: r["model"]["all_relative_rmse"])
    element = element or rows[len(rows) // 2]["element"]
    table = [[r["element"], 100 * r["model"]["all_relative_rmse"],
              100 * r["baseline"]["all_relative_rmse"] if "all_relative_rmse" in r.get("baseline", {}) else None]
             for r in loeo["per_element"]]
    return {"rows": table, "summary": loeo["summary"], "element": element,
            "figure": heldout_figure(records, element), "elements": [r.impurity for r in records]}
