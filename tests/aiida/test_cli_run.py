"""``mlkkr run``: bad input fails before anything is submitted; a dataset run reports its PK and state."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from aiida import orm

from mlkkr.aiida.testing import bin_dir, env_with_bin

pytestmark = pytest.mark.services

CHEAP = ["--param", "kgrid=8", "--param", "cutoff=1", "--param", "env_radius=1"]


def mlkkr(services, *args: str) -> subprocess.CompletedProcess:
    env = env_with_bin()
    env["AIIDA_PATH"] = os.environ["AIIDA_PATH"]  # aiida-core's temporary test configuration
    return subprocess.run([str(bin_dir() / "mlkkr"), "run", *args, "--profile", services.name], env=env,
                          capture_output=True, text=True, timeout=600)


def _processes() -> int:
    return orm.QueryBuilder().append(orm.ProcessNode).count()


@pytest.mark.parametrize(("args", "says"), [
    (["dataset", "exchange", "--n", "0", "--batch", "5", "--computer", "localhost"], "--n: 0 is not allowed"),
    (["dataset", "exchange", "--n", "10", "--batch", "0", "--computer", "localhost"], "--batch: 0"),
    (["dataset", "exchange", "--n", "10", "--computer", "nowhere"],
     "--computer: no such computer 'nowhere'; allowed: localhost"),
    (["dataset", "exchange", "--n", "10", "--computer", "localhost", "--code", "nocode@localhost"],
     "--code: no such code 'nocode@localhost'"),
    (["dataset", "potential", "--n", "10", "--computer", "localhost", "--param", "kgird=8"],
     "parameters.kgird: 8 is not allowed; allowed: box_radius"),
    (["dataset", "exchange", "--n", "10", "--computer", "localhost", "--param", "kgrid=eight"],
     "parameters.kgrid"),
    (["training", "--group", "no/such/group", "--computer", "localhost"], "--group: no such group"),
    (["dataset", "exchange", "--n", "10"], "--computer: the engine backend needs --computer"),
    (["dataset", "potential", "--computer", "localhost"], "--n: None is not allowed"),
    (["dataset", "potential", "--backend", "jukkr", "--elements", "Fe"], "--host: --backend jukkr needs --host"),
    (["dataset", "potential", "--backend", "jukkr", "--host", "1", "--elements", "Fe,Qq"],
     "impurity.element: not an element symbol"),
])
def test_bad_input_fails_before_submission(services, args, says):
    before = _processes()
    result = mlkkr(services, *args, "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr, result.stderr
    assert _processes() == before, "nothing was submitted"


def test_dataset_runs_report_pk_state_and_group(services):
    result = mlkkr(services, "dataset", "exchange", "--n", "10", "--batch", "5", "--computer", "localhost",
                   "--group", "tests/cli", "--wait", "--json", *CHEAP)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["state"] == "finished" and out["exit_status"] == 0, out
    assert out["process_label"] == "DatasetWorkChain" and out["group"] == "tests/cli"
    assert set(out["outputs"]) >= {"summary", "batches__batch_0000", "batches__batch_0001"}, out["outputs"]
    node = orm.load_node(out["pk"])
    assert node.outputs.summary["n_records"] == 10

    shown = json.loads(mlkkr(services, "show", str(out["pk"]), "--json").stdout)
    assert shown["pk"] == out["pk"] and shown["state"] == "finished"

    result = mlkkr(services, "dataset", "potential", "--n", "2", "--batch", "1", "--computer", "localhost",
                   "--param", "kgrid=10", "--param", "radius=1", "--param", "max_defects=1", "--param", "box_radius=1",
                   "--wait", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["state"] == "finished" and out["exit_status"] == 0, out
    summary = orm.load_node(out["pk"]).outputs.summary.get_dict()
    assert summary["kind"] == "potential" and summary["n_records"] == 2 and summary["n_batches"] == 2
