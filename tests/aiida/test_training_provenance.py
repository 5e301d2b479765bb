"""Training followed by evaluation as a work chain, prediction as a calcfunction, and the provenance
query from a prediction back to the model, its training data and the engine jobs that computed it."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from aiida import orm
from aiida.engine import submit

from mlkkr.aiida.calculations import EngineCalculation, EvaluateCalculation, TrainCalculation
from mlkkr.aiida.functions import predict, provenance_of_prediction
from mlkkr.aiida.launch import dataset_builder, training_builder
from mlkkr.aiida.nodes import DatasetData, ModelData
from mlkkr.aiida.testing import wait_for
from mlkkr.aiida.workflows import TrainBaseWorkChain

pytestmark = [pytest.mark.services, pytest.mark.slow]

CHEAP = {"kgrid": 8, "cutoff": 1.0, "env_radius": 1.0}
#: a tiny e3nn model, two epochs: the plumbing, not the physics, is under test here
TINY = {"epochs": 40, "batch_size": 16, "mul": 2, "layers": 1, "latent": 8, "baseline": False, "threads": 1,
        "patience": 100}


def _check(node: orm.ProcessNode, services) -> None:
    assert node.is_finished_ok, (f"{node.process_label}<{node.pk}> {node.process_state} [{node.exit_status}] "
                                 f"{node.exit_message}\n{services.daemon_log()[-4000:]}")


def _training_job(wc: orm.WorkflowNode, timeout: float = 600) -> orm.CalcJobNode:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for base in wc.called:
            for job in base.called:
                if job.process_class is TrainCalculation and job.get_remote_workdir():
                    return job
        time.sleep(0.1)
    raise AssertionError("no training job started")


def _process_in(workdir: str, word: str, timeout: float = 60) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            try:
                if proc.info["cwd"] == workdir and word in (proc.info["cmdline"] or []):
                    return proc
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.05)
    raise AssertionError(f"no mlkkr {word} process in {workdir}")


def test_train_evaluate_predict_and_provenance(services):
    """Also: the training job is killed after its first checkpoint and resumed by the restart logic."""
    data = submit(dataset_builder("exchange", 40, 10, services.computer, seed=3, parameters=CHEAP,
                                  group="tests/training-data"))
    wait_for(data, 600)
    _check(data, services)
    batches = dict(data.outputs.batches)

    wc = submit(training_builder({k: v for k, v in batches.items()}, services.computer, train_parameters=TINY,
                                 evaluate_parameters={"no_plots": True}))
    # kill the training job once it has written a checkpoint: the restart resumes from it
    first = _training_job(wc)
    workdir = Path(first.get_remote_workdir())
    deadline = time.monotonic() + 600
    while not (workdir / "model" / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    _process_in(str(workdir), "train").kill()
    wait_for(wc, 900)
    _check(wc, services)
    base = next(c for c in wc.called if c.process_class is TrainBaseWorkChain)
    runs = sorted(base.called, key=lambda n: n.pk)
    assert [r.exit_status for r in runs] == [TrainCalculation.exit_codes.ERROR_OUTPUT_MISSING.status, 0]
    assert runs[1].inputs.parent_folder.uuid == runs[0].outputs.remote_folder.uuid, "resumed from the checkpoint"
    model = wc.outputs.model
    assert isinstance(model, ModelData) and model.kind == "exchange"
    merged = wc.outputs.dataset
    assert merged.n_records == 40 and sorted(merged.record_ids) == sorted(i for b in batches.values()
                                                                          for i in b.record_ids)
    assert model.base.attributes.get("data_sha256") == merged.base.attributes.get("sha256"), \
        "the model was trained on exactly the merged file"
    evaluation = wc.outputs.evaluation.get_dict()
    assert evaluation["selection"].startswith("test") and evaluation["n"] >= 1, evaluation
    assert {"e3nn"} <= set(evaluation["metrics"]), evaluation["metrics"].keys()
    assert wc.outputs.training_metrics["epochs_run"] == 40

    prediction = predict(model, batches["batch_0000"])
    assert isinstance(prediction, DatasetData) and prediction.n_records == 10

    found = provenance_of_prediction(prediction)
    assert [m.uuid for m in found["model"]] == [model.uuid]
    assert [d.uuid for d in found["training_data"]] == [merged.uuid]
    assert len(found["training"]) == 1 and found["training"][0].process_class is TrainCalculation
    engine_jobs = {j.uuid for j in found["engine_calcjobs"]}
    expected = {b.creator.uuid for b in batches.values()}
    assert engine_jobs == expected and len(expected) == 4
    assert all(orm.load_node(u).process_class is EngineCalculation for u in engine_jobs)
    evaluate_jobs = [c for c in wc.called if isinstance(c, orm.CalcJobNode)]
    assert [c.process_class for c in evaluate_jobs] == [EvaluateCalculation]
