"""Real KKRimp potentials (Zn in Cu, aiida-kkr reference archives): reader and a JL fit.

Spot-check numbers were read by eye from the potential files inside the archives (the first value
of the first VM2Z line of a block, in Ry):

* kkrimp_full_wc, last KKRimp step (5 of 5), Zn block:  2.2969888361758D+02
* kkrimp_cached, converged KKRimp step (4 of 4), Zn:   2.2856071893694D+02
* host Cu of kkrimp_full_wc (GF write-out's out_potential):    2.2062365150084D+02
* host Cu of kkrimp_cached (host SCF's out_potential):          2.2064558110451D+02
"""

from __future__ import annotations

import numpy as np
import pytest

from mlkkr.descriptors import JLDescriptor, make_params
from mlkkr.errors import InputError
from mlkkr.models.potential import PotentialModel

pytestmark = pytest.mark.usefixtures("kkr_reference")

BOHR_A = 0.5291772108  # masci-tools' constant


@pytest.fixture(scope="module")
def full(kkr_reference):
    from mlkkr.aiida.readers_kkrimp import read_kkrimp_potential

    return read_kkrimp_potential(kkr_reference["kkrimp_full_wc.aiida"])


@pytest.fixture(scope="module")
def converged(kkr_reference):
    from mlkkr.aiida.readers_kkrimp import read_kkrimp_potential

    return read_kkrimp_potential(kkr_reference["kkrimp_cached.aiida"])


@pytest.fixture(scope="module")
def host_in_host(kkr_reference):
    from mlkkr.aiida.readers_kkrimp import read_kkrimp_potential

    return read_kkrimp_potential(kkr_reference["kkrimp_sub_wc.aiida"])


def first_value(text: str, block: int) -> float:
    """First VM2Z value of a block, read straight from the file text (independent of the reader)."""
    lines = text.splitlines()
    start = [i for i, line in enumerate(lines) if "exc:" in line][block]
    ncore = int(lines[start + 6].split()[0])
    return float(lines[start + 8 + ncore][:20].replace("D", "E"))


def test_cluster_mesh_and_state_of_the_unconverged_workflow(full):
    assert full.species == ["Zn"] + ["Cu"] * 12 and full.host_species == ["Cu"] * 13
    assert full.defects.tolist() == [0]
    assert not full.converged and full.rms == pytest.approx(0.02827)
    assert full.provenance["kkrimp_step"] == full.provenance["n_kkrimp_steps"] == 5
    alat = 4.8238197478830003 * BOHR_A
    d = np.linalg.norm(full.positions, axis=1)
    assert d[0] == 0 and np.allclose(d[1:], alat, atol=1e-9)  # 12 nearest neighbours of fcc Cu, Å
    for r in full.r:
        assert len(r) == 484 and r[0] == 0.0
        assert r[348] == pytest.approx(2.3877907762533468 * BOHR_A, rel=2e-4)  # muffin-tin radius
        assert r[-1] == pytest.approx(3.41096 * BOHR_A, rel=1e-5)  # KKR's RWS for fcc Cu
        assert np.all(np.diff(r) > -1e-7)  # panel boundaries repeat a radius (to 1e-8 Å)


def test_values_are_those_of_the_potential_files(kkr_reference, full, converged):
    from aiida import orm

    from mlkkr.aiida.readers_kkrimp import RY_TO_EV, retrieved_text

    # hard-coded numbers (read by eye, see the module docstring)
    assert full.v_imp_ry[0][0] == 2.2969888361758e02 and full.v_host_ry[0][0] == 2.2062365150084e02
    assert converged.v_imp_ry[0][0] == 2.2856071893694e02 and converged.v_host_ry[0][0] == 2.2064558110451e02
    assert full.delta_v_ry[0][0] == pytest.approx(2.2969888361758e02 - 2.2062365150084e02, abs=1e-10)
    assert full.delta_v_ev[0][0] == pytest.approx(full.delta_v_ry[0][0] * 13.605693122994)
    assert RY_TO_EV == 13.605693122994
    # and every atom's first value, read from the raw text of the last calculation's out_potential
    last = orm.load_node(full.provenance["kkrimp_calculation_uuid"])
    text = retrieved_text(last.outputs.retrieved, "out_potential")
    assert [first_value(text, i) for i in range(13)] == [v[0] for v in full.v_imp_ry]


