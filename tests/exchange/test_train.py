"""Training: it learns, checkpoints are atomic, an interrupted run resumes to the same result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_exchange import tiny_model, tiny_training

from mlkkr.errors import InputError
from mlkkr.train import exchange as tx
from mlkkr.train.exchange import TrainingInterrupted, fit, load_model
from mlkkr.train.exchange_data import split_by_environment


def quiet(_msg: str) -> None:
    pass


def test_training_on_engine_pairs_learns(engine_pairs, tmp_path):
    """Held-out error far below that of predicting the training mean, for J and for D."""
    pairs, _ = engine_pairs
    res = fit(pairs, tmp_path / "m", tiny_model(mul=8, latent=32), tiny_training(epochs=25, baseline=True),
              progress=False, log=quiet)
    split = split_by_environment(pairs, (0.8, 0.1, 0.1), 0)
    j = np.array([p.J for p in pairs])
    d = np.array([p.D for p in pairs])
    mean_j = np.abs(j[split["test"]] - j[split["train"]].mean()).mean()
    mean_d = np.abs(d[split["test"]] - d[split["train"]].mean(axis=0)).mean()
    test = res.meta["metrics"]["test"]
    assert test["J"]["mae"] < 0.4 * mean_j, (test["J"]["mae"], mean_j)
    assert test["D"]["mae"] < 0.6 * mean_d, (test["D"]["mae"], mean_d)
    # the baseline, blind to directions, cannot do that for D
    assert res.meta["metrics"]["baseline_test"]["D"]["mae"] > test["D"]["mae"]
    # the folder is a complete model
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["kind"] == "exchange" and meta["species"] and meta["data"]["split"]["n_test"] == len(split["test"])
    loaded = load_model(tmp_path / "m")
    sel = [pairs[i] for i in split["test"]]
    np.testing.assert_allclose(loaded.predict(sel), tx.predict_graphs(loaded.net, loaded.graphs(sel)), atol=0)
    assert len(res.history) == 25 and res.history[-1]["val_loss"] > 0


def test_the_order_of_the_records_does_not_change_the_model(engine_pairs, tmp_path):
    """Merged batches arrive in any order (CI once merged them as d103, d108, d98): same split, same model."""
    pairs, _ = engine_pairs
    pairs = pairs[:200]
    perm = np.random.default_rng(7).permutation(len(pairs))
    shuffled = [pairs[i] for i in perm]
    settings = dict(epochs=3, baseline=True)
    a = fit(pairs, tmp_path / "a", tiny_model(), tiny_training(**settings), progress=False, log=quiet)
    b = fit(shuffled, tmp_path / "b", tiny_model(), tiny_training(**settings), progress=False, log=quiet)
    sa, sb = split_by_environment(pairs, (0.8, 0.1, 0.1), 0), split_by_environment(shuffled, (0.8, 0.1, 0.1), 0)
    for name in ("train", "val", "test"):  # the same records in each split, whatever their place in the file
        assert sorted(perm[sb[name]].tolist()) == sa[name].tolist()
    ma, mb = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    test = [pairs[i] for i in sa["test"]]
    np.testing.assert_allclose(ma.predict(test), mb.predict(test), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ma.baseline.predict(test), mb.baseline.predict(test), rtol=1e-9, atol=1e-9)
    assert a.meta["metrics"]["test"]["J"]["rmse"] == pytest.approx(b.meta["metrics"]["test"]["J"]["rmse"], rel=1e-9)


def test_resume_after_interruption_gives_the_uninterrupted_result(engine_pairs, tmp_path):
    pairs, _ = engine_pairs
    sub = pairs[:160]
    full = fit(sub, tmp_path / "full", tiny_model(), tiny_training(epochs=4), progress=False, log=quiet)
    with pytest.raises(TrainingInterrupted):
        fit(sub, tmp_path / "cut", tiny_model(), tiny_training(epochs=4), progress=False, log=quiet, stop_after=2)
    assert (tmp_path / "cut" / "checkpoint.pt").is_file()
    assert not (tmp_path / "cut" / "model.json").exists(), "an interrupted run must not look finished"
    ck = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert ck["state"]["epoch"] == 2
    with pytest.raises(InputError, match="a model already exists"):
        fit(sub, tmp_path / "full", tiny_model(), tiny_training(epochs=4), progress=False, log=quiet)
    resumed = fit(sub, tmp_path / "cut", tiny_model(), tiny_training(epochs=4), progress=False, log=quiet,
                  resume=True)
    a = torch.load(tmp_path / "full" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)
    assert [h["val_loss"] for h in resumed.history] == pytest.approx([h["val_loss"] for h in full.history], rel=1e-6)
    assert resumed.meta["metrics"]["test"]["J"]["mae"] == pytest.approx(full.meta["metrics"]["test"]["J"]["mae"],
                                                                        rel=1e-6)


def test_resume_refuses_other_settings_and_missing_checkpoint(engine_pairs, tmp_path):
    pairs, _ = engine_pairs
    sub = pairs[:120]
    with pytest.raises(TrainingInterrupted):
        fit(sub, tmp_path / "m", tiny_model(), tiny_training(epochs=3), progress=False, log=quiet, stop_after=1)
    with pytest.raises(InputError, match="other data or settings"):
        fit(sub, tmp_path / "m", tiny_model(), tiny_training(epochs=3, lr=1e-2), progress=False, log=quiet,
            resume=True)
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        fit(sub, tmp_path / "nothing", tiny_model(), tiny_training(), progress=False, log=quiet, resume=True)


def test_checkpoint_is_written_atomically(engine_pairs, tmp_path, monkeypatch):
    """A failure while writing the checkpoint leaves the previous one intact and no temporary file."""
    pairs, _ = engine_pairs
    sub = pairs[:120]
    with pytest.raises(TrainingInterrupted):
        fit(sub, tmp_path / "m", tiny_model(), tiny_training(epochs=3), progress=False, log=quiet, stop_after=1)
    before = (tmp_path / "m" / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        fit(sub, tmp_path / "m", tiny_model(), tiny_training(epochs=3), progress=False, log=quiet, resume=True)
    assert (tmp_path / "m" / "checkpoint.pt").read_bytes() == before
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.endswith(".tmp")]


def test_bad_training_input_is_refused(engine_pairs, tmp_path):
    pairs, _ = engine_pairs
    sub = [p for p in pairs[:60]]
    with pytest.raises(InputError, match=r"split\.val.*empty"):
        fit(sub, tmp_path / "a", tiny_model(), tiny_training(split=[1.0, 0.0, 0.0]), progress=False, log=quiet)
    with pytest.raises(InputError, match="species.*the data has a species"):
        fit(sub, tmp_path / "b", tiny_model(species=["Fe"]), tiny_training(), progress=False, log=quiet)
    with pytest.raises(InputError, match="device"):
        fit(sub, tmp_path / "c", tiny_model(), tiny_training(device="tpu"), progress=False, log=quiet)
    with pytest.raises(InputError, match="epochs"):
        fit(sub, tmp_path / "d", tiny_model(), tiny_training(epochs=0), progress=False, log=quiet)
    import copy

    bad = [copy.deepcopy(p) for p in sub]
    bad[7].tensor[0, 0] = np.nan
    with pytest.raises(InputError, match=r"data\[7\]\.tensor"):
        fit(bad, tmp_path / "e", tiny_model(), tiny_training(), progress=False, log=quiet)
    assert not (tmp_path / "e").exists() or not (tmp_path / "e" / "model.json").exists()


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(engine_pairs, tmp_path):
    """A real SIGKILL of `mlkkr train exchange` after a checkpoint; `--resume` reaches the same weights."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from mlkkr.data.h5io import write_exchange

    data = write_exchange(tmp_path / "pairs.h5", engine_pairs[0][:200], engine_pairs[1])
    mlkkr = str(Path(sys.executable).parent / "mlkkr")
    args = ["train", "exchange", "--data", str(data), "--epochs", "5", "--batch-size", "16", "--mul", "8",
            "--latent", "16", "--layers", "1", "--r-env", "4.5", "--r-host", "4.5", "--threads", "1", "--no-progress",
            "--no-baseline"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([mlkkr, *args, "-o", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([mlkkr, *args, "-o", str(tmp_path / "cut")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.is_file() and torch.load(ckpt, weights_only=False)["state"]["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "model.json").exists()
    done = subprocess.run([mlkkr, *args, "-o", str(tmp_path / "cut"), "--resume"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming after epoch" in done.stderr
    a = torch.load(tmp_path / "full" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "weights.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)
    assert not list((tmp_path / "cut").glob(".*.tmp"))


def test_a_model_folder_of_another_format_is_refused(tmp_path):
    """Format 1 (the hand-written tensor product, no ``format``/``architecture`` in model.json) does not load."""
    (tmp_path / "model.json").write_text(json.dumps({"kind": "exchange", "model": {"species": ["Fe"]}}))
    with pytest.raises(InputError, match=r"model.json:format: .*format 1 network.*retrain it; allowed: 2"):
        load_model(tmp_path)
