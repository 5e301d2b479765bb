"""The KKR launcher's model without a browser: checks name the form's fields, the built-in engine's
job is built and runs (in this process, on localhost), and the results become a table and a figure."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mlkkr.apps import kkr
from mlkkr.errors import InputError


def sc(a: float = 4.38, n: int = 3) -> Atoms:
    return Atoms("Bi", positions=[[0, 0, 0]], cell=[a, a, a], pbc=True).repeat((n, n, n))


def request(**kw) -> kkr.KkrRequest:
    base = dict(structure=sc(), impurities=[kkr.Impurity("Mn", 0), kkr.Impurity("Fe", 1)], kgrid=12,
                contour_points=12)
    base.update(kw)
    return kkr.KkrRequest(**base)


def test_lattice_sites_of_a_simple_cubic_supercell():
    a, sites = kkr.lattice_sites(sc(4.38, 3))
    assert a == pytest.approx(4.38)
    assert sites.shape == (27, 3) and sites.min() == 0 and sites.max() == 2


@pytest.mark.parametrize("structure", [bulk("Fe", "bcc", a=2.87, cubic=True), bulk("Cu", "fcc", a=3.61)])
def test_engine_refuses_a_structure_that_is_not_simple_cubic(structure):
    with pytest.raises(InputError) as err:
        kkr.engine_input(request(structure=structure))
    assert err.value.field == "structure" and "simple-cubic" in str(err.value)


def test_no_structure_names_the_structure_field():
    with pytest.raises(InputError) as err:
        kkr.engine_input(request(structure=None))
    assert err.value.field == "structure" and "choose a structure" in str(err.value)


def test_impurity_on_a_site_that_does_not_exist():
    with pytest.raises(InputError) as err:
        kkr.engine_input(request(impurities=[kkr.Impurity("Mn", 0), kkr.Impurity("Fe", 99)]))
    assert err.value.field == "impurities[1].site"
    assert "no site 99" in str(err.value) and "0 … 26" in str(err.value)


def test_two_impurities_on_one_site_and_too_few_magnetic_ones():
    with pytest.raises(InputError) as err:
        kkr.engine_input(request(impurities=[kkr.Impurity("Mn", 4), kkr.Impurity("Fe", 4)]))
    assert err.value.field == "impurities[1].site"
    with pytest.raises(InputError) as err:
        kkr.engine_input(request(impurities=[kkr.Impurity("Mn", 0), kkr.Impurity("Sb", 1)]))
    assert err.value.field == "impurities" and "two magnetic" in str(err.value)
    with pytest.raises(InputError) as err:
        kkr.engine_input(request(impurities=[]))
    assert err.value.field == "impurities"


def test_kgrid_too_small_for_the_cluster_is_reported_on_the_impurities():
    far = [kkr.Impurity("Mn", 0), kkr.Impurity("Fe", 26)]  # (0,0,0) and (2,2,2)
    with pytest.raises(InputError) as err:
        kkr.engine_input(request(impurities=far, kgrid=4))
    assert err.value.field == "impurities"
    with pytest.raises(InputError) as err:
        kkr.engine_input(request(kgrid=2))
    assert err.value.field == "kgrid"


def test_engine_input_is_relative_to_the_first_impurity():
    data = kkr.engine_input(request(impurities=[kkr.Impurity("Mn", 13), kkr.Impurity("Co", 14)]))
    assert data["defects"] == [{"element": "Mn", "position": [0, 0, 0]}, {"element": "Co", "position": [0, 0, 1]}]
    assert data["host"] == {"name": "ti", "lattice_constant": pytest.approx(4.38)}
    assert data["exchange"] == {"screening": False}


def test_examples_for_the_engine_pass_and_crystals_for_jukkr_do_not():
    for name, atoms in kkr.example_structures().items():
        if "(engine)" in name:
            kkr.lattice_sites(atoms)
        else:
            with pytest.raises(InputError):
                kkr.lattice_sites(atoms)


def test_resources_are_checked():
    with pytest.raises(InputError) as err:
        kkr.Resources(num_machines=0).check()
    assert err.value.field == "resources.num_machines"


def test_missing_code_and_jukkr_codes(aiida_profile_clean, aiida_localhost):
    with pytest.raises(InputError) as err:
        kkr.check(request(code=None))
    assert err.value.field == "code"
    with pytest.raises(InputError) as err:
        kkr.check(request(backend="jukkr", structure=bulk("Fe", "bcc", a=2.87, cubic=True), impurities=[]))
    assert err.value.field == "voronoi_code" and "kkr.voro" in str(err.value)


def test_engine_job_runs_and_gives_the_tensor_table_and_figure(aiida_profile_clean, aiida_localhost):
    from aiida.engine import run_get_node

    from mlkkr.apps.codes import ensure_local_code

    code = ensure_local_code()
    assert code.full_label == "mlkkr@localhost"
    builder = kkr.engine_builder(request(code=code.uuid))
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    rows = kkr.exchange_rows(node)
    assert len(rows) == 1 and rows[0]["species"] == "Mn-Fe"
    assert rows[0]["distance"] == pytest.approx(4.38)
    t = np.asarray(rows[0]["tensor"])
    assert rows[0]["J"] == pytest.approx(np.trace(t) / 3)
    html = kkr.tensor_table_html(rows)
    assert "mlkkr-tensor-table" in html and "pair 0–1 (Mn-Fe)" in html
    fig = kkr.exchange_figure(rows)
    assert [tr.name for tr in fig.data] == ["J", "|D|"]