def test_converged_potential_output_is_the_first_step_not_the_last(kkr_reference):
    from mlkkr.aiida.readers_kkrimp import identify_converged_potential

    info = identify_converged_potential(kkr_reference["kkrimp_full_wc.aiida"])
    assert info == {**info, "equals_step": 1, "n_steps": 5, "is_last": False, "workflow_converged": False}


def test_converged_workflow(converged, full):
    assert converged.converged and converged.rms < 1e-7
    assert converged.species == full.species
    # symmetry-equivalent Cu neighbours carry the same ΔV (to the SCF's accuracy)
    cu = np.array(converged.delta_v_ry[1:])
    assert np.max(np.abs(cu - cu[0])) < 1e-7
    # far from the nucleus the stored Zn ΔV is the screened +2/r of the extra nuclear charge:
    # the total ΔV = ΔV_stored − 2ΔZ/r vanishes at the cell boundary
    r_bohr = converged.r[0][-1] / BOHR_A
    assert converged.delta_v_ry[0][-1] - 2.0 / r_bohr == pytest.approx(0.0, abs=1e-5)


def test_host_in_host_reference(converged, host_in_host):
    """A Cu-in-Cu KKRimp run differs from its KKRhost potential (code/settings offsets); using it as
    the reference removes them from the Cu neighbours of Zn."""
    from mlkkr.aiida.readers_kkrimp import with_reference

    assert host_in_host.defects.size == 0 and host_in_host.converged
    hih = np.array(host_in_host.delta_v_ry)
    assert hih[:, 0] == pytest.approx(-3.233, abs=5e-3)  # at the nucleus, every atom
    assert np.max(np.abs(hih)) > 2.0
    rel = with_reference(converged, host_in_host)
    vs_host = np.abs(np.array(converged.delta_v_ry[1:])).max()
    vs_hih = np.abs(np.array(rel.delta_v_ry[1:])).max()
    assert vs_hih < 0.05 * vs_host
    assert np.array_equal(with_reference(host_in_host, host_in_host).delta_v_ry, np.zeros_like(hih))
    with pytest.raises(InputError, match="clusters differ"):
        bad = with_reference(converged, host_in_host)
        bad.positions = bad.positions + 0.1
        with_reference(bad, host_in_host)


def test_jl_fit_predicts_held_out_atoms_better_than_the_mean(converged):
    """Train on the shells of the Zn atom and 9 Cu atoms, predict the 3 held-out Cu atoms.

    Shells from r = 0.1 Å outwards (every 4th mesh point): inside, in the core region, ΔV is
    dominated by KKRhost-vs-KKRimp offsets (see test_host_in_host_reference) and the cosine radial
    map of a 4.5 Å cutoff has no resolution. The 12 Cu neighbours are symmetry-equivalent, so this
    checks that the shell descriptors and the fit reproduce an atom's whole radial profile from its
    environment — not transfer to new chemistry (13 atoms of one Zn-in-Cu cluster cannot show that).
    """
    centres, radii, dv, atom = converged.grid(stride=4, r_min=0.1)
    pos, sp = converged.environment(4.5)
    assert sp.count("Zn") == 1 and len(sp) > 13 and radii.min() >= 0.1
    p = make_params(["Cu", "Zn"], cutoff=4.5, n_max=16, l_max=2, n_max3=3, body_order=3)
    X = JLDescriptor(p).shells(centres, radii, pos, sp, n_theta=4)
    train, test = atom < 10, atom >= 10
    model = PotentialModel(p, n_folds=5).fit(X[train], dv[train], atom[train])
    err = model.predict(X[test]) - dv[test]
    mean_err = dv[train].mean() - dv[test]
    rmse, rmse_mean = np.sqrt(np.mean(err**2)), np.sqrt(np.mean(mean_err**2))
    assert rmse < 0.2 * rmse_mean, (rmse, rmse_mean)


