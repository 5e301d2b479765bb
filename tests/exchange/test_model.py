"""The e3nn exchange network: equivariance, invariances, the i↔j symmetry, chirality, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_exchange import rotation, tiny_model

from mlkkr.data.schema import ExchangePair
from mlkkr.errors import InputError
from mlkkr.models.exchange import ExchangeNet, PairGraphs, build_graphs

SPECIES = ["Fe", "Mn", "Sb", "Vac", "ti"]
A = 4.38  # Å, lattice constant of the engine's TI host


def random_pairs(n: int = 6, seed: int = 0) -> list[ExchangePair]:
    """Pairs on the cubic lattice with 0-3 other defects (tensors unused)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = rng.integers(-2, 3, 3)
        while not d.any():
            d = rng.integers(-2, 3, 3)
        k = int(rng.integers(0, 4))
        env = [rng.integers(-1, 2, 3) for _ in range(k)]
        env = [e for e in env if e.any() and (e != d).any()]
        out.append(ExchangePair(host="ti", species_i=str(rng.choice(["Fe", "Mn"])),
                                species_j=str(rng.choice(["Fe", "Mn"])), position_i=np.zeros(3), position_j=d * A,
                                tensor=np.zeros((3, 3)), environment_species=[str(rng.choice(["Sb", "Vac"]))
                                                                              for _ in env],
                                environment_positions=np.array(env, float).reshape(-1, 3) * A,
                                cell=A * np.eye(3)))
    return out


def net_for(dtype: torch.dtype, chiral: bool = True, seed: int = 0) -> ExchangeNet:
    torch.manual_seed(seed)
    cfg = tiny_model(species=SPECIES, chiral=chiral, layers=2, r_env=6.5, r_host=4.5)
    net = ExchangeNet.build(cfg, dtype)
    net.eval()
    return net


def transformed(graphs: PairGraphs, rot: np.ndarray) -> PairGraphs:
    """The same graphs with every vector mapped by ``rot`` (3×3)."""
    return PairGraphs(graphs.species_i, graphs.species_j, graphs.bond @ rot.T, graphs.env_ptr,
                      graphs.env_species, graphs.env_ri @ rot.T, graphs.env_rj @ rot.T)


def run(net: ExchangeNet, g: PairGraphs, dtype: torch.dtype) -> np.ndarray:
    with torch.no_grad():
        return net(g.to_torch("cpu", dtype)).double().numpy()


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_rotation_gives_R_T_Rt(dtype, tol):
    net = net_for(dtype)
    g = build_graphs(random_pairs(), SPECIES, 6.5, 4.5)
    t = run(net, g, dtype)
    assert np.abs(t).max() > 1e-3, "the untrained network should give a non-trivial tensor"
    for seed in range(3):
        rot = rotation(seed)
        t_rot = run(net, transformed(g, rot), dtype)
        expect = np.einsum("ab,nbc,dc->nad", rot, t, rot)
        err = np.abs(t_rot - expect).max() / max(1.0, np.abs(t).max())
        assert err < tol, f"equivariance error {err:.2e} >= {tol:.0e} ({dtype})"


def test_rotation_of_the_input_pairs_end_to_end():
    """Rotating the atoms themselves (the host atoms are rebuilt from the rotated cell) gives R T Rᵀ."""
    net = net_for(torch.float64)
    pairs = random_pairs(4, seed=3)
    rot = rotation(7)
    rotated = [ExchangePair(host=p.host, species_i=p.species_i, species_j=p.species_j,
                            position_i=rot @ p.position_i, position_j=rot @ p.position_j, tensor=p.tensor,
                            environment_species=p.environment_species,
                            environment_positions=p.environment_positions @ rot.T, cell=p.cell @ rot.T)
               for p in pairs]
    t = run(net, build_graphs(pairs, SPECIES, 6.5, 4.5), torch.float64)
    t_rot = run(net, build_graphs(rotated, SPECIES, 6.5, 4.5), torch.float64)
    np.testing.assert_allclose(t_rot, np.einsum("ab,nbc,dc->nad", rot, t, rot), atol=1e-10)


