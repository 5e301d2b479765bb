r"""E(3)-equivariant network (e3nn) for exchange tensors J_ij of magnetic impurity pairs.

Conventions
-----------
Everything follows :mod:`mlkkr.greens.exchange` / :mod:`mlkkr.data.schema`: J_ij is a 3×3 tensor in
meV with ``E = −Σ_{i<j} e_i·J_ij·e_j`` (J > 0 ferromagnetic), ``J = Tr/3``, ``D = (A_yz, A_zx, A_xy)``
of ``A = (J_ij − J_ijᵀ)/2``, ``S`` the symmetric traceless part, ``J_ji = J_ijᵀ``. Positions in Å.

The graph
---------
A pair (i, j) is described by the atoms around it: the two magnetic atoms, every other defect within
``r_env`` of i or j, and the host atoms within ``r_host`` of i or j (they fix the orientation of the
crystal; the J of a bond depends on its direction in the lattice). Only relative vectors enter —
``r_ij = r_j − r_i`` and, for each surrounding atom k, ``r_ik`` and ``r_jk`` — so the output is
translation invariant, and surrounding atoms enter through sums, so it is invariant to their order.

The network (edge-centred, after Allegro: Musaelian et al., Nat. Commun. 14, 579 (2023))
----------------------------------------------------------------------------------------
Features live on the *pair* (the edge i→j), not on atoms:

* latent scalars ``x`` (an MLP of a Bessel basis of |r_ij| and the species embeddings of i and j);
* equivariant features ``V`` with irreps ``mul × (0e + 0o + 1o + 1e + 2e + 2o)``, started from the
  spherical harmonics of ``r̂_ij`` weighted by functions of ``x`` (and, in the chiral model, by
  pseudoscalar functions of ``x``: the 0o, 1e, 2o channels).

Each layer is a message from the surrounding atoms to the pair: per atom k an MLP of
(Bessel bases of |r_ik| and |r_jk|, Legendre polynomials of the angles between r_ik and r_ij and
between r_jk and r_ji, the species embedding of k, the pair latent ``x``) gives weights
for ``Y(r̂_ik)`` and ``Y(r̂_jk)`` (l ≤ 2); their sum over k is the environment ``E`` of the pair. The
pair features are updated by e3nn's modules: the tensor product ``V ⊗ E``
(:class:`e3nn.o3.TensorProduct`, channel-wise "uuu" paths to every irrep of l ≤ 2 of either parity, no
weights of its own), :class:`e3nn.o3.Linear` onto the input irreps of :class:`e3nn.nn.Gate` (in the
Gate's own sorted order), the gate and a residual connection; the latent scalars by an MLP of the new
0e scalars. The per-atom weights act before the sum over k; the tensor product is bilinear, so
``V ⊗ Σ_k E_k`` equals the sum of the per-atom products at 1/(number of atoms) the cost. Because
the per-atom weights depend on the angles to the bond, the host shell around i — whose l ≤ 2
moments vanish for a cubic shell — still tells the network how the bond lies in the crystal.

Readout: :class:`e3nn.o3.Linear` of ``V`` to ``1x0e + 1x1e + 1x2e`` (plus an MLP of ``x`` on the 0e channel),
scaled per irrep by statistics of the training set, and turned into the Cartesian 3×3 tensor by
e3nn's own change of basis (:class:`e3nn.io.CartesianTensor` ``"ij"``). The i↔j symmetry
``J_ji = J_ijᵀ`` holds by construction: the network is evaluated for (i, j) and for (j, i) and
returns ``(T_ij + T_jiᵀ) / 2``.

Chirality. Spins are axial vectors, so J_ij transforms as axial ⊗ axial = 0e ⊕ 1e ⊕ 2e and a model
built only from bond vectors (1o) and true scalars gives D ⊥ every mirror plane of the environment:
for an isolated pair, D = 0 (``r × r = 0``). The engine's TI host breaks inversion on every defect
site (the parity-odd ``W τ_x`` term), which allows a chiral, Bloch-type D ∥ r_ij. With
``chiral=True`` (default) the species embedding also feeds pseudoscalar (0o) channels, so
``0o ⊗ 1o → 1e`` can express it; the model is then equivariant under proper rotations (SO(3)) and
translations, not under inversion. With ``chiral=False`` it is fully O(3)-equivariant (a
centrosymmetric host, e.g. bcc Fe).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from e3nn import o3
from e3nn.io import CartesianTensor
from e3nn.nn import Gate
from torch import nn

from mlkkr.errors import InputError

#: Irreps of the Cartesian 3×3 tensor (e3nn's decomposition of ``"ij"``): J, D and S.
TENSOR_IRREPS = o3.Irreps("1x0e+1x1e+1x2e")


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
@dataclass
class ExchangeModelConfig:
    """Hyper-parameters of :class:`ExchangeNet` (lengths in Å).

    species: every species label the model knows (magnetic species, other defects, and the host
        label used for host atoms); anything else is refused with :class:`InputError`.
    r_env: surrounding defects within this distance of i or j enter the graph.
    r_host: host atoms within this distance of i or j enter the graph.
    r_pair: the radial basis of |r_ij| covers 0 … r_pair (pairs farther apart are refused).
    mul: channels per irrep of the pair features. latent: width of the scalar MLPs.
    layers: message layers. n_basis / n_basis_pair: Bessel functions for |r_ik| / |r_ij|.
    embed: species embedding width. chiral: pseudoscalar channels (see module doc).
    stats: training-set scale of each irrep of the tensor (mean0, std0, std1, std2, meV) and
        ``avg_env`` (mean number of surrounding atoms, to normalise the sums); set by training.
    """

    species: list[str]
    r_env: float = 9.0
    r_host: float = 4.5
    r_pair: float = 14.0
    mul: int = 8
    latent: int = 32
    layers: int = 1
    n_basis: int = 8
    n_basis_pair: int = 16
    embed: int = 16
    chiral: bool = True
    stats: dict[str, float] = field(default_factory=lambda: {"mean0": 0.0, "std0": 1.0, "std1": 1.0,
                                                             "std2": 1.0, "avg_env": 10.0})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExchangeModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            key = sorted(unknown)[0]
            raise InputError(f"model.{key}", d[key], allowed=sorted(known))
        return cls(**d)


# --------------------------------------------------------------------------------------------------
# Graphs: ExchangePair -> arrays
# --------------------------------------------------------------------------------------------------
@dataclass
class PairGraphs:
    """A set of pair graphs as flat arrays (numpy or torch), surrounding atoms in CSR layout.

    species_i, species_j: (B,) species indices. bond: (B, 3) r_j − r_i, Å.
    env_ptr: (B + 1,) the surrounding atoms of pair b are ``env_ptr[b]:env_ptr[b + 1]``.
    env_species: (E,) indices. env_ri, env_rj: (E, 3) r_k − r_i and r_k − r_j, Å.
    """

    species_i: Any
    species_j: Any
    bond: Any
    env_ptr: Any
    env_species: Any
    env_ri: Any
    env_rj: Any

    def __len__(self) -> int:
        return len(self.species_i)

    def subset(self, idx: Sequence[int] | np.ndarray) -> PairGraphs:
        """The graphs ``idx`` (numpy arrays only)."""
        idx = np.asarray(idx, int)
        counts = np.diff(self.env_ptr)[idx]
        starts = self.env_ptr[idx]
        rows = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts, strict=True)]) \
            if len(idx) else np.zeros(0, int)
        return PairGraphs(self.species_i[idx], self.species_j[idx], self.bond[idx],
                          np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                          self.env_species[rows], self.env_ri[rows], self.env_rj[rows])

    def to_torch(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> PairGraphs:
        def f(x, d):
            return torch.as_tensor(np.asarray(x), dtype=d, device=device)

        return PairGraphs(f(self.species_i, torch.long), f(self.species_j, torch.long), f(self.bond, dtype),
                          f(self.env_ptr, torch.long), f(self.env_species, torch.long),
                          f(self.env_ri, dtype), f(self.env_rj, dtype))

    def swapped(self) -> PairGraphs:
        """The same pairs seen from j (i ↔ j): bond → −bond, r_ik ↔ r_jk."""
        return PairGraphs(self.species_j, self.species_i, -self.bond, self.env_ptr, self.env_species,
                          self.env_rj, self.env_ri)


def pair_atoms(pair: Any, r_env: float, r_host: float) -> tuple[list[str], np.ndarray]:
    """The atoms of the graph of ``pair`` (an :class:`mlkkr.data.schema.ExchangePair`): species, positions.

    Order: i, j, then the surrounding defects within ``r_env`` Å of i or j (in the pair's order), then
    the host atoms within ``r_host`` Å of i or j, labelled with ``pair.host``. A reader that already
    put the host atoms into the environment (``provenance["environment_includes_host"]``) gets no
    extra host atoms.
    """
    pi, pj = pair.position_i, pair.position_j
    env_pos = np.asarray(pair.environment_positions, float).reshape(-1, 3)
    env_sp = list(pair.environment_species)
    if len(env_pos):
        near = np.minimum(np.linalg.norm(env_pos - pi, axis=1), np.linalg.norm(env_pos - pj, axis=1))
        keep = near <= r_env + 1e-9
        env_pos, env_sp = env_pos[keep], [s for s, k in zip(env_sp, keep, strict=True) if k]
    species = [pair.species_i, pair.species_j, *env_sp]
    positions = [pi[None], pj[None], env_pos]
    if r_host > 0 and not pair.provenance.get("environment_includes_host", False):
        host = pair.host_sites(r_host)
        species += [str(pair.host)] * len(host)
        positions.append(host)
    return species, np.concatenate(positions)


#: Two positions closer than this (Å) are the same site (a host atom there is replaced by the defect).
SAME_SITE = 0.05


def _host_candidates(pi: np.ndarray, pj: np.ndarray, cell: np.ndarray, r_host: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Lattice points of ``cell`` within ``r_host`` of i or j, each once, for pairs (B, 3): (owner, position)."""
    inv = np.linalg.inv(cell)
    nmax = int(np.ceil(r_host * np.linalg.norm(inv, axis=0).max())) + 1
    g = np.arange(-nmax, nmax + 1)
    offsets = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3).astype(float)
    diag = float(np.abs(cell).sum(axis=0).max())
    offsets = offsets[np.linalg.norm(offsets @ cell, axis=1) <= r_host + diag]
    owners, points = [], []
    for centre, other_first in ((pi, False), (pj, True)):
        cand = (np.rint(centre @ inv)[:, None, :] + offsets[None]) @ cell  # (B, K, 3)
        keep = np.linalg.norm(cand - centre[:, None], axis=-1) <= r_host + 1e-9
        if other_first:  # near both i and j: listed once, with i
            keep &= np.linalg.norm(cand - pi[:, None], axis=-1) > r_host + 1e-9
        b, k = np.nonzero(keep)
        owners.append(b)
        points.append(cand[b, k])
    return np.concatenate(owners), np.concatenate(points)


