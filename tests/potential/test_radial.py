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
from mlkkr.train.potential_radial import (
    leave_one_element_out,
    nearest_element_baseline,
    superposition_baseline,
    usable,
)

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


def synthetic_pair(a: str, b: str, extra: float = 0.0) -> RadialEmbedding:
    """a at the origin, b on its nearest-neighbour site, the two 13-atom clusters joined (20 atoms): ΔV of each
    atom is the sum of what each single puts there, plus ``extra`` × a bump on the two impurity sites."""
    sa, sb = synthetic(a), synthetic(b)
    off = sa.positions[9]  # a nearest neighbour, NN·(0, 1, 1)/√2
    pos = list(sa.positions)
    for p in sb.positions + off:
        if min(np.linalg.norm(np.array(pos) - p, axis=1)) > 1e-6:
            pos.append(p)
    pos = np.array(pos)
    species = ["Cu"] * len(pos)
    species[0], species[9] = a, b
    z = [float(ROW3D.get(x, 29)) for x in species]
    r = [mesh() for _ in pos]
    dv = []
    for i, p in enumerate(pos):
        v = np.zeros_like(r[i])
        for single, centre in ((sa, np.zeros(3)), (sb, off)):
            d = np.linalg.norm(single.positions - (p - centre), axis=1)
            if d.min() < 1e-6:
                v = v + single.delta_v[int(d.argmin())]
        dv.append(v + (extra * np.exp(-r[i] / 0.5) if i in (0, 9) else 0.0))
    return RadialEmbedding(host="fcc-Cu", species=species, z=z, host_species=["Cu"] * len(pos),
                           host_z=[29.0] * len(pos), positions=pos, r=r, delta_v=dv, cell=sa.cell)


def test_superposition_of_singles_and_no_leak_of_a_held_out_element_through_its_pairs():
    singles = [synthetic(e) for e in ("Ti", "V", "Cr", "Mn", "Fe", "Co")]
    pair = synthetic_pair("Fe", "Co")
    assert len(pair.z) == 20 and pair.impurity == "Fe+Co" and pair.impurity_elements == {"Fe", "Co"}
    sup = superposition_baseline(pair, singles)
    assert max(np.abs(s - v).max() for s, v in zip(sup, pair.delta_v, strict=True)) < 1e-9  # additive: exact
    bumped = synthetic_pair("Fe", "Co", extra=0.5)
    sup = superposition_baseline(bumped, singles)
    assert np.abs(bumped.delta_v[0] - sup[0]).max() == pytest.approx(0.5, rel=1e-3)  # the non-additive part
    unknown = synthetic_pair("Fe", "Fe")
    unknown.species[0] = "Ni"
    with pytest.raises(InputError, match="no single embedding of Ni"):
        superposition_baseline(unknown, singles)
    # Fe held out: neither its single nor a pair holding it is trained on
    recs = singles + [pair, synthetic_pair("Mn", "Mn")]
    res = leave_one_element_out(recs, RadialConfig(n_radial=20, n_max=2))
    assert [r["element"] for r in res["per_element"]] == ["Ti", "V", "Cr", "Mn", "Fe", "Co"]
    leaky = RadialPotentialModel(RadialConfig(n_radial=20, n_max=2)).fit([r for r in recs if r.impurity != "Fe"])
    fair = RadialPotentialModel(RadialConfig(n_radial=20, n_max=2)).fit(
        [r for r in recs if "Fe" not in r.impurity_elements])
    assert res["per_element"][4]["model"] == errors([singles[4]], [fair.predict_atoms(singles[4])])
    assert leaky.predict_atoms(singles[4])[0].tolist() != fair.predict_atoms(singles[4])[0].tolist()


def test_pair_terms_learn_what_is_not_additive_from_other_pairs(tmp_path):
    """Pairs whose impurity sites carry a non-additive bump ∝ Δt_a Δt_b (t: the group coordinate of χ):
    singles cannot teach it, other pairs can — with the defect–defect term, a held-out pair gets it."""
    t = {e: (group_period(ROW3D[e])[0] - 7.5) / 4.5 - (11 - 7.5) / 4.5 for e in ROW3D}
    singles = [synthetic(e) for e in ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni")]
    names = [("Cr", "Cr"), ("Mn", "Mn"), ("Fe", "Fe"), ("Co", "Co"), ("Mn", "Fe"), ("Cr", "Co"), ("Fe", "Co")]
    pairs = [synthetic_pair(a, b, extra=2.0 * t[a] * t[b]) for a, b in names]
    held = pairs[-1]
    nonadd = [v - s for v, s in zip(held.delta_v, superposition_baseline(held, singles), strict=True)]
    plain = RadialPotentialModel(RadialConfig(n_radial=20, n_max=2, degrees=(3,))).fit(singles + pairs[:-1])
    terms = RadialPotentialModel(RadialConfig(n_radial=20, n_max=2, degrees=(3,), pair_terms=True)).fit(
        singles + pairs[:-1])
    assert terms.n_features == plain.n_features + 9 * 2

    def rel(model):
        sup = superposition_baseline(held, singles)
        pred = model.predict_atoms(held)
        num = sum(np.sum((p - s - n) ** 2) for p, s, n in zip(pred, sup, nonadd, strict=True))
        return float(np.sqrt(num / sum(np.sum(n ** 2) for n in nonadd)))

    assert rel(terms) < 0.1 < rel(plain), (rel(terms), rel(plain))
    again = RadialPotentialModel.load(terms.save(tmp_path / "m"))
    assert again.config.pair_terms and np.allclose(again.predict_atoms(held)[0], terms.predict_atoms(held)[0])
    # on a single impurity the term is zero: the same features as without it, padded
    f = terms.atom_features(singles[3])
    assert np.all(f[:, plain.n_features:] == 0) and np.array_equal(f[:, :plain.n_features],
                                                                    plain.atom_features(singles[3]))


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