def test_translation_and_atom_order_invariance():
    net = net_for(torch.float64)
    pairs = random_pairs(5, seed=1)
    shift = np.array([3.1, -7.4, 0.6]) * A  # a lattice translation keeps the host atoms on the lattice
    shift = np.round(shift / A) * A
    moved = [ExchangePair(host=p.host, species_i=p.species_i, species_j=p.species_j, position_i=p.position_i + shift,
                          position_j=p.position_j + shift, tensor=p.tensor, environment_species=p.environment_species,
                          environment_positions=p.environment_positions + shift, cell=p.cell) for p in pairs]
    rng = np.random.default_rng(0)
    shuffled = []
    for p in pairs:
        perm = rng.permutation(len(p.environment_species))
        shuffled.append(ExchangePair(host=p.host, species_i=p.species_i, species_j=p.species_j,
                                     position_i=p.position_i, position_j=p.position_j, tensor=p.tensor,
                                     environment_species=[p.environment_species[k] for k in perm],
                                     environment_positions=p.environment_positions[perm], cell=p.cell))
    t = run(net, build_graphs(pairs, SPECIES, 6.5, 4.5), torch.float64)
    np.testing.assert_allclose(run(net, build_graphs(moved, SPECIES, 6.5, 4.5), torch.float64), t, atol=1e-10)
    np.testing.assert_allclose(run(net, build_graphs(shuffled, SPECIES, 6.5, 4.5), torch.float64), t, atol=1e-10)
    # the order of the surrounding atoms inside the arrays does not matter either (host atoms included)
    g = build_graphs(pairs, SPECIES, 6.5, 4.5)
    perm_rows = []
    for b in range(len(g)):
        rows = np.arange(g.env_ptr[b], g.env_ptr[b + 1])
        perm_rows.append(rng.permutation(rows))
    rows = np.concatenate(perm_rows)
    g2 = PairGraphs(g.species_i, g.species_j, g.bond, g.env_ptr, g.env_species[rows], g.env_ri[rows], g.env_rj[rows])
    np.testing.assert_allclose(run(net, g2, torch.float64), t, atol=1e-10)


def test_swapping_i_and_j_gives_the_transpose():
    net = net_for(torch.float64)
    g = build_graphs(random_pairs(6, seed=2), SPECIES, 6.5, 4.5)
    t = run(net, g, torch.float64)
    t_swapped = run(net, g.swapped(), torch.float64)
    np.testing.assert_allclose(t_swapped, t.transpose(0, 2, 1), atol=1e-12)
    assert np.abs(t - t.transpose(0, 2, 1)).max() > 1e-4, "D should not vanish identically"


def test_achiral_model_is_inversion_invariant_and_chiral_one_is_not():
    """J is axial ⊗ axial: inverting every position leaves it unchanged in an O(3)-equivariant model.

    With pseudoscalar channels (chiral=True, the TI host whose defects break inversion) it may change.
    """
    g = build_graphs(random_pairs(5, seed=4), SPECIES, 6.5, 4.5)
    inv = -np.eye(3)
    achiral = net_for(torch.float64, chiral=False)
    t = run(achiral, g, torch.float64)
    np.testing.assert_allclose(run(achiral, transformed(g, inv), torch.float64), t, atol=1e-10)
    chiral = net_for(torch.float64, chiral=True)
    t = run(chiral, g, torch.float64)
    assert np.abs(run(chiral, transformed(g, inv), torch.float64) - t).max() > 1e-6


def test_isolated_pair_has_no_dmi_without_chirality():
    """r × r = 0: seeing only the bond vector, an O(3)-equivariant model gives D = 0; the chiral one
    can give the Bloch-type D ∥ r_ij the TI host has."""
    pair = ExchangePair(host="ti", species_i="Fe", species_j="Mn", position_i=np.zeros(3),
                        position_j=np.array([1.0, 2.0, 0.5]) * A, tensor=np.zeros((3, 3)), cell=A * np.eye(3))
    g = build_graphs([pair], SPECIES, 6.5, 0.0)  # r_host = 0: no host atoms, nothing but the bond
    assert np.diff(g.env_ptr)[0] == 0
    t = run(net_for(torch.float64, chiral=False), g, torch.float64)[0]
    np.testing.assert_allclose(t - t.T, 0, atol=1e-12)
    t = run(net_for(torch.float64, chiral=True), g, torch.float64)[0]
    d = np.array([t[1, 2] - t[2, 1], t[2, 0] - t[0, 2], t[0, 1] - t[1, 0]]) / 2
    assert np.linalg.norm(d) > 1e-6
    np.testing.assert_allclose(np.cross(d, pair.bond), 0, atol=1e-10)  # D ∥ r_ij