def build_graphs(pairs: Sequence[Any], species: Sequence[str], r_env: float, r_host: float,
                 r_pair: float | None = None, field_name: str = "pairs") -> PairGraphs:
    """Graphs of ``pairs`` for a model that knows ``species``; :class:`InputError` on anything unknown.

    The atoms of a graph are those of :func:`pair_atoms` (same selection, vectorised over pairs):
    the other defects within ``r_env`` Å of i or j, and the host atoms (one per cell of
    ``pair.cell``, labelled ``pair.host``) within ``r_host`` Å of i or j that no defect occupies.
    Refuses (naming the pair) a species not in ``species``, a non-finite position, coincident i and j,
    and — when ``r_pair`` is given — a pair farther apart than ``r_pair`` Å.
    """
    index = {s: n for n, s in enumerate(species)}
    n = len(pairs)

    def lookup(name: str, b: int) -> int:
        if name not in index:
            raise InputError(f"{field_name}[{b}].species", name, allowed=list(species),
                             reason=f"species {name!r} is unknown to the model")
        return index[name]

    si = np.array([lookup(p.species_i, b) for b, p in enumerate(pairs)], np.int64)
    sj = np.array([lookup(p.species_j, b) for b, p in enumerate(pairs)], np.int64)
    pi = np.array([p.position_i for p in pairs], float).reshape(n, 3)
    pj = np.array([p.position_j for p in pairs], float).reshape(n, 3)
    counts = np.array([len(p.environment_species) for p in pairs], np.int64)
    env_pos = np.concatenate([np.asarray(p.environment_positions, float).reshape(-1, 3) for p in pairs]) \
        if n else np.zeros((0, 3))
    env_owner = np.repeat(np.arange(n), counts)
    for b in np.unique(np.concatenate([np.nonzero(~np.isfinite(pi).all(1) | ~np.isfinite(pj).all(1))[0],
                                       env_owner[~np.isfinite(env_pos).all(1)]])):
        raise InputError(f"{field_name}[{b}].positions", "NaN/inf", reason="positions must be finite")
    bond = pj - pi
    dist = np.linalg.norm(bond, axis=1)
    for b in np.nonzero(dist < 1e-6)[0]:
        raise InputError(f"{field_name}[{b}].position_j", pj[b].tolist(), reason="i and j coincide")
    if r_pair is not None:
        for b in np.nonzero(dist > r_pair + 1e-6)[0]:
            raise InputError(f"{field_name}[{b}].distance", round(float(dist[b]), 4),
                             reason=f"the model covers pair distances up to {r_pair} Å")
    env_sp = np.array([lookup(s, b) for b, p in enumerate(pairs) for s in p.environment_species], np.int64)
    near = np.minimum(np.linalg.norm(env_pos - pi[env_owner], axis=1), np.linalg.norm(env_pos - pj[env_owner], axis=1))
    keep = near <= r_env + 1e-9
    owner, pos, spc, rank = [env_owner[keep]], [env_pos[keep]], [env_sp[keep]], [np.zeros(keep.sum(), np.int64)]
    if r_host > 0:
        groups: dict[tuple, list[int]] = {}
        for b, p in enumerate(pairs):
            if not p.provenance.get("environment_includes_host", False):
                key = (str(p.host), np.asarray(p.cell, float).round(9).tobytes())
                groups.setdefault(key, []).append(b)
        for (host, _), members in groups.items():
            for start in range(0, len(members), 2048):
                idx = np.asarray(members[start:start + 2048])
                h_owner, h_pos = _host_candidates(pi[idx], pj[idx], np.asarray(pairs[idx[0]].cell, float), r_host)
                free = (np.linalg.norm(h_pos - pi[idx][h_owner], axis=1) > SAME_SITE) & \
                       (np.linalg.norm(h_pos - pj[idx][h_owner], axis=1) > SAME_SITE)
                sub_counts = counts[idx]
                if sub_counts.sum():  # a host site taken by another defect is not a host atom
                    emax = int(sub_counts.max())
                    pad = np.full((len(idx), emax, 3), np.nan)
                    rows = np.concatenate([np.arange(c) for c in sub_counts])
                    owners_local = np.repeat(np.arange(len(idx)), sub_counts)
                    starts = np.concatenate([[0], np.cumsum(counts)])[idx]
                    pad[owners_local, rows] = env_pos[np.repeat(starts, sub_counts) + rows]
                    d = np.linalg.norm(h_pos[:, None, :] - pad[h_owner], axis=-1)
                    free &= ~(np.nan_to_num(d, nan=np.inf) <= SAME_SITE).any(axis=1)
                label = lookup(host, int(idx[0]))
                owner.append(idx[h_owner[free]])
                pos.append(h_pos[free])
                spc.append(np.full(int(free.sum()), label, np.int64))
                rank.append(np.ones(int(free.sum()), np.int64))
    owner_all, pos_all = np.concatenate(owner), np.concatenate(pos).reshape(-1, 3)
    order = np.lexsort((np.concatenate(rank), owner_all))  # per pair: defects first, then host atoms
    owner_all, pos_all, spc_all = owner_all[order], pos_all[order], np.concatenate(spc)[order]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(owner_all, minlength=n))]).astype(np.int64)
    return PairGraphs(si, sj, bond, ptr, spc_all, pos_all - pi[owner_all], pos_all - pj[owner_all])


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------
def envelope(r: torch.Tensor, r_cut: float, p: int = 6) -> torch.Tensor:
    """Smooth polynomial cutoff (DimeNet/NequIP, p = 6): 1 at r = 0, 0 with 3 vanishing derivatives at r_cut."""
    x = (r / r_cut).clamp(max=1.0)
    return (1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)) \
        * (x < 1.0)


