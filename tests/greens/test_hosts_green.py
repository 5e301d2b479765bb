"""Hosts, k-grids, G0(R, z) by FFT, contours and the T-matrix embedding."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_greens import cluster, supercell_hamiltonian

from mlkkr.errors import InputError
from mlkkr.greens import Engine, KGrid, make_contour, make_contour_params, make_host
from mlkkr.greens.contour import K_B, fermi, gauss_fermi
from mlkkr.greens.green import host_green, host_green_direct


def test_presets_metallic_and_ti_topological():
    metal = make_host("metal")
    assert not metal.has_soc and metal.nb == 2
    assert metal.band_range() == (-6.0, 6.0)
    ti = make_host("ti")
    m, b = ti.p.params["M"], ti.p.params["B"]
    # band inversion at Γ only (mass M > 0 at Γ, M − 4B, M − 8B, M − 12B < 0 at X, M, R): strong TI
    assert m > 0 and m - 4 * b < 0 and m - 8 * b < 0 and m - 12 * b < 0
    lo, hi = ti.band_range()
    k = 2 * np.pi * np.arange(24) / 24
    e = np.linalg.eigvalsh(ti.hamiltonian(np.stack(np.meshgrid(k, k, k, indexing="ij"), -1).reshape(-1, 3)))
    gap = (e[:, 1].max(), e[:, 2].min())
    assert gap[0] < 0 < gap[1]
    # E_F inside the conduction band: metallic bulk (RKKY needs a Fermi surface)
    assert gap[1] < ti.fermi_level < hi
    for host in (metal, ti):
        h = host.hamiltonian(np.random.default_rng(0).uniform(-np.pi, np.pi, (20, 3)))
        np.testing.assert_allclose(h, np.conj(np.swapaxes(h, -1, -2)), atol=1e-14)


@pytest.mark.parametrize("kw,field", [
    ({"fermi_level": 7.5}, "host.fermi_level"),
    ({"fermi_level": -6.5}, "host.fermi_level"),
    ({"t": float("nan")}, "host.t"),
    ({"colour": 1}, "host.colour"),
])
def test_bad_metal_parameters(kw, field):
    with pytest.raises(InputError) as exc:
        make_host("metal", **kw)
    assert exc.value.field == field


def test_bad_ti_parameters():
    with pytest.raises(InputError) as exc:
        make_host("ti", M=3.0, B=0.5)  # M/B = 6: trivial (weak) phase
    assert exc.value.field == "host.M"
    with pytest.raises(InputError) as exc:
        make_host("ti", fermi_level=5.5)
    assert exc.value.field == "host.fermi_level" and "outside all bands" in str(exc.value)
    with pytest.raises(InputError) as exc:
        make_host("graphene")
    assert exc.value.field == "host.name" and "metal" in str(exc.value)


def test_fft_equals_direct_k_sum():
    host = make_host("ti")
    z = np.array([0.3 + 0.5j, 1.1 + 0.07j, -4.0 + 2.0j])
    d = np.array([[0, 0, 0], [1, 0, 0], [0, -1, 2], [3, 2, -1], [-2, -2, -2]])
    fft = host_green(host, 8, z, d=d)
    direct = host_green_direct(host, 8, z, d)
    assert np.abs(fft - direct).max() < 1e-12 * np.abs(direct).max()
    full = host_green(host, 8, z)
    np.testing.assert_allclose(full[:, 1, 0, 0], direct[:, 1], atol=1e-13)


@pytest.mark.parametrize("kind", ["matsubara", "semicircle"])
def test_contour_integrates_the_fermi_function(kind):
    p = make_contour_params(kind=kind, n_points=80)
    c = make_contour(p, -8.0, 1.1)
    eps = np.linspace(-5.5, 6.0, 25)  # spectrum ≥ 2 eV above the contour start
    occ = np.array([-(c.w / (c.z - e)).sum().imag / np.pi for e in eps])
    exact = fermi((eps - 1.1) / (K_B * p.temperature)) if kind == "matsubara" else (eps < 1.1) * 1.0
    near = np.abs(eps - 1.1) < 0.3
    tol = 2e-3 if kind == "matsubara" else 2e-2  # a δ-like level is the hardest case
    assert np.abs(occ - exact)[~near].max() < tol
    assert np.all(c.z.imag > 0)


def test_gauss_fermi_rule_is_exact_for_polynomials():
    y, w = gauss_fermi(6)
    t, g = np.polynomial.legendre.leggauss(300)
    for k in range(12):
        ref = np.sum(30 * g * fermi(30 * t) * (30 * t) ** k)
        assert abs(np.sum(w * y**k) - ref) < 1e-9 * max(1.0, abs(ref))


@pytest.mark.parametrize("kw,field", [({"kind": "ellipse"}, "contour.kind"), ({"n_poles": 0}, "contour.n_poles"),
                                      ({"temperature": -1}, "contour.temperature"), ({"npts": 3}, "contour.npts")])
def test_bad_contour(kw, field):
    with pytest.raises(InputError) as exc:
        make_contour_params(**kw)
    assert exc.value.field == field


def test_occupation_from_contour_matches_eigenvalues(ti_small):
    """−(1/π) Im Σ w Tr G0(0) = Σ_k f(ε_k)/N³ (contour + FFT, Matsubara at 800 K)."""
    eng = ti_small
    g = eng.g0(np.zeros((1, 3), int))[:, 0]
    occ = -(eng.contour.w @ np.trace(g, axis1=-2, axis2=-1)).imag / np.pi
    e = eng.eig(12).e
    exact = fermi((e - eng.host.fermi_level) / (K_B * eng.contour_params.temperature)).sum() / 12**3
    assert abs(occ - exact) < 1e-5


def test_energy_dependent_kgrid():
    eng = Engine(make_host("metal"))
    sizes = eng.n_of_z
    assert sizes.min() == 24 and sizes.max() <= 64
    # the densest grids go to the energies closest to the real axis inside the bands
    assert eng.contour.z[np.argmax(sizes)].imag == eng.contour.z.imag.min()
    assert np.all(Engine(make_host("metal"), KGrid(24, 64, 0.0)).n_of_z == 24)


@pytest.mark.parametrize("host_name", ["metal", "ti"])
def test_embedding_equals_supercell_inverse(host_name):
    """T-matrix embedding on the cluster = (z − H)⁻¹ of the whole periodic supercell with the defects."""
    host = make_host(host_name)
    n = 6
    eng = Engine(host, KGrid(n, n, 0.0), make_contour_params(n_vertical=1, n_horizontal=1, n_fermi=1, n_poles=1))
    defects = cluster(("Mn", (0, 0, 0)), ("Co", (1, 1, 0)), ("Vac", (0, 1, 0)))
    sites = np.array([d.site for d in defects])
    v = eng.cluster_potential(defects, np.array([0.3, -0.4, 0.866]))
    g = eng.embed(eng.cluster_g0(sites), v)
    h = supercell_hamiltonian(host, n, defects, moments={k: np.array([0.3, -0.4, 0.866]) for k in range(3)})
    nb = host.nb
    rows = np.concatenate([np.arange(nb) + nb * ((s[0] % n) * n * n + (s[1] % n) * n + s[2] % n) for s in sites])
    for k, z in enumerate(eng.contour.z):
        exact = np.linalg.inv(z * np.eye(len(h)) - h)[np.ix_(rows, rows)]
        assert np.abs(g[k] - exact).max() < 1e-10 * np.abs(exact).max()


def test_cluster_must_fit_the_supercell():
    eng = Engine(make_host("metal"), KGrid(8, 8, 0.0))
    with pytest.raises(InputError) as exc:
        eng.cluster_g0(np.array([[0, 0, 0], [4, 0, 0]]))
    assert exc.value.field == "kgrid.n"