def test_unknown_species_and_bad_geometry_are_refused():
    pairs = random_pairs(2)
    bad = ExchangePair(host="ti", species_i="Fe", species_j="Xx", position_i=np.zeros(3),
                       position_j=np.array([A, 0, 0]), tensor=np.zeros((3, 3)), cell=A * np.eye(3))
    with pytest.raises(InputError, match=r"pairs\[2\]\.species.*'Xx'.*unknown to the model.*allowed: Fe, Mn"):
        build_graphs([*pairs, bad], SPECIES, 6.5, 4.5)
    far = ExchangePair(host="ti", species_i="Fe", species_j="Mn", position_i=np.zeros(3),
                       position_j=np.array([9 * A, 0, 0]), tensor=np.zeros((3, 3)), cell=A * np.eye(3))
    with pytest.raises(InputError, match=r"distance.*up to 14"):
        build_graphs([far], SPECIES, 6.5, 4.5, r_pair=14.0)
    same = ExchangePair(host="ti", species_i="Fe", species_j="Mn", position_i=np.zeros(3), position_j=np.zeros(3),
                        tensor=np.zeros((3, 3)), cell=A * np.eye(3))
    with pytest.raises(InputError, match="coincide"):
        build_graphs([same], SPECIES, 6.5, 4.5)


def test_vectorised_graphs_match_the_per_pair_definition(engine_pairs):
    """build_graphs (vectorised) selects exactly the atoms of pair_atoms (per pair, via ExchangePair.host_sites)."""
    from mlkkr.models.exchange import pair_atoms

    pairs = engine_pairs[0][:150] + random_pairs(20, seed=9)
    species = sorted({s for p in pairs for s in (p.species_i, p.species_j, p.host, *p.environment_species)})
    index = {s: k for k, s in enumerate(species)}
    g = build_graphs(pairs, species, 6.5, 4.5)
    for b, p in enumerate(pairs):
        names, pos = pair_atoms(p, 6.5, 4.5)
        want = sorted((index[n], *np.round(x - pos[0], 6)) for n, x in zip(names[2:], pos[2:], strict=True))
        rows = slice(g.env_ptr[b], g.env_ptr[b + 1])
        got = sorted((int(s), *np.round(x, 6)) for s, x in zip(g.env_species[rows], g.env_ri[rows], strict=True))
        assert got == want, b
        np.testing.assert_allclose(g.env_rj[rows], g.env_ri[rows] - p.bond, atol=1e-12)


def test_message_layer_maps_irreps_equivariantly_under_rotations_and_inversion():
    """One layer, V ← V + Gate(Linear(V ⊗ E)), with e3nn's modules: rotating or inverting V and E by their
    irreps' D(g) rotates or inverts the new V by D(g) and leaves the latent scalars alone — so each
    0e/0o channel goes through the right activation. A Linear mapped onto ``scalars + gates + gated``
    (unsorted) instead of the Gate's own sorted ``irreps_in`` feeds pseudoscalars to the gates and SiLU:
    the same check must catch it (it did break the network's parity once)."""
    from e3nn import o3

    from mlkkr.models.exchange import MessageLayer

    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        layer = MessageLayer(tiny_model(species=SPECIES, mul=3))
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(5, layer.latent_mlp[0].in_features - layer.mul, generator=gen)
        v = torch.randn(5, layer.irreps_v.dim, generator=gen)
        e = torch.randn(5, layer.irreps_e.dim, generator=gen)

        @torch.no_grad()
        def error(lay: MessageLayer, rot: torch.Tensor) -> float:
            dv, de = lay.irreps_v.D_from_matrix(rot), lay.irreps_e.D_from_matrix(rot)
            x0, v0 = lay(x, v, e)
            x1, v1 = lay(x, v @ dv.T, e @ de.T)
            return max(float((v1 - v0 @ dv.T).abs().max()), float((x1 - x0).abs().max()))

        assert layer.gate.irreps_in != layer.gate.irreps_scalars + layer.gate.irreps_gates + layer.gate.irreps_gated
        for seed in range(2):
            rot = torch.as_tensor(rotation(seed))
            assert error(layer, rot) < 1e-12
            assert error(layer, -rot) < 1e-12  # improper: parities tracked
        unsorted = layer.gate.irreps_scalars + layer.gate.irreps_gates + layer.gate.irreps_gated
        layer.linear = o3.Linear(layer.tp.irreps_out.simplify(), unsorted)
        assert error(layer, -torch.as_tensor(rotation(0))) > 1e-3
    finally:
        torch.set_default_dtype(torch.float32)
