"""Dataset records, HDF5 IO (schema, determinism, atomic writes) and the ``mlkkr engine`` / ``mlkkr data``
commands, including bad input: the error names the field and no output file is left."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlkkr.cli import main
from mlkkr.data import (
    ExchangePair,
    ImpurityEmbedding,
    dmi_from_aiida_kkr,
    h5io,
    read_embeddings,
    read_exchange,
    read_parameters,
    write_embeddings,
    write_exchange,
)
from mlkkr.data.builders import ExchangeSampler, build_exchange
from mlkkr.greens import ENGINE_VERSION, Engine, decompose, make_host

INPUT = """
[host]
name = "ti"
[kgrid]
n = 12
[[defects]]
element = "Mn"
position = [0, 0, 0]
[[defects]]
element = "Fe"
position = [0, 0, 1]
[[defects]]
element = "Sn"
position = [1, 0, 0]
"""

INPUT_YAML = """
host: {name: ti}
kgrid: {n: 12}
defects:
  - {element: Mn, position: [0, 0, 0]}
  - {element: Fe, position: [0, 0, 1]}
  - {element: Sn, position: [1, 0, 0]}
"""


def run(args: list[str]):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    return result.exit_code, text


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".h5", ".tmp") or ".h5." in p.name)


def test_dmi_conversion_from_aiida_kkr():
    t = np.random.default_rng(3).normal(size=(3, 3))
    d_aiida = np.array([t[1, 2] - t[2, 1], t[2, 0] - t[0, 2], t[0, 1] - t[1, 0]])
    np.testing.assert_allclose(dmi_from_aiida_kkr(d_aiida), decompose(t).D, atol=1e-15)


def test_exchange_pair_properties_and_host_sites():
    pair = ExchangePair(host="ti", species_i="Mn", species_j="Fe", position_i=[0, 0, 0], position_j=[1, 0, 0],
                        tensor=np.diag([1.0, 2.0, 3.0]))
    assert pair.J == pytest.approx(2.0) and pair.distance == 1.0
    assert np.allclose(pair.D, 0) and np.trace(pair.S) == pytest.approx(0)
    assert len(pair.host_sites(1.0)) == 10  # the 6 + 6 neighbours of i and j, minus i and j


def test_roundtrip_and_schema(tmp_path):
    pairs = [ExchangePair(host="ti", species_i="Mn", species_j="Fe", position_i=[0, 0, 0],
                          position_j=[4.38, 0, 0], tensor=np.arange(9.0).reshape(3, 3),
                          environment_species=["Sn", "Vac"], environment_positions=[[0, 4.38, 0], [0, 0, 4.38]],
                          cell=4.38 * np.eye(3), provenance={"source": "test", "sample_index": 7}),
             ExchangePair(host="ti", species_i="Co", species_j="Co", position_i=[0, 0, 0],
                          position_j=[0, 0, 8.76], tensor=np.eye(3), provenance={"source": "test"})]
    path = write_exchange(tmp_path / "x.h5", pairs, {"engine_version": ENGINE_VERSION})
    back = read_exchange(path)
    assert [p.environment_species for p in back] == [["Sn", "Vac"], []]
    np.testing.assert_array_equal(back[0].tensor, pairs[0].tensor)
    assert back[0].provenance == {"source": "test", "sample_index": 7} and back[1].provenance == {"source": "test"}
    assert read_parameters(path)["engine_version"] == ENGINE_VERSION
    import h5py

    with h5py.File(path) as f:
        assert f.attrs["schema"] == "mlkkr.exchange" and f.attrs["schema_version"] == 1
        assert f["exchange/tensor"].attrs["units"] == "meV" and f["exchange/position_i"].attrs["units"] == "angstrom"
        np.testing.assert_allclose(f["exchange/D"][0], decompose(pairs[0].tensor).D)
    emb = [ImpurityEmbedding(host="metal", species=["Fe"], positions=[[0, 0, 0]], grid=[[0, 0, 0], [2.87, 0, 0]],
                             delta_v=[0.3, 0.01], provenance={"source": "test"})]
    back_e = read_embeddings(write_embeddings(tmp_path / "e.h5", emb, {}))
    np.testing.assert_array_equal(back_e[0].delta_v, [0.3, 0.01])
    assert np.all(np.isnan(back_e[0].delta_n))


def test_error_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5io, "_provenance", boom)
    pair = ExchangePair(host="ti", species_i="Mn", species_j="Fe", position_i=[0, 0, 0], position_j=[1, 0, 0],
                        tensor=np.eye(3))
    with pytest.raises(RuntimeError):
        write_exchange(tmp_path / "x.h5", [pair], {})
    assert leftovers(tmp_path) == []


def test_records_regenerate_from_seed_and_index():
    eng = Engine(make_host("ti"), 16)
    sampler = ExchangeSampler()
    records, params = build_exchange(eng, 12, 11, sampler)
    assert params["engine_version"] == ENGINE_VERSION and params["seed"] == 11
    assert {len(r.environment_species) for r in records} >= {0, 1, 2}
    again, _ = build_exchange(eng, 1, 11, sampler)  # record 0 alone
    np.testing.assert_array_equal(again[0].tensor, records[0].tensor)
    r5 = records[5]
    assert r5.provenance["sample_index"] == 5 and r5.provenance["kgrid"]["n"] == 16


def test_engine_exchange_toml_yaml_and_determinism(tmp_path):
    (tmp_path / "in.toml").write_text(INPUT)
    (tmp_path / "in.yaml").write_text(INPUT_YAML)
    code, out = run(["engine", "exchange", str(tmp_path / "in.toml"), "-o", str(tmp_path / "a.h5"), "--json"])
    assert code == 0, out
    summary = json.loads(out)
    assert summary["pairs"][0]["species"] == ["Mn", "Fe"] and abs(summary["pairs"][0]["J_meV"]) > 0.1
    assert run(["engine", "exchange", str(tmp_path / "in.toml"), "-o", str(tmp_path / "b.h5")])[0] == 0
    assert run(["engine", "exchange", str(tmp_path / "in.yaml"), "-o", str(tmp_path / "c.h5")])[0] == 0
    assert digest(tmp_path / "a.h5") == digest(tmp_path / "b.h5")
    np.testing.assert_array_equal(read_exchange(tmp_path / "c.h5")[0].tensor,
                                  read_exchange(tmp_path / "a.h5")[0].tensor)
    params = read_parameters(tmp_path / "a.h5")
    assert params["engine_version"] == ENGINE_VERSION and params["contour"]["n_poles"] == 5
    assert params["defects"][2] == {"element": "Sn", "position": [1, 0, 0]}


def test_engine_embed(tmp_path):
    (tmp_path / "in.toml").write_text(INPUT.replace('name = "ti"', 'name = "metal"'))
    code, out = run(["engine", "embed", str(tmp_path / "in.toml"), "-o", str(tmp_path / "e.h5"), "--json"])
    assert code == 0, out
    rec = read_embeddings(tmp_path / "e.h5")[0]
    assert rec.species == ["Mn", "Fe", "Sn"] and len(rec.grid) == len(rec.delta_v) > 40
    assert json.loads(out)["iterations"] == rec.iterations


def test_data_commands_deterministic(tmp_path):
    args = ["data", "exchange", "--n", "40", "--seed", "5", "--kgrid", "16", "--no-progress"]
    assert run(args + ["-o", str(tmp_path / "a.h5")])[0] == 0
    code, out = run(args + ["-o", str(tmp_path / "b.h5"), "--json"])
    assert code == 0 and json.loads(out)["records"] == 40
    assert digest(tmp_path / "a.h5") == digest(tmp_path / "b.h5")
    other = ["data", "exchange", "--n", "40", "--seed", "6", "--kgrid", "16", "--no-progress",
             "-o", str(tmp_path / "c.h5")]
    assert run(other)[0] == 0 and digest(tmp_path / "c.h5") != digest(tmp_path / "a.h5")
    pot = ["data", "potential", "--n", "2", "--seed", "1", "--host", "metal", "--kgrid", "16", "--max-defects", "2",
           "--no-progress"]
    code, out = run(pot + ["-o", str(tmp_path / "p.h5")])
    assert code == 0, out
    assert run(pot + ["-o", str(tmp_path / "q.h5")])[0] == 0
    assert digest(tmp_path / "p.h5") == digest(tmp_path / "q.h5")
    assert len(read_embeddings(tmp_path / "p.h5")) == 2


BAD = {
    "unknown element": (INPUT.replace('"Sn"', '"Xx"'), "exchange", "defects[2].element"),
    "two defects on one site": (INPUT.replace("[1, 0, 0]", "[0, 0, 1]"), "exchange", "defects[2].position"),
    "E_F outside the bands": (INPUT.replace('name = "ti"', 'name = "ti"\nfermi_level = 9.0'), "exchange",
                              "host.fermi_level"),
    "SCF not converging": (INPUT + "[scf]\nmax_iterations = 1\n", "embed", "scf.max_iterations"),
    "malformed TOML": (INPUT.replace("[[defects]]", "[[defects]", 1), "exchange", "INPUT"),
    "unknown table": (INPUT + "[magnets]\nx = 1\n", "exchange", "magnets"),
    "not magnetic pair": (INPUT + "[exchange]\npairs = [[0, 2]]\n", "exchange", "exchange.pairs[0]"),
    "bad contour": (INPUT + "[contour]\nn_poles = -3\n", "exchange", "contour.n_poles"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_the_field_and_leaves_no_file(tmp_path, case):
    text, task, field = BAD[case]
    (tmp_path / "in.toml").write_text(text)
    code, out = run(["engine", task, str(tmp_path / "in.toml"), "-o", str(tmp_path / "out.h5")])
    assert code == 2, out
    assert f"Error: {field}" in out
    assert leftovers(tmp_path) == []


def test_malformed_yaml_and_missing_file(tmp_path):
    (tmp_path / "in.yaml").write_text("defects: [ {element: Mn, position: [0, 0, 0]\n")
    code, out = run(["engine", "exchange", str(tmp_path / "in.yaml"), "-o", str(tmp_path / "out.h5")])
    assert code == 2 and "Error: INPUT" in out and "malformed YAML" in out
    code, out = run(["engine", "exchange", str(tmp_path / "none.toml"), "-o", str(tmp_path / "out.h5")])
    assert code == 2 and "Error: INPUT" in out
    code, out = run(["data", "exchange", "--n", "0", "--seed", "1", "-o", str(tmp_path / "out.h5")])
    assert code == 2 and "Error: n" in out
    code, out = run(["data", "exchange", "--n", "5", "--seed", "1", "--kgrid", "8", "-o", str(tmp_path / "out.h5")])
    assert code == 2 and "Error: cutoff" in out
    assert leftovers(tmp_path) == []
