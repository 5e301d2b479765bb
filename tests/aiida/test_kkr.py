"""aiida-kkr side: builders of host SCF, impurity embedding and Jij, checked by dry runs that write the
real JuKKR input files; readers of the reference archives; structures aiida-kkr cannot take."""

from __future__ import annotations

import shutil
from collections import defaultdict

import numpy as np
import pytest
from aiida import orm
from helpers_aiida import reference_archive

from mlkkr.aiida import kkr
from mlkkr.aiida.jukkr_codes import ensure_codes
from mlkkr.errors import InputError
from support import jukkr_installation

pytestmark = pytest.mark.services

BOHR = 0.52917721067  # Å (masci-tools' constant)
A_CU = 3.61  # Å, fcc Cu


@pytest.fixture(scope="module")
def imported(services, tmp_path_factory):
    """The reference archives (checksums checked, copied first) imported into the service profile."""
    from aiida.tools.archive import import_archive

    tmp = tmp_path_factory.mktemp("kkr-archives")
    groups = {}
    for name in ("scf_wc_Cu_simple.aiida", "jij.aiida", "kkrimp_full_wc.aiida"):
        copy = tmp / name
        shutil.copy(reference_archive(name), copy)
        groups[name] = orm.load_group(import_archive(copy))
    ensure_codes(jukkr_installation())  # the platform's real JuKKR codes, as at every spawn (idempotent)
    codes = {label: orm.load_code(f"{label}@localhost") for label in ("voronoi", "kkrhost", "kkrimp")}

    def workflow(archive: str, label: str) -> orm.WorkflowNode:
        # taken from that archive's import group: the shared profile may hold other archives' work
        # chains of the same kind (jij.aiida has its own bcc-Fe kkr_scf_wc)
        qb = orm.QueryBuilder().append(orm.Group, filters={"id": groups[archive].pk}, tag="g")
        qb.append(orm.WorkflowNode, with_group="g", filters={"attributes.process_label": label},
                  project="*").order_by({orm.WorkflowNode: {"id": "asc"}})
        found = qb.all(flat=True)
        assert len(found) == 1, f"{archive}: expected one {label}, found {len(found)}"
        return found[0]

    scf = workflow("scf_wc_Cu_simple.aiida", "kkr_scf_wc")
    jij = workflow("jij.aiida", "kkr_jij_wc")
    imp = workflow("kkrimp_full_wc.aiida", "kkr_imp_wc")
    return {"codes": codes, "cu_scf": scf, "fe_jij": jij, "zn_imp": imp}


def _count() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


