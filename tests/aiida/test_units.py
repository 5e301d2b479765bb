"""Pieces of mlkkr.aiida that need no services: command lines, batch plans, record ids, data nodes."""

from __future__ import annotations

import numpy as np
import pytest

from mlkkr.aiida.cli_args import engine_command, model_command, to_argv
from mlkkr.aiida.nodes import record_ids
from mlkkr.aiida.workflows import batch_plan, validate_dataset_inputs
from mlkkr.commands.run import parse_params
from mlkkr.errors import InputError


def test_parameters_become_the_commands_options_or_fail_naming_the_key():
    cmd = engine_command("data exchange")
    assert to_argv(cmd, {"n": 5, "seed": 1, "env_radius": 1.5, "kgrid": None}) == [
        "--env-radius", "1.5", "--n", "5", "--seed", "1"]
    with pytest.raises(InputError, match=r"parameters.kgird: 8 is not allowed; allowed: cutoff"):
        to_argv(cmd, {"kgird": 8})
    with pytest.raises(InputError, match="parameters.kgrid"):
        to_argv(cmd, {"kgrid": "eight"})
    with pytest.raises(InputError, match="parameters.output"):
        to_argv(cmd, {"output": "x.h5"})  # the CalcJob names its files itself
    train = model_command("exchange", "train_cmd")
    assert to_argv(train, {"baseline": False, "achiral": True, "epochs": 3}) == [
        "--achiral", "--no-baseline", "--epochs", "3"]
    assert to_argv(train, {"achiral": False}) == []
    with pytest.raises(InputError, match="command"):
        engine_command("data magnets")
    with pytest.raises(InputError, match="kind"):
        model_command("magnets", "train_cmd")


def test_batch_plan_covers_every_record_once():
    plan = batch_plan(1003, 100)
    assert [n for _, n, _ in plan] == [100] * 10 + [3]
    assert [name for name, _, _ in plan][:2] == ["batch_0000", "batch_0001"]
    records = [k for _, n, start in plan for k in range(start, start + n)]
    assert records == list(range(1003))  # each record in exactly one batch, in order
    assert plan == batch_plan(1003, 100) and batch_plan(7, 3) == [("batch_0000", 3, 0), ("batch_0001", 3, 3),
                                                                  ("batch_0002", 1, 6)]


@pytest.mark.parametrize(("kind", "n", "batch", "seed", "params", "field"), [
    ("exchange", 0, 10, 0, {}, "n"), ("exchange", 10, 0, 0, {}, "batch_size"), ("exchange", 10, 5, -1, {}, "seed"),
    ("magnets", 10, 5, 0, {}, "kind"), ("exchange", 10, 5, 0, {"n": 3}, "parameters.n"),
    ("exchange", 10, 5, 0, {"start": 3}, "parameters.start"),
    ("potential", 10, 5, 0, {"cutoff": 2.0}, "parameters.cutoff"),
])
def test_dataset_inputs_are_checked(kind, n, batch, seed, params, field):
    with pytest.raises(InputError) as info:
        validate_dataset_inputs(kind, n, batch, seed, params)
    assert info.value.field == field


def test_record_ids_are_stable_and_distinct():
    table = ['{"seed":1}', '{"seed":2}']
    a = record_ids("exchange", table, np.array([0, 0, 1]), np.array([0, 1, 0]))
    assert len(set(a)) == 3 and a == record_ids("exchange", table, [0, 0, 1], [0, 1, 0])
    assert a[0].startswith("exchange:") and a[0].endswith(":0")
    assert record_ids("potential", table, [0, 0], [-1, -1]) == [f"potential:{a[0].split(':')[1]}:row0",
                                                                 f"potential:{a[0].split(':')[1]}:row1"]


def test_cli_params():
    assert parse_params(("kgrid=8", "host=metal", "env-radius=1.5", "baseline=false"), "--param") == {
        "kgrid": 8, "host": "metal", "env_radius": 1.5, "baseline": False}
    with pytest.raises(InputError, match="--param"):
        parse_params(("kgrid",), "--param")


def test_dataset_node_summarises_an_engine_file(tmp_path):
    from mlkkr.aiida.nodes import DatasetData
    from mlkkr.data.builders import ExchangeSampler, build_exchange
    from mlkkr.data.h5io import write_exchange
    from mlkkr.greens import Engine, make_host

    records, params = build_exchange(Engine(make_host("ti"), 8), 4, 3, ExchangeSampler(cutoff=1.0, env_radius=1.0))
    node = DatasetData(write_exchange(tmp_path / "d.h5", records, params))
    assert node.kind == "exchange" and node.n_records == 4 and len(set(node.record_ids)) == 4
    assert [r.J for r in node.records()] == pytest.approx([r.J for r in records])
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="dataset"):
        DatasetData(tmp_path / "bad.h5")


ENGINE_INPUT = """
[host]
name = "ti"
[kgrid]
n = 8
[[defects]]
element = "Mn"
position = [0, 0, 0]
[[defects]]
element = "Fe"
position = [0, 0, 1]
"""


def test_engine_calcjob_on_one_cluster_and_a_rejected_input(aiida_localhost, tmp_path):
    """`mlkkr engine exchange INPUT` as a CalcJob (run in this process: the default profile has no broker);
    an input mlkkr rejects ends with exit status 400 and its message."""
    import io

    from aiida import orm
    from aiida.engine import run_get_node

    from mlkkr.aiida.calculations import EngineCalculation
    from mlkkr.aiida.launch import resolve_code

    aiida_localhost.set_workdir(str(tmp_path))
    code = resolve_code(aiida_localhost)
    good = orm.SinglefileData(io.BytesIO(ENGINE_INPUT.encode()), filename="cluster.toml")
    results, node = run_get_node(EngineCalculation, code=code, command="engine exchange", input_file=good)
    assert node.is_finished_ok, node.exit_message
    assert results["dataset"].n_records == 1 and results["summary"]["pairs"][0]["species"] == ["Mn", "Fe"]
    bad = orm.SinglefileData(io.BytesIO(ENGINE_INPUT.replace('"Fe"', '"Xx"').encode()), filename="cluster.toml")
    _, node = run_get_node(EngineCalculation, code=code, command="engine exchange", input_file=bad)
    assert node.exit_status == 400 and "Xx" in node.exit_message
    with pytest.raises(ValueError, match="input_file: required"):
        run_get_node(EngineCalculation, code=code, command="engine embed")


def test_impurity_series_elements_are_checked_before_anything_is_loaded():
    from mlkkr.aiida.kkr_launch import ROW_3D, ROW_4D, parse_elements, submit_series

    assert parse_elements("3d") == list(ROW_3D) and parse_elements("Fe, Co,Fe") == ["Fe", "Co"]
    assert parse_elements(["4d", "Fe"]) == [*ROW_4D, "Fe"]
    with pytest.raises(InputError, match="impurity.element: not an element symbol"):
        parse_elements("Fe,Qq")
    with pytest.raises(InputError, match="elements: ',' is not allowed"):
        parse_elements(",")
    for bad in ([], ["Fe", "Fe"]):
        with pytest.raises(InputError, match="elements: .* one or more element symbols, each once"):
            submit_series(None, bad)
    with pytest.raises(InputError, match="max_concurrent: 0"):
        submit_series(None, ["Fe"], max_concurrent=0)