class BesselBasis(nn.Module):
    """``sqrt(2/r_c) sin(nπr/r_c)/r`` for n = 1 … N (radial basis of DimeNet/NequIP), r in Å."""

    def __init__(self, r_cut: float, n: int) -> None:
        super().__init__()
        self.r_cut = float(r_cut)
        self.register_buffer("freq", torch.arange(1, n + 1, dtype=torch.get_default_dtype()) * math.pi / r_cut)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.clamp(min=1e-6)[..., None]
        return math.sqrt(2.0 / self.r_cut) * torch.sin(self.freq * r) / r * (r < self.r_cut)


#: Legendre polynomials P_1 … P_N of the bond angles at i and j fed to the per-atom weights.
N_LEGENDRE = 4


def legendre(x: torch.Tensor, n: int = N_LEGENDRE) -> torch.Tensor:
    """P_1(x) … P_n(x) (Bonnet's recursion), shape (..., n)."""
    out = [torch.ones_like(x), x]
    for k in range(1, n):
        out.append(((2 * k + 1) * x * out[k] - k * out[k - 1]) / (k + 1))
    return torch.stack(out[1 : n + 1], dim=-1)


def mlp(sizes: Sequence[int], act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def irreps_pair(mul: int) -> o3.Irreps:
    """Irreps of the pair features ``V``: ``mul × (0e + 0o + 1o + 1e + 2e + 2o)`` — e3nn's sorted order,
    which is also the order of :class:`e3nn.nn.Gate`'s output (scalars, then the gated irreps)."""
    return o3.Irreps([(mul, (ell, p)) for ell in range(3) for p in ((1, -1) if ell % 2 == 0 else (-1, 1))])


def irreps_env(mul: int) -> o3.Irreps:
    """Irreps of the environment ``E``: ``mul × (0e + 1o + 2e)`` (spherical harmonics l ≤ 2)."""
    return o3.Irreps([(mul, (ell, (-1) ** ell)) for ell in range(3)])


def pair_gate(mul: int) -> Gate:
    """e3nn's :class:`~e3nn.nn.Gate` for the pair features: 0e through SiLU, 0o through tanh (odd, so they
    stay pseudoscalars), every l > 0 channel times the sigmoid of its own 0e gate. Its ``irreps_out``
    equals :func:`irreps_pair`. Its ``irreps_in`` is Gate's own sorted, simplified order, *not*
    scalars + gates + gated: ``mul x0o + 5·mul x0e + mul × (1o + 1e + 2o + 2e)`` (e3nn sorts odd before
    even; in the 0e block the mul scalars come first, then the 4·mul gates in the order of the gated
    irreps). The linear map before the gate must produce exactly ``gate.irreps_in``."""
    irreps = irreps_pair(mul)
    scalars = o3.Irreps([(m, ir) for m, ir in irreps if ir.l == 0])
    gated = o3.Irreps([(m, ir) for m, ir in irreps if ir.l > 0])
    return Gate(scalars, [torch.nn.functional.silu, torch.tanh], f"{gated.num_irreps}x0e", [torch.sigmoid], gated)


def channelwise_instructions(irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, lmax: int = 2
                             ) -> tuple[o3.Irreps, list[tuple[int, int, int, str, bool]]]:
    """Every path ``in1[a] ⊗ in2[b] → ir`` with ``ir.l ≤ lmax``, channel-wise ("uuu", no weights: the
    learned weights are in the environment MLP before and the :class:`~e3nn.o3.Linear` after).

    The outputs are listed in e3nn's sorted irrep order (stable: paths to the same irrep stay in
    instruction order), so that ``irreps_out.simplify()`` describes the same memory layout with one
    block per irrep type.
    """
    paths = [(ir, a, b) for a, (_, ir1) in enumerate(irreps_in1) for b, (_, ir2) in enumerate(irreps_in2)
             for ir in ir1 * ir2 if ir.l <= lmax]
    order = sorted(range(len(paths)), key=lambda k: (paths[k][0], k))
    irreps_out = o3.Irreps([(irreps_in1[paths[k][1]].mul, paths[k][0]) for k in order])
    return irreps_out, [(paths[k][1], paths[k][2], i, "uuu", False) for i, k in enumerate(order)]


class MessageLayer(nn.Module):
    """One message from the surrounding atoms to the pair: ``V ← V + Gate(Linear(V ⊗ E))``, ``x`` updated.

    ``V ⊗ E`` is e3nn's :class:`~e3nn.o3.TensorProduct` (channel-wise "uuu" paths to every irrep of
    l ≤ 2, component normalisation), ``Linear`` e3nn's :class:`~e3nn.o3.Linear` onto
    ``gate.irreps_in``, ``Gate`` :func:`pair_gate`.
    """

    def __init__(self, cfg: ExchangeModelConfig) -> None:
        super().__init__()
        mul = cfg.mul
        self.mul = mul
        self.irreps_v, self.irreps_e = irreps_pair(mul), irreps_env(mul)
        self.env_mlp = mlp([2 * cfg.n_basis + 2 * N_LEGENDRE + cfg.embed + cfg.latent, cfg.latent, cfg.latent,
                            2 * 3 * mul])
        tp_out, instructions = channelwise_instructions(self.irreps_v, self.irreps_e)
        self.tp = o3.TensorProduct(self.irreps_v, self.irreps_e, tp_out, instructions,
                                   irrep_normalization="component")
        self.gate = pair_gate(mul)
        assert self.gate.irreps_out == self.irreps_v, (self.gate.irreps_out, self.irreps_v)
        # tp_out is sorted, so its simplified form has the same layout: one weight block per irrep type
        self.linear = o3.Linear(tp_out.simplify(), self.gate.irreps_in)
        self.latent_mlp = mlp([cfg.latent + mul, cfg.latent, cfg.latent])
        self.avg_env = float(cfg.stats.get("avg_env", 10.0))
        # e3nn layout of E ([channel, m] per l): the env MLP's output row (role, l, channel) and the
        # spherical-harmonic component of every column
        rows, comps = [], []
        for (m, ir), start in zip(self.irreps_e, (0, 1, 4), strict=True):
            for u in range(m):
                rows += [ir.l * mul + u] * ir.dim
                comps += range(start, start + ir.dim)
        rows_t = torch.tensor(rows)
        self.register_buffer("rows", torch.cat([rows_t, rows_t + 3 * mul]), persistent=False)
        self.register_buffer("comps", torch.tensor(comps), persistent=False)

    def environment(self, x: torch.Tensor, g: PairGraphs, env_feats: torch.Tensor, y_i: torch.Tensor,
                    y_j: torch.Tensor, cut: torch.Tensor, pair_of_env: torch.Tensor) -> torch.Tensor:
        """``E`` (B, irreps_e.dim): Σ_k [w_a(k) Y(r̂_ik) + w_b(k) Y(r̂_jk)], per channel and l.

        The weights are ``env_mlp([features_k, x_pair])``; its first layer is applied to the per-pair
        part once per pair (not once per atom), which is the same function, cheaper. Summing before the
        tensor product is exact: it is linear in ``E``, so ``V ⊗ Σ_k E_k = Σ_k V ⊗ E_k``.
        """
        first = self.env_mlp[0]
        nf = env_feats.shape[1]
        h = env_feats @ first.weight[:, :nf].T + (x @ first.weight[:, nf:].T + first.bias)[pair_of_env]
        for layer in list(self.env_mlp)[1:-1]:
            h = layer(h)
        # last layer: one weight per (role, l, channel), repeated over m by indexing the (small) weight
        # matrix rather than the (large) output -> (E, role, irreps_e.dim) in e3nn's layout directly
        last = self.env_mlp[-1]
        w = (torch.addmm(last.bias[self.rows], h, last.weight[self.rows].T) * cut[:, None]).view(-1, 2, len(self.comps))
        term = w[:, 0] * y_i[:, self.comps] + w[:, 1] * y_j[:, self.comps]
        acc = torch.zeros(x.shape[0], term.shape[1], dtype=x.dtype, device=x.device).index_add_(0, pair_of_env, term)
        return acc / math.sqrt(self.avg_env)

    def forward(self, x: torch.Tensor, v: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.gate(self.linear(self.tp(v, e)))
        x = x + self.latent_mlp(torch.cat([x, out[:, : self.mul]], dim=-1))  # the SiLU'd 0e scalars
        return x, v + out


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------
#: Written to model.json as ``architecture``; a model folder with another value is refused on loading
#: (v1, the hand-written channel-wise tensor product and gate, had none).
ARCHITECTURE = "mlkkr.exchange.pair-e3nn/2"


class ExchangeNet(nn.Module):
    """Exchange tensor J_ij (B, 3, 3) meV of each pair graph; see the module doc for the architecture."""

    def __init__(self, cfg: ExchangeModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        mul = cfg.mul
        self.irreps_v = irreps_pair(mul)
        self.embedding = nn.Embedding(len(cfg.species), cfg.embed)
        self.r_env_cut = max(cfg.r_env, cfg.r_host) * 1.05
        self.rb_env = BesselBasis(self.r_env_cut, cfg.n_basis)
        self.rb_pair = BesselBasis(cfg.r_pair * 1.05, cfg.n_basis_pair)
        self.pair_mlp = mlp([cfg.n_basis_pair + 2 * cfg.embed, cfg.latent, cfg.latent, cfg.latent])
        self.init_w = nn.Linear(cfg.latent, 6 * mul)  # weights of 0e, 0o, 1o, 1e, 2e, 2o
        self.layers = nn.ModuleList(MessageLayer(cfg) for _ in range(cfg.layers))
        self.readout = o3.Linear(self.irreps_v, TENSOR_IRREPS)
        self.scalar_head = mlp([cfg.latent, cfg.latent, 1])
        self.cartesian = CartesianTensor("ij")
        st = cfg.stats
        self.register_buffer("scale", torch.tensor([st["std0"]] + [st["std1"]] * 3 + [st["std2"]] * 5,
                                                   dtype=torch.get_default_dtype()))
        self.register_buffer("shift", torch.tensor([st["mean0"]] + [0.0] * 8, dtype=torch.get_default_dtype()))
        # e3nn's change of basis 1x0e+1x1e+1x2e <-> 3x3 (orthonormal); a constant, not saved
        self.register_buffer("q", self.cartesian.reduced_tensor_products().change_of_basis.to(
            torch.get_default_dtype()).clone(), persistent=False)

    def describe(self) -> dict[str, Any]:
        """The network's e3nn modules and their irreps (for model.json; informational)."""
        layer = self.layers[0] if len(self.layers) else None
        return {"architecture": ARCHITECTURE, "irreps_pair": str(self.irreps_v),
                "readout": repr(self.readout), "cartesian": "e3nn.io.CartesianTensor('ij')",
                **({"irreps_env": str(layer.irreps_e), "tensor_product": repr(layer.tp),
                    "linear": repr(layer.linear), "gate": repr(layer.gate)} if layer is not None else {})}

    @classmethod
    def build(cls, cfg: ExchangeModelConfig, dtype: torch.dtype = torch.float32) -> ExchangeNet:
        """The network in ``dtype``, built with that default dtype so that e3nn's Clebsch–Gordan and
        change-of-basis coefficients are exact to that precision (not float32 values cast up)."""
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return cls(cfg).to(dtype)
        finally:
            torch.set_default_dtype(old)

    # -- one orientation ------------------------------------------------------------------------
    def coefficients(self, g: PairGraphs) -> torch.Tensor:
        """Irrep coefficients (B, 9) of T_ij in e3nn's basis of ``1x0e+1x1e+1x2e``, meV (one orientation)."""
        cfg, mul = self.cfg, self.cfg.mul
        b = g.species_i.shape[0]
        dist = g.bond.norm(dim=-1)
        x = self.pair_mlp(torch.cat([self.rb_pair(dist), self.embedding(g.species_i),
                                     self.embedding(g.species_j)], dim=-1))
        w = self.init_w(x).view(b, 6, mul)
        ysh = o3.spherical_harmonics([1, 2], g.bond, normalize=True, normalization="component")
        y1, y2 = ysh[:, None, :3], ysh[:, None, 3:]
        # true scalars × Y(r̂_ij) -> 0e, 1o, 2e; pseudoscalars (species' handedness) × Y -> 0o, 1e, 2o;
        # in e3nn's layout of irreps_pair ([channel, m] per irrep)
        chi = 1.0 if cfg.chiral else 0.0
        v = torch.cat([w[:, 0], chi * w[:, 1], (w[:, 2, :, None] * y1).reshape(b, -1),
                       chi * (w[:, 3, :, None] * y1).reshape(b, -1), (w[:, 4, :, None] * y2).reshape(b, -1),
                       chi * (w[:, 5, :, None] * y2).reshape(b, -1)], dim=-1)
        counts = g.env_ptr[1:] - g.env_ptr[:-1]
        pair_of_env = torch.repeat_interleave(torch.arange(b, device=x.device), counts)
        ri, rj = g.env_ri.norm(dim=-1), g.env_rj.norm(dim=-1)
        u = g.bond / dist[:, None]
        cos_i = (g.env_ri * u[pair_of_env]).sum(-1) / ri.clamp(min=1e-9)
        cos_j = -(g.env_rj * u[pair_of_env]).sum(-1) / rj.clamp(min=1e-9)
        env_feats = torch.cat([self.rb_env(ri), self.rb_env(rj), legendre(cos_i), legendre(cos_j),
                               self.embedding(g.env_species)], dim=-1)
        ci, cj = envelope(ri, self.r_env_cut), envelope(rj, self.r_env_cut)
        cut = ci + cj - ci * cj
        y_i = o3.spherical_harmonics([0, 1, 2], g.env_ri, normalize=True, normalization="component")
        y_j = o3.spherical_harmonics([0, 1, 2], g.env_rj, normalize=True, normalization="component")
        for layer in self.layers:
            e = layer.environment(x, g, env_feats, y_i, y_j, cut, pair_of_env)
            x, v = layer(x, v, e)
        c = self.readout(v)
        c = c + torch.nn.functional.pad(self.scalar_head(x), (0, 8))
        return c * self.scale + self.shift

    def to_cartesian(self, c: torch.Tensor) -> torch.Tensor:
        """(B, 9) irrep coefficients -> (B, 3, 3) Cartesian tensors (e3nn's change of basis)."""
        return torch.einsum("kij,bk->bij", self.q, c)

    def from_cartesian(self, t: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) -> (B, 9) irrep coefficients (the change of basis is orthonormal)."""
        return torch.einsum("kij,bij->bk", self.q, t)

    def forward(self, g: PairGraphs) -> torch.Tensor:
        """J_ij (B, 3, 3) meV, symmetrised so that swapping i and j gives the transpose exactly."""
        b = g.species_i.shape[0]
        both = PairGraphs(torch.cat([g.species_i, g.species_j]), torch.cat([g.species_j, g.species_i]),
                          torch.cat([g.bond, -g.bond]),
                          torch.cat([g.env_ptr, g.env_ptr[1:] + g.env_ptr[-1]]),
                          torch.cat([g.env_species, g.env_species]), torch.cat([g.env_ri, g.env_rj]),
                          torch.cat([g.env_rj, g.env_ri]))
        t = self.to_cartesian(self.coefficients(both))
        return (t[:b] + t[b:].transpose(-1, -2)) / 2


def tensor_stats(tensors: np.ndarray, env_counts: np.ndarray) -> dict[str, float]:
    """Per-irrep scales of training tensors (meV) in e3nn's orthonormal basis, and the mean env size."""
    q = CartesianTensor("ij").reduced_tensor_products().change_of_basis.double().numpy()
    c = np.einsum("kij,bij->bk", q, np.asarray(tensors, float))
    def rms(x: np.ndarray) -> float:
        return float(max(np.sqrt(np.mean(x**2)), 1e-6))
    return {"mean0": float(c[:, 0].mean()), "std0": float(max(c[:, 0].std(), 1e-6)),
            "std1": rms(c[:, 1:4]), "std2": rms(c[:, 4:9]), "avg_env": float(max(np.mean(env_counts), 1.0))}
