"""calcfunctions of mlkkr: collect a dataset's batches, merge datasets, predict with a model.

Each is a calcfunction, so its result is linked to its inputs in the provenance graph:
``prediction ← predict ← model ← TrainCalculation ← merged dataset ← merge_datasets ← batches ←
EngineCalculation`` — a query from a prediction reaches the model, its training data and the jobs that
computed that data (see :func:`provenance_of_prediction`).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from aiida import orm
from aiida.engine import calcfunction

from mlkkr.aiida.nodes import DatasetData, ModelData
from mlkkr.errors import InputError


@calcfunction
def collect_dataset(group: orm.Str, **batches: DatasetData) -> orm.Dict:
    """Summary of a dataset made of ``batches``: records, batches, duplicated ids (must be none)."""
    ids: list[str] = []
    kinds = set()
    for node in batches.values():
        ids += node.record_ids
        kinds.add(node.kind)
    counts = Counter(ids)
    duplicates = sorted(i for i, c in counts.items() if c > 1)
    return orm.Dict({"group": group.value, "kind": sorted(kinds)[0] if len(kinds) == 1 else sorted(kinds),
                     "n_records": len(ids), "n_unique": len(counts), "n_batches": len(batches),
                     "duplicates": duplicates[:20], "n_duplicates": len(duplicates)})


def merge_files(datasets: list[DatasetData], path: Path, parameters: dict[str, Any]) -> Path:
    """Write the records of ``datasets`` (one kind) to one HDF5 file at ``path``, in the order given."""
    from mlkkr.data.h5io import write_embeddings, write_exchange

    kinds = {d.kind for d in datasets}
    if len(kinds) != 1:
        raise InputError("datasets", sorted(kinds), reason="cannot merge datasets of different kinds")
    records: list[Any] = []
    for d in datasets:
        records += d.records()
    write = write_exchange if kinds == {"exchange"} else write_embeddings
    return write(path, records, parameters)


@calcfunction
def merge_datasets(**datasets: DatasetData) -> DatasetData:
    """One dataset with the records of all ``datasets`` (in the order of their input names)."""
    names = sorted(datasets)
    nodes = [datasets[k] for k in names]
    params = {"source": "merge_datasets", "parts": [{"name": k, "uuid": datasets[k].uuid,
                                                     "n_records": datasets[k].n_records} for k in names]}
    with tempfile.TemporaryDirectory(prefix="mlkkr-merge-") as tmp:
        return DatasetData(merge_files(nodes, Path(tmp) / DatasetData.FILENAME, params))


def _run_click(command: Any, args: list[str]) -> dict[str, Any]:
    """Run a click command in-process; its JSON stdout, or InputError with its stderr message."""
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            command.main(args=args, prog_name="mlkkr", standalone_mode=False)
        except SystemExit as exc:
            code = exc.code
    if code not in (0, None):
        message = err.getvalue().strip().removeprefix("Error:").strip() or f"exit status {code}"
        raise InputError("predict", args[:1], reason=message)
    try:
        return json.loads(out.getvalue())
    except json.JSONDecodeError:
        return {}


@calcfunction
def predict(model: ModelData, data: orm.Data) -> DatasetData:
    """Predictions of ``model`` for the records of ``data`` (DatasetData, or a Dict/JSON file of pairs).

    Runs ``mlkkr predict <kind> MODEL INPUT -o predictions.h5`` in this process; the result is a
    dataset of the same schema whose values are the model's.
    """
    from mlkkr.aiida.cli_args import model_command

    command = model_command(model.kind, "predict_cmd")
    with tempfile.TemporaryDirectory(prefix="mlkkr-predict-") as tmp:
        tmpdir = Path(tmp)
        folder = model.export(tmpdir / "model")
        if isinstance(data, DatasetData):
            source = data.export(tmpdir / "input.h5")
        elif isinstance(data, orm.Dict):
            source = tmpdir / "input.json"
            source.write_text(json.dumps(data.get_dict()))
        elif isinstance(data, orm.SinglefileData):
            source = tmpdir / ("input" + Path(data.filename).suffix)
            source.write_bytes(data.get_content(mode="rb"))
        else:
            raise InputError("data", type(data).__name__, allowed=["DatasetData", "Dict", "SinglefileData"])
        out = tmpdir / "predictions.h5"
        _run_click(command, [str(folder), str(source), "-o", str(out), "--json"])
        return DatasetData(out)


def provenance_of_prediction(prediction: orm.Node) -> dict[str, list[orm.Node]]:
    """The model, training data and engine CalcJobs behind a prediction node, found by QueryBuilder.

    Follows the links backwards: prediction ← ``predict`` ← model ← TrainCalculation ← its dataset, and
    every EngineCalculation among the ancestors of that dataset.
    """
    from mlkkr.aiida.calculations import EngineCalculation, TrainCalculation

    qb = orm.QueryBuilder()
    qb.append(DatasetData, filters={"id": prediction.pk}, tag="prediction")
    qb.append(orm.CalcFunctionNode, with_outgoing="prediction", filters={"attributes.function_name": "predict"},
              tag="predict")
    qb.append(ModelData, with_outgoing="predict", tag="model", project="*")
    qb.append(orm.CalcJobNode, with_outgoing="model", tag="train",
              filters={"process_type": TrainCalculation.build_process_type()}, project="*")
    qb.append(DatasetData, with_outgoing="train", edge_filters={"label": "dataset"}, tag="data", project="*")
    rows = qb.all()
    models = list({r[0].pk: r[0] for r in rows}.values())
    trains = list({r[1].pk: r[1] for r in rows}.values())
    datas = list({r[2].pk: r[2] for r in rows}.values())
    jobs: dict[int, orm.Node] = {}
    for data in datas:
        anc = orm.QueryBuilder()
        anc.append(DatasetData, filters={"id": data.pk}, tag="data")
        anc.append(orm.CalcJobNode, with_descendants="data",
                   filters={"process_type": EngineCalculation.build_process_type()}, project="*")
        for (job,) in anc.iterall():
            jobs[job.pk] = job
    return {"model": models, "training": trains, "training_data": datas,
            "engine_calcjobs": sorted(jobs.values(), key=lambda n: n.pk)}
