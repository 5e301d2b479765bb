"""Exchange tensors: symmetries, Moriya's rules, force theorem vs Lloyd finite differences, RKKY,
convergence at the defaults, and an independent supercell total-energy check."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_greens import cluster, grand_potential, rel, supercell_hamiltonian

from mlkkr.errors import InputError
from mlkkr.greens import Engine, KGrid, compose, decompose, exchange_tensor, lloyd_tensor, make_host
from mlkkr.greens.exchange import exchange_tensor_batch

CODOPED = [
    [("Fe", (0, 0, 0)), ("Mn", (1, 1, 0)), ("Sn", (1, 0, 0)), ("Vac", (0, 1, 1))],
    [("Cr", (0, 0, 0)), ("Co", (2, 1, 0)), ("In", (1, 0, 0))],
    [("Mn", (0, 0, 0)), ("Ni", (0, 1, 2)), ("Se", (0, 1, 1)), ("Pb", (-1, 0, 0))],
]


def test_decomposition_convention():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(3, 3))
    dec = decompose(t)
    np.testing.assert_allclose(compose(dec.J, dec.D, dec.S), t, atol=1e-14)
    assert abs(np.trace(dec.S)) < 1e-14 and np.allclose(dec.S, dec.S.T)
    ei, ej = rng.normal(size=3), rng.normal(size=3)
    anti = (t - t.T) / 2
    # e_i · A · e_j = D · (e_i × e_j)
    assert abs(ei @ anti @ ej - dec.D @ np.cross(ei, ej)) < 1e-13


@pytest.mark.parametrize("engine_name", ["metal_small", "ti_small"])
@pytest.mark.parametrize("config", CODOPED, ids=["4def", "3def", "4def-b"])
def test_pair_symmetry_jij_equals_jji_transposed(engine_name, config, request):
    eng = request.getfixturevalue(engine_name)
    defects = cluster(*config)
    jij = exchange_tensor(eng, defects, 0, 1)
    jji = exchange_tensor(eng, defects, 1, 0)
    assert np.abs(jij - jji.T).max() < 1e-10 * np.abs(jij).max()


@pytest.mark.parametrize("config", CODOPED, ids=["4def", "3def", "4def-b"])
def test_no_soc_gives_isotropic_tensor(metal_small, config):
    dec = decompose(exchange_tensor(metal_small, cluster(*config), 0, 1))
    assert abs(dec.J) > 1e-3
    assert np.abs(dec.D).max() < 1e-10 * abs(dec.J)
    assert np.abs(dec.S).max() < 1e-10 * abs(dec.J)


@pytest.mark.parametrize("bond", [(1, 0, 0), (0, 2, 1), (1, 1, 1), (2, 1, 0)])
def test_no_parity_mixing_no_dmi(ti_small, no_w, bond):
    """W_X = 0 on every defect: the TI host gives D = 0 (the pair alone, or co-dopants placed
    symmetrically under the inversion through the bond centre)."""
    b = np.array(bond)
    alone = cluster(("Fe", (0, 0, 0)), ("Mn", bond))
    sym = cluster(("Mn", (0, 0, 0)), ("Mn", bond), ("Sn", tuple(b + [0, 0, 1])), ("Sn", (0, 0, -1)))
    for defects in (alone, sym):
        dec = decompose(exchange_tensor(ti_small, defects, 0, 1))
        assert np.abs(dec.D).max() < 1e-9 * abs(dec.J)
        assert np.abs(dec.S).max() > 1e-4 * abs(dec.J)  # spin–orbit anisotropy is there


def test_dmi_without_parity_mixing_needs_broken_inversion(ti_small, no_w):
    """What the model really does with W_X = 0: co-dopants that break the bond-centre inversion give
    D ≠ 0 (second order in the spin–orbit hopping: the tensor is even in A). Recorded because the
    issue expected D = 0 here; docs/engine.md explains it and the supercell test confirms it."""
    defects = cluster(*CODOPED[0])
    d = decompose(exchange_tensor(ti_small, defects, 0, 1)).D
    assert np.linalg.norm(d) > 1e-2
    flipped = Engine(make_host("ti", A=-0.8), KGrid(12, 12, 0.0))
    np.testing.assert_allclose(exchange_tensor(flipped, defects, 0, 1), exchange_tensor(ti_small, defects, 0, 1),
                               atol=1e-10)


@pytest.mark.parametrize("config", CODOPED, ids=["4def", "3def", "4def-b"])
def test_parity_mixing_gives_dmi(ti_small, config):
    dec = decompose(exchange_tensor(ti_small, cluster(*config), 0, 1))
    assert np.linalg.norm(dec.D) > 0.02 and np.linalg.norm(dec.D) > 1e-3 * abs(dec.J)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("dist", [1, 2])
def test_moriya_fourfold_axis(ti_small, axis, dist):
    """A pair on a four-fold axis of the host (the bond along x, y or z) has D along that axis."""
    bond = [0, 0, 0]
    bond[axis] = dist
    dec = decompose(exchange_tensor(ti_small, cluster(("Mn", (0, 0, 0)), ("Mn", tuple(bond))), 0, 1))
    others = np.delete(dec.D, axis)
    assert abs(dec.D[axis]) > 0.05
    assert np.abs(others).max() < 1e-9 * abs(dec.D[axis])


@pytest.mark.parametrize("engine_name", ["metal_small", "ti_small"])
@pytest.mark.parametrize("config", CODOPED + [[("Co", (0, 0, 0)), ("V", (0, 0, 1))]],
                         ids=["4def", "3def", "4def-b", "pair"])
def test_force_theorem_equals_lloyd_finite_differences(engine_name, config, request):
    """The tensor from the Liechtenstein formula equals finite differences of Lloyd band energies of
    small moment rotations (the cluster determinant with the host G0 only) to 1 %."""
    eng = request.getfixturevalue(engine_name)
    defects = cluster(*config)
    j = exchange_tensor(eng, defects, 0, 1)
    fd = lloyd_tensor(eng, defects, 0, 1)
    assert rel(fd, j) < 0.01


def test_batched_path_equals_single(ti_small):
    configs = [CODOPED[0], [("Mn", (0, 0, 0)), ("Fe", (2, 0, 1)), ("Vac", (1, 0, 0)), ("Se", (0, 0, 1))]]
    sites = np.array([[p for _, p in c] for c in configs])
    species = np.array([[e for e, _ in c] for c in configs])
    batch = exchange_tensor_batch(ti_small, sites, species)
    for b, c in enumerate(configs):
        np.testing.assert_allclose(batch[b], exchange_tensor(ti_small, cluster(*c), 0, 1), atol=1e-12)


def test_rkky_oscillates_and_decays(metal_default):
    """Single-band metal (default k-grid and contour): J(R) changes sign repeatedly with distance and
    its envelope decays."""
    vectors = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 0, 0), (2, 1, 0), (2, 2, 0), (3, 0, 0), (2, 2, 2),
               (4, 0, 0), (3, 3, 0), (4, 2, 0), (3, 3, 3), (6, 0, 0)]
    r = np.array([np.linalg.norm(v) for v in vectors])
    j = np.array([exchange_tensor(metal_default, cluster(("Fe", (0, 0, 0)), ("Fe", v)), 0, 1)[0, 0]
                  for v in vectors])
    signs = np.sign(j[np.argsort(r)])
    assert np.count_nonzero(signs[1:] != signs[:-1]) >= 4
    env = [np.abs(j[(r > lo) & (r <= hi)]).max() for lo, hi in ((0, 2), (2, 3.5), (3.5, 6.5))]
    assert env[0] > 2 * env[1] > 4 * env[2]


def test_bad_pairs(ti_small):
    defects = cluster(("Mn", (0, 0, 0)), ("Sn", (1, 0, 0)), ("Fe", (0, 1, 0)))
    with pytest.raises(InputError) as exc:
        exchange_tensor(ti_small, defects, 0, 1)
    assert exc.value.field == "pair.j"
    with pytest.raises(InputError):
        exchange_tensor(ti_small, defects, 2, 2)


@pytest.mark.parametrize("host_name,config", [
    ("metal", [("Fe", (0, 0, 0)), ("Co", (1, 1, 0)), ("In", (0, 1, 0))]),
    ("ti", CODOPED[0]),
])
def test_supercell_total_energy(host_name, config, no_w):
    """Independent check on a periodic case: the engine with a uniform 6³ k-grid describes the
    6×6×6 supercell with the defects; finite differences of its grand potential from exact
    diagonalisation (no Green function, no contour) give the same tensor (reference m = z, W = 0:
    the D ≠ 0 of the W = 0 TI case above included)."""
    host = make_host(host_name)
    n = 6
    eng = Engine(host, KGrid(n, n, 0.0))
    defects = cluster(*config)
    j = exchange_tensor(eng, defects, 0, 1)
    theta, ez = 0.02, np.array([0.0, 0.0, 1.0])
    unit = np.eye(3)
    blk = np.zeros((2, 2))
    pairs = [(0, 0)] if host_name == "metal" else [(0, 1), (1, 0)]
    for a, b in pairs:
        e = {}
        for si in (1, -1):
            for sj in (1, -1):
                mom = {0: ez * np.cos(theta) + si * unit[a] * np.sin(theta),
                       1: ez * np.cos(theta) + sj * unit[b] * np.sin(theta)}
                h = supercell_hamiltonian(host, n, defects, mom)
                e[si, sj] = grand_potential(h, host.fermi_level, eng.contour_params.temperature)
        blk[a, b] = -(e[1, 1] - e[1, -1] - e[-1, 1] + e[-1, -1]) / (4 * np.sin(theta) ** 2) * 1000
    if host_name == "metal":
        assert abs(blk[0, 0] - j[0, 0]) < 0.02 * abs(j[0, 0])
    else:
        # off-diagonal elements come from reference z alone in the engine: compare them at 2 %
        assert abs(blk[0, 1] - j[0, 1]) < 0.02 * abs(j[0, 1])
        assert abs(blk[1, 0] - j[1, 0]) < 0.02 * abs(j[1, 0])
        assert abs((blk[0, 1] - blk[1, 0]) / 2 - decompose(j).D[2]) < 0.02 * abs(decompose(j).D[2])
