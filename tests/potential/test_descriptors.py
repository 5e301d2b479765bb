"""JL descriptors: definition (against explicit loops), invariances, smooth cutoff, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mlkkr.descriptors import JLDescriptor, make_params, radial_basis
from mlkkr.descriptors.jl import brute_force
from mlkkr.descriptors.polynomials import jacobi, sphere_quadrature
from mlkkr.errors import InputError

from .conftest import random_configuration

SPECIES = ["Cu", "Zn", "Vac"]


def params(**kw):
    base = dict(cutoff=3.2, n_max=5, l_max=3, n_max3=3, alpha=0.5, beta=1.5, body_order=3)
    return make_params(SPECIES, **{**base, **kw})


def test_jacobi_matches_scipy():
    from scipy.special import eval_jacobi

    x = np.linspace(-1, 1, 11)
    for a, b in ((0.0, 0.0), (0.5, 1.5), (-0.5, 2.0)):
        ref = np.stack([eval_jacobi(n, a, b, x) for n in range(9)], axis=-1)
        np.testing.assert_allclose(jacobi(8, a, b, x), ref, rtol=1e-12, atol=1e-12)


def test_matches_explicit_sums_over_neighbours_and_pairs():
    """The vectorised descriptor (addition theorem, sparse sums, batches) equals the definition:
    explicit loops over neighbours and ordered neighbour pairs with scipy's Jacobi and Legendre."""
    rng = np.random.default_rng(0)
    pts, pos, sp = random_configuration(rng, SPECIES, n_atoms=14, n_points=12)
    pts = np.vstack([pts, pos[:2]])  # two points sitting on atoms (1-body, on-site 3-body rule)
    p = params()
    fast = JLDescriptor(p)(pts, pos, sp)
    slow = brute_force(pts, pos, sp, p)
    assert fast.shape == (len(pts), JLDescriptor(p).n_features)
    np.testing.assert_allclose(fast, slow, rtol=1e-11, atol=1e-11 * np.abs(slow).max())
    assert fast[-2:, :3].sum() == 2  # one-hot of the on-site species