def test_reader_bad_input(kkr_reference):
    from mlkkr.aiida.readers_kkrimp import parse_potential, read_kkrimp_potential

    with pytest.raises(InputError, match="node"):
        read_kkrimp_potential("00000000-0000-0000-0000-000000000000")
    with pytest.raises(InputError, match="no potential block"):
        parse_potential("not a potential\n")


def test_from_archive_reads_potentials_and_names_what_it_skipped(tmp_path):
    """`mlkkr data from-archive --kind potential` on the reference archives (read-only), and on broken copies."""
    import importlib.util
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from mlkkr.data.h5io import read_radial

    spec = importlib.util.spec_from_file_location("potential_conftest", Path(__file__).with_name("conftest.py"))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    reference_archive = helpers.reference_archive  # checks each archive's SHA-256 against SHA256SUMS

    mlkkr = Path(sys.executable).with_name("mlkkr")

    def run(archive, *args):
        out = tmp_path / "out.h5"
        out.unlink(missing_ok=True)
        res = subprocess.run([str(mlkkr), "data", "from-archive", str(archive), "-o", str(out), *args],
                             capture_output=True, text=True, timeout=300)
        return res, out

    res, out = run(reference_archive("kkrimp_cached.aiida"), "--kind", "potential", "--host", "fcc-Cu")
    assert res.returncode == 0, res.stderr
    (rec,) = read_radial(out)
    assert rec.impurity == "Zn" and len(rec.z) == 13 and rec.converged and rec.host == "fcc-Cu"
    # the unconverged workflow is skipped with its rms, or read flagged when asked for
    full = reference_archive("kkrimp_full_wc.aiida")
    res, out = run(full)
    assert res.returncode == 2 and "kkr_imp_wc<" in res.stderr and "KKRimp not converged (rms 0.0283)" in res.stderr
    assert not out.exists()
    res, out = run(full, "--include-unconverged", "--json")
    assert res.returncode == 0 and [r.converged for r in read_radial(out)] == [False]
    # an archive of other results, and broken archives: errors that say so, nothing written
    res, out = run(reference_archive("dos_wc_Cu.aiida"), "--kind", "potential")
    assert res.returncode == 2 and "no kkr_imp_wc or combine_imps_wc or kkr_imp_sub_wc workflow among its" in res.stderr
    fake = tmp_path / "fake.aiida"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("metadata.json", '{"export_version": "main_0001"}')
    res, out = run(fake)
    assert res.returncode == 2 and "ARCHIVE: a corrupt or incomplete archive" in res.stderr and not out.exists()
    data = bytearray(reference_archive("kkrimp_cached.aiida").read_bytes())
    for i in range(len(data) - 3000, len(data) - 100):  # the repository's objects at the end of the zip
        data[i] ^= 0xFF
    broken = tmp_path / "broken.aiida"
    broken.write_bytes(bytes(data))
    res, out = run(broken)
    assert res.returncode == 2 and "a file it needs cannot be read" in res.stderr and not out.exists()
    assert "Traceback" not in res.stderr


def test_host_sites_map_a_cluster_onto_a_two_site_basis_and_refuse_an_interstitial(converged):
    """A pair's cluster atoms are mapped to host sites by position (combine_imps_wc gives no neworder):
    in a CsCl cell (basis 0 and ½½½) every atom of a cluster centred on site 1 lands on its own site; the
    reference archive's single embedding maps as its neworder says."""
    from mlkkr.aiida.readers_kkrimp import host_sites

    a = 2.86
    cell, basis = a * np.eye(3), np.array([[0.0, 0.0, 0.0], [a / 2] * 3])
    rel = np.array([[0, 0, 0], [a / 2, a / 2, a / 2], [-a / 2, a / 2, -a / 2], [a, 0, 0], [0, -a, 0]])
    assert host_sites(rel, cell, basis, basis[1]) == [1, 0, 0, 1, 1]
    with pytest.raises(InputError, match="kkrflex_atominfo.*on no site of the host crystal"):
        host_sites(np.array([[a / 4, 0, 0]]), cell, basis, basis[0])
    # a real single embedding of the reference archive: position mapping and aiida-kkr's neworder agree
    centre = converged.provenance["centre_basis_position"]
    assert host_sites(converged.positions, converged.host_cell, converged.host_basis, centre) == \
        [0] * converged.n_atoms
