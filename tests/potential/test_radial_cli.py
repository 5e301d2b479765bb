"""``mlkkr train|evaluate|predict potential-radial`` on the committed real KKRimp data (the 3d/4d single
impurities of fcc Cu, run with JuKKR on this platform: benchmarks/data/cu-3d4d-r2.5.h5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlkkr.cli import main
from mlkkr.data.h5io import read_radial, write_radial
from mlkkr.models.potential_radial import errors

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "cu-3d4d-r2.5.h5"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def without_fe(tmp_path_factory):
    """The series without Fe, a model trained on it, and the Fe embedding JuKKR gave."""
    records = read_radial(DATA)
    fe = next(r for r in records if r.impurity == "Fe")
    folder = tmp_path_factory.mktemp("radial")
    data = write_radial(folder / "no-fe.h5", [r for r in records if r.impurity != "Fe"], {})
    res = run("train", "potential-radial", "--data", data, "-o", folder / "model", "--json")
    assert res.exit_code == 0, res.output
    return folder, json.loads(res.output), fe


def test_train_writes_a_model_with_its_held_out_errors(without_fe):
    folder, summary, _ = without_fe
    meta = json.loads((folder / "model" / "model.json").read_text())
    assert meta["kind"] == "potential-radial" and "Fe" not in meta["data"]["elements"]
    assert len(meta["data"]["elements"]) == 19 and len(meta["data"]["sha256"]) == 64
    loeo = meta["metrics"]["leave_one_element_out"]
    assert loeo["n_held_out"] == 18 and loeo["median_relative_rmse"] < 0.01  # Cu itself ("host") is no held-out element
    assert summary["metrics"] == meta["metrics"]
    assert {p.name for p in (folder / "model").iterdir()} == {"model.json", "weights.npz"}


def test_evaluate_marks_and_scores_the_held_out_element(without_fe):
    folder, _, fe = without_fe
    res = run("evaluate", folder / "model", "--data", DATA, "--json")
    assert res.exit_code == 0, res.output
    rows = {r["element"]: r for r in json.loads(res.output)["records"]}
    assert len(rows) == 20 and rows["Fe"]["held_out"] and not rows["Co"]["held_out"]
    assert rows["Fe"]["all_relative_rmse"] < 0.05
    human = run("evaluate", folder / "model", "--data", DATA)
    assert human.exit_code == 0 and "Fe *" in human.output


def test_predict_an_element_from_a_template_embedding(without_fe, tmp_path):
    """Fe put on the Co embedding's site and meshes: the prediction is the one evaluate scored (the meshes of
    one host site do not depend on the impurity), close to what JuKKR gave for Fe."""
    folder, _, fe = without_fe
    index = [r.impurity for r in read_radial(DATA)].index("Co")
    out = tmp_path / "fe.h5"
    res = run("predict", "potential-radial", folder / "model", "--like", DATA, "--index", index, "--element", "Fe",
              "-o", out, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["element"] == "Fe" and doc["atoms"][0]["species"] == "Fe" and doc["atoms"][0]["z"] == 26
    pred = read_radial(out)[0]
    assert pred.impurity == "Fe" and not pred.converged
    assert np.allclose(pred.r[0], fe.r[0])
    err = errors([fe], [pred.delta_v])["all_relative_rmse"]
    assert err < 0.05
    # the full ΔV adds the exact nuclear term −2ΔZ e²/r (ΔZ = −3 for Fe on a Cu site)
    total = np.array(doc["atoms"][0]["delta_v_total_ev"])
    assert np.allclose(total, pred.delta_v_total(0))
    js = tmp_path / "fe.json"
    assert run("predict", "potential-radial", folder / "model", "--like", DATA, "--element", "Fe",
               "-o", js).exit_code == 0
    assert json.loads(js.read_text())["element"] == "Fe"


def test_bad_input_names_the_option_and_writes_nothing(without_fe, tmp_path):
    folder, _, _ = without_fe
    model = folder / "model"
    for args, says in ((["--element", "Xx"], "--element"), (["--element", "Fe", "--index", "99"], "--index"),
                       (["--element", "Fe", "-o", tmp_path / "no" / "x.json"], "does not exist")):
        res = run("predict", "potential-radial", model, "--like", DATA, *args)
        assert res.exit_code == 2 and says in res.output, (args, res.output)
    res = run("train", "potential-radial", "--data", DATA, "-o", model)
    assert res.exit_code == 2 and "a model already exists" in res.output
    res = run("train", "potential-radial", "--data", tmp_path / "none.h5", "-o", tmp_path / "m")
    assert res.exit_code == 2 and "--data" in res.output and not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == []
