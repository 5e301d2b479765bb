"""All-electron ML-ES pieces without AiiDA: the radial record and its HDF5 file, the chemistry encoding,
the exact nuclear term, and the radial JL model on profiles whose Z-dependence is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlkkr.data.h5io import read_radial, write_exchange, write_radial
from mlkkr.data.schema import COULOMB_EV_A, RadialEmbedding, nuclear_term
from mlkkr.errors import InputError
from mlkkr.models.potential_radial import RadialConfig, RadialPotentialModel, chemistry, errors, group_period
from mlkkr.train.potential_radial import leave_one_element_out, nearest_element_baseline, usable

A = 3.61
NN = A / np.sqrt(2)
ROW3D = {"Sc": 21, "Ti": 22, "V": 23, "Cr": 24, "Mn": 25, "Fe": 26, "Co": 27, "Ni": 28, "Zn": 30}


def mesh(n_log: int = 300, n_panel: int = 120, r_mt: float = 1.2, r_max: float = 1.8) -> np.ndarray:
    """A KKR-like mesh: logarithmic to the muffin-tin radius, then linear panels (a repeated boundary point)."""
    b = 1e-5
    a = np.log(r_mt / b + 1) / (n_log - 1)
    log = b * (np.exp(a * np.arange(n_log)) - 1)
    return np.concatenate([log, np.linspace(r_mt, r_max, n_panel)])


def profile_family(z: float, r: np.ndarray, site: str) -> np.ndarray:
    """A smooth synthetic ΔV(r) whose amplitudes are cubic in the group: inside the model's span."""
    t = (group_period(z)[0] - 7.5) / 4.5
    t0 = (11 - 7.5) / 4.5  # Cu
    amp = lambda c: c[0] * (t - t0) + c[1] * (t * t - t0 * t0) + c[2] * (t ** 3 - t0 ** 3)  # noqa: E731
    if site == "impurity":
        return amp((30.0, -5.0, 2.0)) * np.exp(-r / 0.25) + amp((8.0, 1.0, -0.5)) / (r + 0.4)
    return amp((0.3, 0.1, 0.02)) * np.exp(-r / 0.8)


def synthetic(element: str, converged: bool = True) -> RadialEmbedding:
    z = float(ROW3D[element])
    shell = NN * np.array([[1, 1, 0], [1, -1, 0], [-1, 1, 0], [-1, -1, 0], [1, 0, 1], [1, 0, -1], [-1, 0, 1],
                           [-1, 0, -1], [0, 1, 1], [0, 1, -1], [0, -1, 1], [0, -1, -1]]) / np.sqrt(2)
    pos = np.vstack([np.zeros(3), shell])
    r = [mesh() for _ in pos]
    dv = [profile_family(z, r[0], "impurity")] + [profile_family(z, m, "nn") for m in r[1:]]
    return RadialEmbedding(host="fcc-Cu", species=[element] + ["Cu"] * 12, z=[z] + [29.0] * 12,
                           host_species=["Cu"] * 13, host_z=[29.0] * 13, positions=pos, r=r, delta_v=dv,
                           cell=A / 2 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]), converged=converged,
                           rms=1e-7 if converged else 0.03, iterations=30,
                           provenance={"source": "synthetic", "element": element})


def test_group_and_period_of_the_periodic_table():
    expected = {1: (1, 1), 2: (18, 1), 11: (1, 3), 17: (17, 3), 21: (3, 4), 26: (8, 4), 29: (11, 4), 30: (12, 4),
                39: (3, 5), 48: (12, 5), 57: (3, 6), 72: (4, 6), 79: (11, 6), 92: (3, 7)}
    assert {z: group_period(z) for z in expected} == expected
    with pytest.raises(InputError, match=r"z: 0 .*an atomic number 1 … 118"):
        group_period(0)
    # Cu and Ag differ only by the row term; Fe and Ru likewise
    assert np.allclose(chemistry(29)[:5], chemistry(47)[:5]) and chemistry(47)[5] == 1 and chemistry(29)[5] == 0
    assert len(chemistry(26, degree=3)) == 7


def test_nuclear_term_is_minus_two_delta_z_over_r_in_rydberg_and_bohr():
    from masci_tools.util.constants import BOHR_A, RY_TO_EV

    assert COULOMB_EV_A == pytest.approx(2 * RY_TO_EV * BOHR_A, rel=1e-6)
    r = np.array([0.0, 0.5, 1.0])
    v = nuclear_term(r, -3.0)
    assert v[0] == np.inf and v[2] == pytest.approx(3 * COULOMB_EV_A)
    assert not nuclear_term(r, 0.0).any()
    rec = synthetic("Fe")
    assert np.allclose(rec.delta_v_total(1), rec.delta_v[1])  # host atom: no nuclear term
    assert rec.delta_v_total(0)[5] == pytest.approx(rec.delta_v[0][5] + 3 * COULOMB_EV_A / rec.r[0][5])