def test_layout_and_body_orders():
    d = JLDescriptor(params())
    names = d.feature_names()
    assert len(names) == d.n_features == 3 + 3 * 5 + (9 * 10 // 2) * 4
    assert names[0] == "1b:Cu" and names[3] == "2b:Cu:n1" and names[-1] == "3b:Vac,Vac:n3,3:l3"
    assert list(np.bincount(d.body_of_feature())[1:]) == [3, 15, 180]
    assert JLDescriptor(params(body_order=2)).n_features == 18
    assert JLDescriptor(params(body_order=1)).n_features == 3


@pytest.fixture(scope="module")
def config():
    rng = np.random.default_rng(1)
    pts, pos, sp = random_configuration(rng, SPECIES, n_atoms=16, n_points=25)
    return pts, pos, sp, JLDescriptor(params())


def _close(a, b):
    # unchanged to 1e-12, relative to each feature's scale over the configuration
    scale = np.maximum(1.0, np.abs(a).max(axis=0))
    assert np.max(np.abs(a - b) / scale) < 1e-12


def test_rotation_invariance(config):
    pts, pos, sp, d = config
    ref = d(pts, pos, sp)
    for seed in range(3):
        rot = Rotation.random(random_state=seed).as_matrix()
        _close(ref, d(pts @ rot.T, pos @ rot.T, sp))
    mirror = np.diag([1.0, -1.0, 1.0])  # also invariant under reflection (no chirality in P_l)
    _close(ref, d(pts @ mirror, pos @ mirror, sp))


def test_translation_invariance(config):
    pts, pos, sp, d = config
    shift = np.array([12.3, -4.56, 7.89])
    _close(d(pts, pos, sp), d(pts + shift, pos + shift, sp))


def test_permutation_invariance(config):
    pts, pos, sp, d = config
    perm = np.random.default_rng(2).permutation(len(pos))
    _close(d(pts, pos, sp), d(pts, pos[perm], [sp[k] for k in perm]))


def test_points_are_independent_of_batching(config):
    pts, pos, sp, d = config
    whole = d(pts, pos, sp)
    one_by_one = np.vstack([d(p[None], pos, sp) for p in pts])
    np.testing.assert_allclose(whole, one_by_one, rtol=0, atol=1e-12 * np.abs(whole).max())


def test_radial_basis_vanishes_smoothly_at_cutoff():
    p = params()
    rc = p.cutoff
    eps = 1e-4
    at = radial_basis(np.array([rc - eps, rc, rc + eps, 10.0]), p)
    assert np.all(at[1:] == 0.0)
    assert np.max(np.abs(at[0])) < 1e-4  # value ~ (π eps / rc)² : zero slope at the cutoff

    def slope(e):  # one-sided derivative dφ/dr at rc − e
        return (radial_basis(np.array([rc - e]), p) - radial_basis(np.array([rc - 2 * e]), p)) / e

    # the slope goes to zero linearly as r → rc (C¹ cutoff)
    assert np.max(np.abs(slope(1e-5))) < 1e-2
    np.testing.assert_allclose(slope(1e-5) / slope(1e-4), 0.1, rtol=1e-3)
    assert np.all(np.abs(radial_basis(np.array([0.0]), p)) > 0)


def test_sphere_average_of_an_on_site_shell_and_quadrature():
    rng = np.random.default_rng(3)
    _, pos, sp = random_configuration(rng, SPECIES, n_atoms=12)
    d = JLDescriptor(params())
    centre = pos[:1]
    # radius 0: the shell is the point on the atom
    np.testing.assert_allclose(d.shells(centre, [0.0], pos, sp), d(centre, pos, sp), atol=1e-12)
    # a larger radius: converges with the quadrature order to the same limit
    a = d.shells(centre, [0.7], pos, sp, n_theta=8)
    b = d.shells(centre, [0.7], pos, sp, n_theta=16)
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
    q, w = sphere_quadrature(6)
    assert np.isclose(w.sum(), 1.0) and np.allclose(np.linalg.norm(q, axis=1), 1.0)
    assert np.allclose(w @ q, 0.0, atol=1e-14)


# -- bad input -------------------------------------------------------------------------------------
def test_point_without_neighbours_is_an_input_error(config):
    pts, pos, sp, d = config
    far = np.vstack([pts[:3], [[50.0, 0.0, 0.0]]])
    with pytest.raises(InputError, match=r"grid point 3 .* has no atom within the cutoff 3.2 Å") as exc:
        d(far, pos, sp)
    assert exc.value.field == "points"


@pytest.mark.parametrize("where", ["points", "positions"])
def test_nan_is_an_input_error(config, where):
    pts, pos, sp, d = config
    pts, pos = pts.copy(), pos.copy()
    (pts if where == "points" else pos)[2, 1] = np.nan
    with pytest.raises(InputError, match="row 2 is not finite") as exc:
        d(pts, pos, sp)
    assert exc.value.field == where


def test_unknown_species_is_an_input_error(config):
    pts, pos, sp, d = config
    bad = list(sp)
    bad[4] = "Xx"
    with pytest.raises(InputError, match="'Xx'.*allowed: Cu, Zn, Vac") as exc:
        d(pts, pos, bad)
    assert exc.value.field == "species"


@pytest.mark.parametrize("key,value", [("n_max", 0), ("l_max", -1), ("cutoff", -2.0), ("cutoff", float("nan")),
                                       ("alpha", -1.0), ("beta", "x"), ("body_order", 4), ("rcut", 3.0)])
def test_bad_hyper_parameters(key, value):
    with pytest.raises(InputError, match=f"descriptor.{key}"):
        make_params(SPECIES, **{key: value})
