"""Model folders travel through the shared store (issue 15). Before the fix a changed weights file loaded
silently (other predictions, exit 0), a truncated model.json gave a JSONDecodeError traceback, NaN in
model.json's statistics gave NaN predictions with exit 0, and a missing weights.pt a FileNotFoundError
traceback. Now saving records the SHA-256 of every weight/array file in model.json ("files") and loading
verifies it; every fault is an InputError naming the file or key (exit 2 on the command line), and a good
model, or one written before checksums were recorded, predicts exactly the same numbers as before."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mlkkr.cli import main
from mlkkr.data.h5io import write_embeddings, write_exchange, write_radial
from mlkkr.data.schema import ExchangePair, ImpurityEmbedding, RadialEmbedding
from mlkkr.errors import InputError
from mlkkr.models.potential import PotentialModel
from mlkkr.models.potential_radial import RadialConfig, RadialPotentialModel
from mlkkr.train.exchange import load_model

torch.set_num_threads(1)
A = 4.38
TINY = ["--mul", "2", "--latent", "8", "--layers", "1", "--r-env", "4.5", "--r-host", "4.5", "--threads", "1",
        "--no-progress", "--epochs", "2"]
PAIRS_JSON = {"pairs": [{"host": "ti", "species_i": "Fe", "species_j": "Mn", "position_i": [0, 0, 0],
                         "position_j": [A, 0, 0], "environment": [{"species": "Sb", "position": [0, A, 0]}]},
                        {"host": "ti", "species_i": "Mn", "species_j": "Fe", "position_i": [0, 0, 0],
                         "position_j": [A, A, 0], "environment": []}]}


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def edit_meta(folder, change):
    meta = json.loads((folder / "model.json").read_text())
    change(meta)
    (folder / "model.json").write_text(json.dumps(meta))  # json writes NaN/Infinity as such


# -- exchange ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exchange_model(tmp_path_factory):
    """A tiny exchange model trained through the CLI on 48 synthetic pairs (2 epochs, with baseline)."""
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(48):
        bond = np.array([A, 0, 0]) * (1 + k % 3) if k % 2 else np.array([A, A, 0]) * (1 + k % 2)
        t = rng.normal(size=(3, 3)) + np.eye(3) * (5.0 / (1 + k % 3))
        pairs.append(ExchangePair(host="ti", species_i=["Fe", "Mn"][k % 2], species_j="Fe", position_i=np.zeros(3),
                                  position_j=bond, tensor=t, environment_species=["Sb"],
                                  environment_positions=[[0, A, 0.05 * k]],  # 48 distinct environments
                                  cell=A * np.eye(3), provenance={"source": "synthetic", "sample_index": k}))
    root = tmp_path_factory.mktemp("exc")
    data = write_exchange(root / "pairs.h5", pairs, {"source": "tests/security/test_model_files.py"})
    out = root / "model"
    res = CliRunner().invoke(main, ["train", "exchange", "--data", str(data), "-o", str(out), *TINY, "--json"])
    assert res.exit_code == 0, res.output
    src = root / "pairs.json"
    src.write_text(json.dumps(PAIRS_JSON))
    return out, src, data


def predict(kind, folder, src):
    """``mlkkr predict KIND FOLDER SRC --json``: (exit code, output)."""
    res = CliRunner().invoke(main, ["predict", kind, str(folder), str(src), "--json"])
    return res.exit_code, res.output


def test_exchange_model_records_checksums_and_still_predicts(exchange_model, tmp_path):
    folder, src, _ = exchange_model
    meta = json.loads((folder / "model.json").read_text())
    assert meta["files"] == {n: sha(folder / n) for n in ("weights.pt", "baseline.npz", "split.npz")}
    code, out = predict("exchange", folder, src)
    assert code == 0, out
    cli = np.array([p["tensor_meV"] for p in json.loads(out)["pairs"]])
    assert cli.shape == (2, 3, 3) and np.isfinite(cli).all()
    api = load_model(folder)
    assert api.meta["files"] == meta["files"]
    # a folder written before checksums were recorded (no "files") loads as before: the same numbers
    old = copy(folder, tmp_path / "old")
    edit_meta(old, lambda m: m.pop("files"))
    code, out2 = predict("exchange", old, src)
    assert code == 0, out2
    assert np.array_equal(np.array([p["tensor_meV"] for p in json.loads(out2)["pairs"]]), cli)


def test_exchange_changed_or_missing_files_are_refused(exchange_model, tmp_path):
    folder, src, data = exchange_model
    # a weights file from "another run": valid torch file, one weight changed
    bad = copy(folder, tmp_path / "changed")
    state = torch.load(bad / "weights.pt", weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 0.5
    torch.save(state, bad / "weights.pt")
    code, out = predict("exchange", bad, src)
    assert code == 2, out
    assert "weights.pt does not match its recorded checksum" in out and "Traceback" not in out
    with pytest.raises(InputError, match="weights.pt does not match its recorded checksum"):
        load_model(bad)
    # the baseline and the split are checked too (evaluate reads both)
    bad = copy(folder, tmp_path / "baseline")
    with (bad / "baseline.npz").open("ab") as f:
        f.write(b"\0")
    res = CliRunner().invoke(main, ["evaluate", str(bad), "--data", str(data), "--no-plots"])
    assert res.exit_code == 2 and "baseline.npz does not match its recorded checksum" in res.output, res.output
    # missing weights: with checksums recorded, and in an old folder without them
    for label, drop_files in (("recorded", False), ("old", True)):
        gone = copy(folder, tmp_path / f"gone-{label}")
        (gone / "weights.pt").unlink()
        if drop_files:
            edit_meta(gone, lambda m: m.pop("files"))
        code, out = predict("exchange", gone, src)
        assert code == 2 and "weights.pt is missing" in out and "Traceback" not in out, out
    # a damaged weights.pt in an old folder is a clear error as well, not a torch traceback
    old = copy(folder, tmp_path / "old-cut")
    edit_meta(old, lambda m: m.pop("files"))
    (old / "weights.pt").write_bytes((folder / "weights.pt").read_bytes()[:100])
    code, out = predict("exchange", old, src)
    assert code == 2 and "weights.pt is damaged" in out, out
    # a checksum table that points outside the folder is refused, not followed
    out_of = copy(folder, tmp_path / "outside")
    edit_meta(out_of, lambda m: m["files"].update({"../pairs.h5": "0" * 64}))
    code, out = predict("exchange", out_of, src)
    assert code == 2 and "outside the model folder" in out, out


def test_exchange_truncated_or_non_json_model_json(exchange_model, tmp_path):
    folder, src, data = exchange_model
    text = (folder / "model.json").read_text()
    for label, body in (("cut", text[: len(text) // 2]), ("binary", "\x00\xff garbage"), ("list", "[1, 2]")):
        bad = copy(folder, tmp_path / label)
        (bad / "model.json").write_text(body, encoding="latin-1")
        code, out = predict("exchange", bad, src)
        assert code == 2 and "model.json" in out and "Traceback" not in out, (label, out)
        assert ("not valid JSON" in out) if label != "list" else ("not a JSON object" in out)
        # mlkkr evaluate reads model.json first to find the kind
        res = CliRunner().invoke(main, ["evaluate", str(bad), "--data", str(data)])
        assert res.exit_code == 2 and "model.json" in res.output and "Traceback" not in res.output, res.output


@pytest.mark.parametrize(("path", "value"), [(("model", "stats", "std0"), float("nan")),
                                             (("model", "stats", "mean0"), float("inf")),
                                             (("model", "r_env"), float("-inf"))])
def test_exchange_non_finite_statistics_are_refused(exchange_model, tmp_path, path, value):
    folder, src, _ = exchange_model
    bad = copy(folder, tmp_path / "nan")

    def change(meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    edit_meta(bad, change)
    code, out = predict("exchange", bad, src)
    key = "model.json:" + ".".join(path)
    assert code == 2 and key in out and "not a finite number" in out, out
    # reports may hold NaN (an R² of a constant truth): that still loads
    ok = copy(folder, tmp_path / "nan-metric")
    edit_meta(ok, lambda m: m["metrics"].setdefault("val", {}).update({"note": float("nan")}))
    assert predict("exchange", ok, src)[0] == 0


# -- potential (JL ridge) ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def potential_model(tmp_path_factory):
    """A tiny JL ridge model trained through the CLI on 12 synthetic embeddings (smooth ΔV)."""
    rng = np.random.default_rng(1)
    records = []
    for k in range(12):
        pos = np.vstack([np.zeros(3), rng.uniform(-3, 3, (2, 3))])
        grid = np.vstack([pos, rng.uniform(-1.5, 1.5, (20, 3))])  # every point within the cutoff
        sp = ["Fe", ["Sn", "Se"][k % 2], "Fe"]
        dv = sum(np.exp(-np.linalg.norm(grid - p, axis=1)) * (1.0 if s == "Fe" else -0.5)
                 for p, s in zip(pos, sp, strict=True))
        records.append(ImpurityEmbedding(host="metal", species=sp, positions=pos, grid=grid, delta_v=dv,
                                         provenance={"source": "synthetic", "sample_index": k}))
    root = tmp_path_factory.mktemp("pot")
    data = write_embeddings(root / "emb.h5", records, {"source": "tests/security"})
    out = root / "jl"
    res = CliRunner().invoke(main, ["train", "potential", "--data", str(data), "-o", str(out), "--cutoff", "5",
                                    "--n-max", "3", "--n-max3", "1", "--l-max", "1", "--folds", "3",
                                    "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    src = root / "in.json"
    src.write_text(json.dumps({"species": ["Fe", "Sn"], "positions": [[0, 0, 0], [2, 0, 0]],
                               "grid": [[0, 0, 0], [1, 0, 0], [0, 1, 1]]}))
    return out, src, data


def test_potential_model_checksums(potential_model, tmp_path):
    folder, src, data = potential_model
    meta = json.loads((folder / "model.json").read_text())
    assert meta["files"] == {"weights.npz": sha(folder / "weights.npz")}
    code, out = predict("potential", folder, src)
    assert code == 0, out
    good = json.loads(out)["delta_v_eV"]
    model, _ = PotentialModel.load(folder)
    np.testing.assert_array_equal(model.predict_points(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1]], float),
                                                       np.array([[0, 0, 0], [2, 0, 0]], float), ["Fe", "Sn"]),
                                  good[0])
    old = copy(folder, tmp_path / "old")
    edit_meta(old, lambda m: m.pop("files"))
    code, out = predict("potential", old, src)
    assert code == 0 and json.loads(out)["delta_v_eV"] == good, out
    # changed coefficients (a valid npz)
    bad = copy(folder, tmp_path / "changed")
    with np.load(bad / "weights.npz") as w:
        arrays = dict(w)
    arrays["coef"] = arrays["coef"] * 2
    np.savez(bad / "weights.npz", **arrays)
    code, out = predict("potential", bad, src)
    assert code == 2 and "weights.npz does not match its recorded checksum" in out, out
    (bad / "weights.npz").unlink()
    code, out = predict("potential", bad, src)
    assert code == 2 and "weights.npz is missing" in out, out
    # truncated model.json, through predict and evaluate
    cut = copy(folder, tmp_path / "cut")
    (cut / "model.json").write_text((folder / "model.json").read_text()[:40])
    code, out = predict("potential", cut, src)
    assert code == 2 and "model.json is not valid JSON" in out, out
    res = CliRunner().invoke(main, ["evaluate", str(cut), "--data", str(data)])
    assert res.exit_code == 2 and "model.json is not valid JSON" in res.output, res.output
    # NaN in the descriptor configuration
    nan = copy(folder, tmp_path / "nan")
    edit_meta(nan, lambda m: m["descriptor"].update({"cutoff": float("nan")}))
    code, out = predict("potential", nan, src)
    assert code == 2 and "model.json:descriptor.cutoff" in out and "not a finite number" in out, out


# -- potential-radial ----------------------------------------------------------------------------------
def radial_record(element: str, z: float) -> RadialEmbedding:
    r = np.concatenate([1e-5 * (np.exp(np.linspace(0, 11, 120)) - 1), np.linspace(1.2, 1.8, 40)])
    pos = np.array([[0, 0, 0], [1.8, 1.8, 0], [1.8, 0, 1.8]])
    amp = (z - 29.0) / 3
    dv = [amp * np.exp(-r / 0.3), 0.1 * amp * np.exp(-r), 0.1 * amp * np.exp(-r)]
    return RadialEmbedding(host="fcc-Cu", species=[element, "Cu", "Cu"], z=[z, 29.0, 29.0],
                           host_species=["Cu"] * 3, host_z=[29.0] * 3, positions=pos, r=[r] * 3, delta_v=dv,
                           cell=1.805 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]), converged=True, rms=1e-7,
                           iterations=10, provenance={"source": "synthetic", "element": element})


def test_radial_model_checksums(tmp_path):
    recs = [radial_record(e, z) for e, z in (("V", 23), ("Cr", 24), ("Mn", 25), ("Fe", 26), ("Co", 27))]
    model = RadialPotentialModel(RadialConfig(n_radial=8, n_max=1)).fit(recs)
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["files"] == {"weights.npz": sha(folder / "weights.npz")}
    template = write_radial(tmp_path / "t.h5", recs[:1], {"source": "tests/security"})
    args = ["predict", "potential-radial", str(folder), "--like", str(template), "--element", "Mn", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    good = res.output
    old = copy(folder, tmp_path / "old")
    edit_meta(old, lambda m: m.pop("files"))
    assert [a.tolist() for a in RadialPotentialModel.load(old).predict_atoms(recs[2])] == \
        [a.tolist() for a in model.predict_atoms(recs[2])]
    bad = copy(folder, tmp_path / "bad")
    with np.load(bad / "weights.npz") as w:
        arrays = dict(w)
    arrays["intercept"] = arrays["intercept"] + 1
    np.savez(bad / "weights.npz", **arrays)
    res = CliRunner().invoke(main, [args[0], args[1], str(bad), *args[3:]])
    assert res.exit_code == 2 and "weights.npz does not match its recorded checksum" in res.output, res.output
    cut = copy(folder, tmp_path / "cut")
    (cut / "model.json").write_text("{\"kind\": \"potential-radial\", ")
    res = CliRunner().invoke(main, [args[0], args[1], str(cut), *args[3:]])
    assert res.exit_code == 2 and "model.json is not valid JSON" in res.output, res.output
    nan = copy(folder, tmp_path / "nan")
    edit_meta(nan, lambda m: m.update({"r_max": float("inf")}))
    with pytest.raises(InputError, match="model.json:r_max"):
        RadialPotentialModel.load(nan)
    # the good folder is untouched by all this and predicts as before
    assert CliRunner().invoke(main, args).output == good


# -- HDF5 temporaries of killed writes -----------------------------------------------------------------
def test_a_killed_hdf5_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    """A writer killed inside the write left ``.NAME.*.h5.tmp`` behind for ever; now the next write of the same
    target removes it (its process is gone), and keeps what may still be in use."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from mlkkr.data.h5io import read_exchange

    target = tmp_path / "pairs.h5"
    kill = ("import os, sys; from mlkkr.data.h5io import atomic_write; "
            "atomic_write(sys.argv[1], lambda f: (f.create_dataset('x', data=[1, 2, 3]), f.flush(), os._exit(9)))")
    run = subprocess.run([sys.executable, "-c", kill, str(target)], capture_output=True, text=True)
    assert run.returncode == 9, run.stderr
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".pairs.h5.") and left[0].endswith(".h5.tmp"), left
    assert not target.exists()
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    files = {
        "live": f".pairs.h5.{host}-{os.getpid()}.abcd1234.h5.tmp",       # a writer still running: kept
        "fresh_old_format": ".pairs.h5.abcdefgh.h5.tmp",                 # unknown writer, recent: kept
        "aged_old_format": ".pairs.h5.zyxw_987.h5.tmp",                  # unknown writer, 2 h old: removed
        "dead_pid": f".pairs.h5.{host}-{dead_pid}.q1w2e3r4.h5.tmp",      # its writer is gone: removed
        "other_host": f".pairs.h5.elsewhere-{dead_pid}.a1s2d3f4.h5.tmp",  # another host, recent: kept
        "other_target": f".other.h5.{host}-{dead_pid}.z9x8c7v6.h5.tmp",   # another target: kept
        "user_file": ".pairs.h5.notes.txt",                               # not a temporary: kept
    }
    for name in files.values():
        (tmp_path / name).write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / files["aged_old_format"], (two_hours_ago, two_hours_ago))
    os.symlink(tmp_path / files["live"], tmp_path / ".pairs.h5.linklink.h5.tmp")  # a link is never followed
    os.utime(tmp_path / ".pairs.h5.linklink.h5.tmp", (two_hours_ago, two_hours_ago), follow_symlinks=False)
    pair = ExchangePair(host="ti", species_i="Fe", species_j="Fe", position_i=np.zeros(3), position_j=[A, 0, 0],
                        tensor=np.eye(3))
    write_exchange(target, [pair], {"source": "tests/security"})
    assert len(read_exchange(target)) == 1
    now = {p.name for p in tmp_path.iterdir()}
    assert left[0] not in now  # the killed writer's temporary is gone
    assert files["aged_old_format"] not in now and files["dead_pid"] not in now
    for key in ("live", "fresh_old_format", "other_host", "other_target", "user_file"):
        assert files[key] in now, key
    assert ".pairs.h5.linklink.h5.tmp" in now and (tmp_path / files["live"]).read_bytes() == b"partial"
    assert now == {"pairs.h5", ".pairs.h5.linklink.h5.tmp",
                   *(files[k] for k in ("live", "fresh_old_format", "other_host", "other_target", "user_file"))}