def test_radial_file_round_trip_and_refusals(tmp_path):
    recs = [synthetic("Fe"), synthetic("Co", converged=False)]
    recs[1].r[3] = recs[1].r[3][:-7]  # ragged: meshes of different lengths survive
    recs[1].delta_v[3] = recs[1].delta_v[3][:-7]
    path = write_radial(tmp_path / "r.h5", recs, {"source": "test"})
    back = read_radial(path)
    assert [b.impurity for b in back] == ["Fe", "Co"] and [b.converged for b in back] == [True, False]
    for a, b in zip(recs, back, strict=True):
        assert a.species == b.species and np.array_equal(a.z, b.z) and np.allclose(a.positions, b.positions)
        assert all(np.array_equal(x, y) for x, y in zip(a.r, b.r, strict=True))
        assert all(np.array_equal(x, y) for x, y in zip(a.delta_v, b.delta_v, strict=True))
        assert b.provenance == a.provenance
    other = write_exchange(tmp_path / "x.h5", [], {})
    with pytest.raises(InputError, match="not an mlkkr.radial file"):
        read_radial(other)
    with pytest.raises(ValueError, match="atom 0: 300 mesh points but 299 values"):
        RadialEmbedding(host="h", species=["Fe"], z=[26], host_species=["Cu"], host_z=[29], positions=[[0, 0, 0]],
                        r=[mesh(300, 0)], delta_v=[np.zeros(299)])


def test_model_interpolates_a_held_out_element_of_a_known_family(tmp_path):
    """Profiles cubic in the group along the row: the held-out interior element is recovered almost exactly,
    far better than the nearest element's profile."""
    recs = [synthetic(e) for e in ROW3D]
    held = recs.pop(list(ROW3D).index("Mn"))
    cfg = RadialConfig(n_radial=24, n_max=2)
    model = RadialPotentialModel(cfg).fit(recs)
    assert model.info["basis_floor_relative_rmse"] < 2e-3
    err = errors([held], [model.predict_atoms(held)])
    base = errors([held], [nearest_element_baseline(held, recs)])
    assert err["all_relative_rmse"] < 0.01, err
    assert base["all_relative_rmse"] > 10 * err["all_relative_rmse"], (base, err)
    assert err["near_nucleus_relative_rmse"] < 0.01 and err["cell_boundary_relative_rmse"] < 0.05
    # saved and loaded: the same numbers; no pickle in the weights
    model.save(tmp_path / "m")
    again = RadialPotentialModel.load(tmp_path / "m")
    for a, b in zip(model.predict_atoms(held), again.predict_atoms(held), strict=True):
        assert np.array_equal(a, b)
    total = again.predict_total(held)
    assert total[0][0] == np.inf and np.isfinite(total[1]).all()  # ΔZ = −3 on the Mn site, 0 on Cu
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "kind": "exchange"}))
    with pytest.raises(InputError, match="not a potential-radial model"):
        RadialPotentialModel.load(tmp_path / "m")


def test_leave_one_element_out_flags_unconverged_and_reports_each_element():
    recs = [synthetic(e) for e in ("Ti", "V", "Cr", "Mn", "Fe", "Co")] + [synthetic("Ni", converged=False)]
    keep, skipped = usable(recs)
    assert len(keep) == 6 and skipped[0]["impurity"] == "Ni" and "not converged" in skipped[0]["reason"]
    res = leave_one_element_out(recs, RadialConfig(n_radial=20, n_max=2))
    assert [r["element"] for r in res["per_element"]] == ["Ti", "V", "Cr", "Mn", "Fe", "Co"]
    assert res["skipped"] == skipped and res["n_records"] == 6
    inner = {r["element"]: r["model"]["all_relative_rmse"] for r in res["per_element"]}
    assert max(inner[e] for e in ("V", "Cr", "Mn", "Fe")) < 0.01  # interpolation
    assert res["summary"]["n_held_out"] == 6
    with pytest.raises(InputError, match="need at least 4 usable embeddings"):
        leave_one_element_out(recs[:3])


def test_bad_configuration_and_data_are_refused():
    with pytest.raises(InputError, match="n_radial: 1"):
        RadialPotentialModel(RadialConfig(n_radial=1))
    with pytest.raises(InputError, match="r_s: -1"):
        RadialPotentialModel(RadialConfig(r_s=-1.0))
    bad = synthetic("Fe")
    bad.delta_v[2][10] = np.nan
    with pytest.raises(InputError, match=r"data\[0\]\.atom\[2\]"):
        RadialPotentialModel().fit([bad])
    with pytest.raises(InputError, match="no all-electron embeddings"):
        RadialPotentialModel().fit([])
