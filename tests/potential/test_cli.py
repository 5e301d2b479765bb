"""`mlkkr train potential`, `mlkkr predict potential`, `mlkkr evaluate MODEL` end to end."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mlkkr.cli import main


@pytest.fixture(scope="module")
def model_dir(engine_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "jl"
    res = CliRunner().invoke(main, ["train", "potential", "--data", str(engine_file), "-o", str(out), "--cutoff",
                                    "8.61", "--n-max", "8", "--n-max3", "2", "--l-max", "2", "--no-progress",
                                    "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["model"] == str(out) and summary["test"]["relative_rmse"] < 0.05
    return out


def test_model_folder(model_dir, engine_file):
    from mlkkr.data.h5io import file_sha256

    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["kind"] == "potential" and meta["mlkkr_version"]
    assert meta["species"] == ["Fe", "Se", "Sn"]
    assert meta["descriptor"]["cutoff"] == 8.61 and meta["descriptor"]["body_order"] == 3
    assert meta["ridge"]["alpha"] in meta["ridge"]["alphas"]
    assert meta["training_data"]["sha256"] == file_sha256(engine_file)
    assert meta["training_data"]["n_embeddings"] == 60
    assert {"train", "test"} <= set(meta["metrics"])
    assert (model_dir / "weights.npz").is_file()
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_evaluate_json(model_dir, engine_file):
    res = CliRunner().invoke(main, ["evaluate", str(model_dir), "--data", str(engine_file), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for key in ("mae_eV", "rmse_eV", "relative_rmse", "by_nearest_defect", "off_defect", "screening"):
        assert key in out
    assert set(out["by_nearest_defect"]) == {"Fe", "Se", "Sn"}
    assert out["n_embeddings"] == 60 and out["data"]["is_training_data"]
    assert out["relative_rmse"] < 0.05
    human = CliRunner().invoke(main, ["evaluate", str(model_dir), "--data", str(engine_file)])
    assert human.exit_code == 0 and "nearest defect" in human.output


def test_predict_h5_and_json(model_dir, engine_file, tmp_path):
    out = tmp_path / "pred.h5"
    res = CliRunner().invoke(main, ["predict", "potential", str(model_dir), str(engine_file), "-o", str(out)])
    assert res.exit_code == 0, res.output
    with h5py.File(engine_file) as f, h5py.File(out) as g:
        truth, pred = f["embedding/delta_v"][()], g["embedding/delta_v"][()]
    assert pred.shape == truth.shape and np.sqrt(np.mean((pred - truth) ** 2)) < 0.05 * truth.std()
    doc = {"species": ["Fe", "Sn"], "positions": [[0, 0, 0], [2.87, 0, 0]],
           "grid": [[0, 0, 0], [2.87, 0, 0], [0, 2.87, 0]]}
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["predict", "potential", str(model_dir), str(inp), "--json"])
    assert res.exit_code == 0, res.output
    values = json.loads(res.output)["delta_v_eV"][0]
    assert len(values) == 3 and all(np.isfinite(values))
    assert values[0] > values[2]  # on the Fe site: its own U plus screening, above a host site


def test_bad_input_gives_clear_errors(model_dir, engine_file, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["train", "potential", "--data", str(tmp_path / "nope.h5"), "-o", str(tmp_path / "m")])
    assert res.exit_code == 2 and "--data" in res.output and "no such file" in res.output
    res = runner.invoke(main, ["train", "potential", "--data", str(engine_file), "-o", str(model_dir)])
    assert res.exit_code == 2 and "exists; pass --force" in res.output
    bad = tmp_path / "in.json"
    bad.write_text(json.dumps({"species": ["Xx"], "positions": [[0, 0, 0]], "grid": [[0, 0, 0]]}))
    res = runner.invoke(main, ["predict", "potential", str(model_dir), str(bad)])
    assert res.exit_code == 2 and "species 'Xx'" in res.output and "allowed: Fe, Se, Sn" in res.output
    far = tmp_path / "far.json"
    far.write_text(json.dumps({"species": ["Fe"], "positions": [[0, 0, 0]], "grid": [[40, 0, 0]]}))
    res = runner.invoke(main, ["predict", "potential", str(model_dir), str(far)])
    assert res.exit_code == 2 and "no atom within the cutoff 8.61 Å" in res.output
    nan = tmp_path / "nan.json"
    nan.write_text('{"species": ["Fe"], "positions": [[0, 0, NaN]], "grid": [[0, 0, 0]]}')
    res = runner.invoke(main, ["predict", "potential", str(model_dir), str(nan)])
    assert res.exit_code == 2 and "not finite" in res.output
    res = runner.invoke(main, ["train", "potential", "--data", str(engine_file), "-o", str(tmp_path / "m2"),
                               "--n-max", "0", "--no-progress"])
    assert res.exit_code == 2 and "descriptor.n_max" in res.output
    assert not (tmp_path / "m2").exists()


def test_nan_in_dataset_is_an_input_error(engine_records, tmp_path):
    from mlkkr.data.h5io import write_embeddings

    recs = engine_records[:4]
    broken = [type(r)(**{**r.__dict__, "delta_v": r.delta_v.copy()}) for r in recs]
    broken[2].delta_v[1] = np.nan
    path = write_embeddings(tmp_path / "nan.h5", broken, {"n": 4})
    res = CliRunner().invoke(main, ["train", "potential", "--data", str(path), "-o", str(tmp_path / "m"),
                                    "--no-progress"])
    assert res.exit_code == 2 and "embedding 2 has a non-finite delta_v" in res.output