def _fcc_cu() -> orm.StructureData:
    s = orm.StructureData(cell=(np.array([[0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * A_CU).tolist())
    s.append_atom(position=(0, 0, 0), symbols="Cu")
    return s


def test_host_scf_builder_dry_run_writes_the_voronoi_inputcard(imported, tmp_path):
    codes = imported["codes"]
    before = _count()
    builder = kkr.host_scf_builder(_fcc_cu(), codes["voronoi"], "kkrhost@localhost",
                                   parameters={"LMAX": 2, "NSPIN": 1, "RMAX": 7.0, "GMAX": 65.0},
                                   wf_parameters={"kkr_runmax": 3}, options=kkr.options_dict(max_wallclock_seconds=600))
    assert builder.wf_parameters["kkr_runmax"] == 3 and builder.options["max_wallclock_seconds"] == 600
    files = kkr.dry_run(builder, tmp_path)
    card = kkr.read_inputcard(files["voronoi"] / "inputcard")
    assert card["<ZATOM>"] == 29.0 and card["NAEZ"] == 1
    assert card["LMAX"] == 2 and card["NSPIN"] == 1 and card["RMAX"] == 7.0 and card["GMAX"] == 65.0
    assert card["ALATBASIS"] * BOHR == pytest.approx(A_CU / np.sqrt(2), rel=1e-6)
    assert card["RCLUSTZ"] > 1.0, "screening cluster radius set from the minimal cluster size"
    assert _count() == before, "a dry run stores nothing"


@pytest.mark.parametrize(("element", "z", "radius", "n_cluster"), [("Zn", 30, 2.6, 13), ("Fe", 26, 3.7, 19)])
def test_impurity_builder_dry_run_writes_kkrflex_scoef_and_the_impurity(imported, tmp_path, element, z, radius,
                                                                        n_cluster):
    codes = imported["codes"]
    before = _count()
    builder = kkr.impurity_builder(imported["cu_scf"], kkr.Impurity(element, site=0, radius=radius), codes["kkrhost"],
                                   codes["voronoi"], codes["kkrimp"], wf_parameters={"kkr_runmax": 7})
    assert builder.impurity_info.get_dict() == {"Zimp": [float(z)], "ilayer_center": 0, "Rcut": radius}
    files = kkr.dry_run(builder, tmp_path)
    flex = kkr.read_inputcard(files["gf_writeout"] / "inputcard")
    assert "KKRFLEX" in flex["RUNOPT"]
    cluster = kkr.read_scoef(files["gf_writeout"] / "scoef")
    assert len(cluster) == n_cluster, "fcc shells within the requested radius: 1 + 12 (+ 6)"
    assert np.all(cluster[:, 4] == 29.0), "the host (Cu) sites of the cluster"
    assert np.allclose(cluster[0, :3], 0) and cluster[:, 5].max() * flex["ALATBASIS"] * BOHR <= radius
    aux = kkr.read_inputcard(files["voronoi_impurity"] / "inputcard")
    assert aux["<ZATOM>"] == float(z), "the auxiliary voronoi run is for the requested impurity"
    assert _count() == before


def test_jij_builder_dry_run_writes_xcpl_and_the_radius(imported, tmp_path):
    host = imported["fe_jij"].inputs.remote_data
    builder = kkr.jij_builder(host, imported["codes"]["kkrhost"], radius=6.0, accuracy={"NSHELD": 1500})
    files = kkr.dry_run(builder, tmp_path)
    card = kkr.read_inputcard(files["jij"] / "inputcard")
    assert "XCPL" in card["RUNOPT"] and card["NSTEPS"] == 1 and card["NSHELD"] == 1500
    assert card["JIJRAD"] * card["ALATBASIS"] * BOHR == pytest.approx(6.0, rel=1e-6)
    assert card["<ZATOM>"] == 26.0


def test_structures_and_inputs_aiida_kkr_cannot_take(imported):
    codes = imported["codes"]
    before = _count()
    molecule = orm.StructureData(cell=[[10, 0, 0], [0, 10, 0], [0, 0, 10]], pbc=(False, False, False))
    molecule.append_atom(position=(0, 0, 0), symbols="Fe")
    molecule.append_atom(position=(2, 0, 0), symbols="Fe")
    slab = orm.StructureData(cell=[[2.5, 0, 0], [0, 2.5, 0], [0, 0, 20]], pbc=(True, True, False))
    slab.append_atom(position=(0, 0, 0), symbols="Cu")
    empty = orm.StructureData(cell=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    for structure, says in ((molecule, "pbc"), (slab, "2D"), (empty, "no sites")):
        with pytest.raises(InputError, match="structure") as info:
            kkr.host_scf_builder(structure, codes["voronoi"], codes["kkrhost"])
        assert says in str(info.value)
    with pytest.raises(InputError, match="kkr: .*runs 'kkr.voro'"):
        kkr.host_scf_builder(_fcc_cu(), codes["voronoi"], codes["voronoi"])
    with pytest.raises(InputError, match="voronoi: no such code 'nope@localhost'"):
        kkr.host_scf_builder(_fcc_cu(), "nope@localhost", codes["kkrhost"])
    with pytest.raises(InputError, match="parameters.LMAXX"):
        kkr.host_scf_builder(_fcc_cu(), codes["voronoi"], codes["kkrhost"], parameters={"LMAXX": 3})
    with pytest.raises(InputError, match="impurity.site"):
        kkr.impurity_builder(imported["cu_scf"], kkr.Impurity("Zn", site=3), codes["kkrhost"], codes["voronoi"],
                             codes["kkrimp"])
    with pytest.raises(InputError, match="impurity.element"):
        kkr.impurity_builder(imported["cu_scf"], kkr.Impurity("Zz"), codes["kkrhost"], codes["voronoi"],
                             codes["kkrimp"])
    assert _count() == before, "nothing stored for bad input"


def test_jij_reader_returns_the_archive_numbers(imported):
    """jij.aiida (bcc Fe, isotropic J): the shells of FACTS.md, as a dataset linked to the aiida-kkr output."""
    from mlkkr.aiida.readers import exchange_dataset

    wc = imported["fe_jij"]
    dataset = exchange_dataset(wc)
    assert dataset.n_records == 58 and len(set(dataset.record_ids)) == 58
    creator = dataset.creator
    assert creator.process_label == "jij_to_dataset" and creator.inputs.jij_data.uuid == wc.outputs.jij_data.uuid
    shells: dict[float, list[float]] = defaultdict(list)
    for pair in dataset.records():
        shells[round(pair.distance, 2)].append(pair.J)
        assert np.allclose(pair.D, 0) and pair.species_i == pair.species_j == "Fe"
    expected = {2.46: (8, 11.97), 2.84: (6, 6.02), 4.02: (12, 0.111), 4.71: (24, -1.121), 4.92: (8, 0.929)}
    assert {r: len(js) for r, js in shells.items()} == {r: n for r, (n, _) in expected.items()}
    for r, (_, j) in expected.items():
        assert np.mean(shells[r]) == pytest.approx(j, abs=0.006), r


def test_kkrimp_reader_returns_the_archive_numbers(imported):
    """kkrimp_full_wc.aiida (Zn in Cu, not converged: 25 steps, rms 0.028): the last KKRimp potential."""
    from mlkkr.aiida.readers import kkrimp_reader

    pot = kkrimp_reader().read_kkrimp_potential(imported["zn_imp"])
    assert pot.species == ["Zn"] + ["Cu"] * 12 and pot.host_species == ["Cu"] * 13
    assert not pot.converged and pot.rms == pytest.approx(0.02827, rel=1e-3)
    # first VM2Z values of the Zn block of the last potential and of the host Cu potential (Ry), from the files
    assert pot.v_imp_ry[0][0] == pytest.approx(2.2969888361758e02, abs=1e-9)
    assert pot.v_host_ry[0][0] == pytest.approx(2.2062365150084e02, abs=1e-9)
    assert np.allclose(np.linalg.norm(pot.positions[1:], axis=1), 4.8238197478830003 * BOHR, atol=1e-6)
