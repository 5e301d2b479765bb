"""Self-consistent screening: convergence for every element, screening of the displaced charge,
Anderson vs linear mixing, the region, and failure to converge."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_greens import cluster

from mlkkr.errors import InputError
from mlkkr.greens import ELEMENTS, make_scf_params, screen
from mlkkr.greens.scf import region


@pytest.mark.parametrize("engine_name", ["metal_small", "ti_small"])
def test_every_element_converges_and_screens(engine_name, request):
    eng = request.getfixturevalue(engine_name)
    for element in ELEMENTS:
        res = screen(eng, cluster((element, (0, 0, 0))), make_scf_params(max_iterations=40))
        assert res.residual < 1e-5, element
        assert res.iterations <= 12, element  # Anderson; plain linear mixing needs 15-30
        # screening: the net displaced charge (relative to the neutral host; a vacancy removes a
        # neutral atom) is smaller with the self-consistent potential than with the bare one
        assert abs(res.net_charge) < abs(res.net_charge_bare), element
        # the converged ΔV obeys ΔV = V_bare + U_H Δn (except on a vacancy site, which has no atom)
        u = eng.host.screening_u
        keep = np.ones(len(res.sites), bool)
        keep[0] = element != "Vac"
        np.testing.assert_allclose(res.dv[keep], (res.v_bare + u * res.dn)[keep], atol=2e-5)


def test_cluster_converges_and_linear_mixing_agrees(metal_small):
    defects = cluster(("Mn", (0, 0, 0)), ("In", (1, 0, 0)), ("Vac", (0, 1, 1)))
    anderson = screen(metal_small, defects)
    linear = screen(metal_small, defects, make_scf_params(mixer="linear", mixing=0.3, max_iterations=100))
    np.testing.assert_allclose(anderson.dv, linear.dv, atol=5e-5)
    assert anderson.iterations < linear.iterations / 2
    assert len(anderson.sites) == len(region(defects, 2.0))


def test_region_is_every_site_within_the_radius():
    sites = region(cluster(("Fe", (0, 0, 0))), 2.0)
    assert len(sites) == 33  # 1 + 6 + 12 + 8 + 6 shells up to |r| = 2
    assert tuple(sites[0]) == (0, 0, 0)
    two = region(cluster(("Fe", (0, 0, 0)), ("Co", (3, 0, 0))), 1.0)
    assert [tuple(s) for s in two[:2]] == [(0, 0, 0), (3, 0, 0)] and len(two) == 14 - 0


def test_not_converging_names_the_field(metal_small):
    with pytest.raises(InputError) as exc:
        screen(metal_small, cluster(("Vac", (0, 0, 0)), ("V", (1, 0, 0))), make_scf_params(max_iterations=2))
    assert exc.value.field == "scf.max_iterations" and "did not converge" in str(exc.value)


@pytest.mark.parametrize("kw,field", [({"mixer": "broyden2"}, "scf.mixer"), ({"mixing": 1.5}, "scf.mixing"),
                                      ({"radius": 0}, "scf.radius"), ({"max_iterations": 0}, "scf.max_iterations"),
                                      ({"moment": [0, 0, 0]}, "scf.moment"), ({"tolerance": 1}, "scf.tolerance")])
def test_bad_scf_parameters(kw, field):
    with pytest.raises(InputError) as exc:
        make_scf_params(**kw)
    assert exc.value.field == field
