"""``mlkkr train exchange`` · ``mlkkr evaluate`` · ``mlkkr predict exchange``: the documented commands."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mlkkr.cli import main
from mlkkr.data.h5io import read_exchange, write_exchange

TINY = ["--mul", "4", "--latent", "16", "--layers", "1", "--r-env", "4.5", "--r-host", "4.5", "--threads", "1",
        "--no-progress"]


@pytest.fixture(scope="module")
def model_dir(engine_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    res = CliRunner().invoke(main, ["train", "exchange", "--data", str(engine_h5), "-o", str(out), "--epochs", "3",
                                    *TINY, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["epochs_run"] == 3 and summary["device"] == "cpu"
    return out


def test_train_writes_a_model_folder(model_dir, engine_h5):
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["kind"] == "exchange" and meta["mlkkr_version"]
    assert meta["model"]["mul"] == 4 and meta["training"]["epochs"] == 3 and meta["training"]["seed"] == 0
    assert set(meta["species"]) >= {"Fe", "ti"}
    assert len(meta["data"]["sha256"]) == 64
    assert {"val", "test", "baseline_test"} <= set(meta["metrics"])
    for name in ("weights.pt", "checkpoint.pt", "baseline.npz", "split.npz", "history.json"):
        assert (model_dir / name).is_file(), name


def test_evaluate_prints_the_table_and_writes_parity_plots(model_dir, engine_h5, tmp_path):
    res = CliRunner().invoke(main, ["evaluate", str(model_dir), "--data", str(engine_h5), "--plots",
                                    str(tmp_path / "plots"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["selection"].startswith("test split")
    for model in ("e3nn", "baseline"):
        for part in ("J", "D_x", "D_y", "D_z", "S"):
            row = out["metrics"][model][part]
            assert {"mae", "rmse", "r2"} <= set(row) and np.isfinite(row["mae"])
    assert (tmp_path / "plots" / "parity.html").stat().st_size > 10_000
    assert out["plots"]["png"], out["plots"].get("png_error")
    assert (tmp_path / "plots" / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(main, ["evaluate", str(model_dir), "--data", str(engine_h5), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "MAE/meV" in res.output and "baseline" in res.output and "D_z" in res.output


def test_predict_from_json_and_hdf5(model_dir, engine_h5, tmp_path):
    doc = {"pairs": [{"host": "ti", "species_i": "Fe", "species_j": "Mn", "position_i": [0, 0, 0],
                      "position_j": [4.38, 0, 0], "environment": [{"species": "Sb", "position": [0, 4.38, 0]}]},
                     {"host": "ti", "species_i": "Mn", "species_j": "Fe", "position_i": [4.38, 0, 0],
                      "position_j": [0, 0, 0], "environment": [{"species": "Sb", "position": [0, 4.38, 0]}]}]}
    src = tmp_path / "pairs.json"
    src.write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["predict", "exchange", str(model_dir), str(src), "--json"])
    assert res.exit_code == 0, res.output
    pred = json.loads(res.output)["pairs"]
    t0, t1 = np.array(pred[0]["tensor_meV"]), np.array(pred[1]["tensor_meV"])
    np.testing.assert_allclose(t1, t0.T, atol=1e-5)  # the same pair seen from j: the transpose
    out = tmp_path / "pred.h5"
    res = CliRunner().invoke(main, ["predict", "exchange", str(model_dir), str(engine_h5), "-o", str(out)])
    assert res.exit_code == 0, res.output
    got = read_exchange(out)
    assert len(got) == 400 and got[0].provenance["source"] == "mlkkr predict exchange"


def test_bad_input_gives_clear_errors(model_dir, engine_h5, engine_pairs, tmp_path):
    runner = CliRunner()
    doc = {"pairs": [{"host": "ti", "species_i": "Fe", "species_j": "Xx", "position_i": [0, 0, 0],
                      "position_j": [4.38, 0, 0]}]}
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(doc))
    res = runner.invoke(main, ["predict", "exchange", str(model_dir), str(src)])
    assert res.exit_code == 2
    assert "pairs[0].species: species 'Xx' is unknown to the model; allowed:" in res.output
    # NaN in the data
    pairs, params = engine_pairs
    nan_h5 = tmp_path / "nan.h5"
    write_exchange(nan_h5, pairs[:50], params)
    with h5py.File(nan_h5, "r+") as f:
        f["exchange/tensor"][3, 0, 1] = np.nan
    res = runner.invoke(main, ["train", "exchange", "--data", str(nan_h5), "-o", str(tmp_path / "m"), *TINY])
    assert res.exit_code == 2 and "data[3].tensor" in res.output and "non-finite" in res.output
    assert not (tmp_path / "m").exists()
    # an empty split
    res = runner.invoke(main, ["train", "exchange", "--data", str(engine_h5), "-o", str(tmp_path / "m"), "--split",
                               "1,0,0", *TINY])
    assert res.exit_code == 2 and "split.val" in res.output and "empty" in res.output
    res = runner.invoke(main, ["train", "exchange", "--data", str(engine_h5), "-o", str(tmp_path / "m"), "--device",
                               "tpu", *TINY])
    assert res.exit_code == 2 and "device" in res.output
    res = runner.invoke(main, ["train", "exchange", "--data", str(tmp_path / "none.h5"), "-o", str(tmp_path / "m")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(main, ["evaluate", str(model_dir), "--data", str(engine_h5), "--split", "nope"])
    assert res.exit_code == 2
