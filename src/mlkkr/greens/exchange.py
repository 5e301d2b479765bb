r"""Exchange tensors from the magnetic force theorem (Liechtenstein formula, full tensor with SOC).

Convention — written once, here
-------------------------------
Classical spin model for unit moment directions ``e_i``, each pair counted **once**:

    E = − Σ_{i<j} e_i · J_ij · e_j ,     J_ij a 3×3 tensor in meV,

so **J > 0 is ferromagnetic**. ``J_ji = J_ijᵀ``. Decomposition:

    J_ij = J 1 + S + A,   J = Tr(J_ij)/3,   S = (J_ij + J_ijᵀ)/2 − J 1  (symmetric, traceless),
    A = (J_ij − J_ijᵀ)/2,   D = (A_yz, A_zx, A_xy)   ⇒   e_i · A · e_j = D · (e_i × e_j),

so the Dzyaloshinskii–Moriya term of E is ``− D_ij · (e_i × e_j)``.

Formula. A defect i has the on-site potential ``V_i = U_i + W_i τ_x − Δ_i m_i·σ``; rotating its
moment to first order, ``δV_i = −Δ_i δe_i·σ``. The grand potential at fixed E_F (Lloyd:
``δΩ = (1/π) Im ∫ dE f(E) Tr ln(1 − G δV)``) has the second-order cross term
``−(1/π) Im ∫ dE f Tr(δV_i G_ij δV_j G_ji)``, and matching it to the spin model gives

    J_ij^{αβ} = (Δ_i Δ_j / π) Im ∫ dE f(E) Tr[σ_α G_ij(E + i0) σ_β G_ji(E + i0)]     (eV → ×1000 meV)

with G the Green function of the whole cluster (embedded, all defects present) in the collinear
reference state with every moment along m, and α, β ⊥ m. The integral runs over the contour
(:mod:`mlkkr.greens.contour`). Three references (m = z gives xx, xy, yx, yy; m = x gives yy, yz,
zy, zz; m = y gives zz, zx, xz, xx) give the full tensor; the diagonal elements, obtained twice,
are averaged. :func:`lloyd_tensor` computes the same tensor independently as finite differences
of Lloyd band energies of small rotations; the tests require agreement to 1 %.

Other codes: aiida-kkr's impurity Jij parser uses the same sign (J > 0 ferromagnetic, J = Tr/3)
but writes ``D = (J_yz − J_zy, J_zx − J_xz, J_xy − J_yx)``, twice ours; see
:func:`mlkkr.data.schema.dmi_from_aiida_kkr`. TB2J counts each pair twice (``E = −Σ_{i≠j}``), so its
J is half of ours.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlkkr.errors import InputError
from mlkkr.greens._threads import single_threaded
from mlkkr.greens.defects import ELEMENTS, Defect, onsite_potential, spin_op
from mlkkr.greens.engine import Engine
from mlkkr.greens.hosts import Host

EV_TO_MEV = 1000.0
#: Reference moment directions and the two transverse components each one gives.
REFERENCES = ((2, (0, 1)), (0, (1, 2)), (1, (2, 0)))
_UNIT = np.eye(3)


def _masks() -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((3, 3, 3))
    for r, (_, (a, b)) in enumerate(REFERENCES):
        for x in (a, b):
            for y in (a, b):
                masks[r, x, y] = 1.0
    return masks, masks.sum(axis=0)


MASKS, COUNTS = _masks()


@dataclass(frozen=True)
class Decomposition:
    """``J`` (meV), ``D`` (3,) meV and the symmetric traceless ``S`` (3, 3) meV of a tensor."""

    J: float
    D: np.ndarray
    S: np.ndarray


def decompose(tensor: np.ndarray) -> Decomposition:
    """Split J_ij (3×3, meV) into J = Tr/3, D = (A_yz, A_zx, A_xy), S = sym − J·1 (see module doc)."""
    t = np.asarray(tensor, float)
    j = np.trace(t, axis1=-2, axis2=-1) / 3.0
    a = (t - np.swapaxes(t, -1, -2)) / 2
    d = np.stack([a[..., 1, 2], a[..., 2, 0], a[..., 0, 1]], axis=-1)
    s = (t + np.swapaxes(t, -1, -2)) / 2 - j[..., None, None] * _UNIT
    return Decomposition(J=j, D=d, S=s)


def compose(j: float, d: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decompose`: the 3×3 tensor from J, D and S."""
    a = np.zeros((3, 3))
    a[1, 2], a[2, 0], a[0, 1] = d
    return j * _UNIT + np.asarray(s, float) + a - a.T


def _per_reference(engine: Engine, gij: np.ndarray, gji: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """``(Δ_iΔ_j/π) Im Σ_z w_z Tr(σ_α G_ij σ_β G_ji)`` (meV) for all α, β: shape (..., R, 3, 3).

    ``gij``, ``gji``: (..., R refs, nz, nb, nb); one matrix product per reference with
    ``X[α] = w σ_α G_ij`` and ``Y[β] = (σ_β G_ji)ᵀ`` flattened over (z, orbital pairs). Only the
    components transverse to each reference are force-theorem exchange.
    """
    sig = np.stack([spin_op(engine.host, a) for a in range(3)])  # (3, nb, nb)
    w = engine.contour.w[:, None, None]
    x = np.stack([sig[a] @ gij for a in range(3)], axis=-4) * w  # (..., R, 3a, nz, nb, nb)
    y = np.stack([np.swapaxes(sig[b] @ gji, -1, -2) for b in range(3)], axis=-4)
    shp = x.shape[:-3] + (-1,)
    per_ref = (x.reshape(shp) @ np.swapaxes(y.reshape(shp), -1, -2)).imag / np.pi  # (..., R, 3a, 3b)
    return per_ref * np.asarray(deltas)[..., None, None, None] * EV_TO_MEV


def _tensor_from_blocks(engine: Engine, gij: np.ndarray, gji: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """J_ij (meV) from the blocks of the three references (..., 3, nz, nb, nb): transverse parts
    combined, diagonal elements averaged."""
    per_ref = _per_reference(engine, gij, gji, deltas)
    return np.einsum("...rab,rab->...ab", per_ref, MASKS) / COUNTS


@functools.lru_cache(maxsize=8)
def _onsite_table(host: Host) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Element index, on-site blocks (n_el, 3 refs, nb, nb) eV, and Δ (n_el,) for fast batches."""
    names = list(ELEMENTS)
    blocks = np.stack([np.stack([onsite_potential(host, e, _UNIT[m]) for m, _ in REFERENCES]) for e in names])
    return {e: k for k, e in enumerate(names)}, blocks, np.array([ELEMENTS[e].delta for e in names])


def reference_potentials(engine: Engine, defects: Sequence[Defect], shifts: np.ndarray | None = None,
                         extra_sites: int = 0) -> np.ndarray:
    """Cluster potentials for the three reference directions: (3, M, M) eV."""
    return np.stack([engine.cluster_potential(defects, _UNIT[m], shifts, extra_sites) for m, _ in REFERENCES])


@single_threaded
def exchange_tensor(engine: Engine, defects: Sequence[Defect], i: int, j: int, *,
                    shifts: np.ndarray | None = None, extra_sites: np.ndarray | None = None) -> np.ndarray:
    """Exchange tensor J_ij (3×3, meV, convention of this module) between defects ``i`` and ``j``.

    ``defects`` is the whole cluster (all defects present in the embedding). With ``shifts`` and
    ``extra_sites`` (host sites of a screening region, after the defects) the self-consistent
    scalar potentials of :func:`mlkkr.greens.scf.screen` are used instead of the bare U.
    """
    for k, name in ((i, "i"), (j, "j")):
        if not 0 <= k < len(defects) or not defects[k].params.magnetic:
            raise InputError(f"pair.{name}", k, reason="must index a magnetic defect of the cluster")
    if i == j:
        raise InputError("pair", [i, j], reason="the two defects of a pair must differ")
    sites = np.array([d.site for d in defects] + ([] if extra_sites is None else list(map(tuple, extra_sites))),
                     int).reshape(-1, 3)
    n_extra = len(sites) - len(defects)
    engine.check_potentials([d.element for d in defects], None if shifts is None else shifts[:len(defects)])
    g0cc = engine.cluster_g0(sites)
    v = reference_potentials(engine, defects, shifts, n_extra)
    nb = engine.nb
    ci, cj = np.arange(i * nb, (i + 1) * nb), np.arange(j * nb, (j + 1) * nb)
    x = engine.embed(g0cc, v, np.concatenate([ci, cj]))  # (3, nz, M, 2nb)
    gij = x[..., ci, nb:]
    gji = x[..., cj, :nb]
    deltas = np.asarray(defects[i].params.delta * defects[j].params.delta)
    return _tensor_from_blocks(engine, gij, gji, deltas)


@single_threaded
def reference_block(engine: Engine, defects: Sequence[Defect], i: int, j: int, moment: int = 2) -> np.ndarray:
    """The 2×2 block (meV) of J_ij transverse to one reference direction ``moment`` (0, 1, 2 = x, y, z):
    rows/columns ``REFERENCES[r][1]`` (for z: (x, y)). For comparison with single-reference codes."""
    r = [m for m, _ in REFERENCES].index(moment)
    sites = np.array([d.site for d in defects], int)
    nb = engine.nb
    v = engine.cluster_potential(defects, _UNIT[moment])
    x = engine.embed(engine.cluster_g0(sites), v[None], np.concatenate([np.arange(i * nb, (i + 1) * nb),
                                                                      np.arange(j * nb, (j + 1) * nb)]))
    gij = x[..., i * nb:(i + 1) * nb, nb:]
    gji = x[..., j * nb:(j + 1) * nb, :nb]
    full = _per_reference(engine, gij, gji, np.asarray(defects[i].params.delta * defects[j].params.delta))[0]
    a, b = REFERENCES[r][1]
    return full[np.ix_([a, b], [a, b])]


@single_threaded
def exchange_tensor_batch(engine: Engine, sites: np.ndarray, elements: np.ndarray) -> np.ndarray:
    """Tensors J_01 (meV) for a batch of clusters of equal size, pair = defects 0 and 1 of each.

    ``sites`` (B, n, 3) int, ``elements`` (B, n) str. Returns (B, 3, 3). This is the fast path of
    the dataset builder: one gather of G0 blocks and one batched solve for the whole batch.
    """
    sites = np.asarray(sites, int)
    bsz, ns, _ = sites.shape
    nb = engine.nb
    index, table, delta = _onsite_table(engine.host)
    el = np.vectorize(index.__getitem__, otypes=[int])(np.asarray(elements))  # (B, n)
    blocks = engine.g0(sites[:, :, None, :] - sites[:, None, :, :])  # (nz, B, n, n, nb, nb)
    nz = blocks.shape[0]
    g0cc = blocks.transpose(1, 0, 2, 4, 3, 5).reshape(bsz, 1, nz, ns * nb, ns * nb)
    vblk = table[el].transpose(0, 2, 1, 3, 4)[:, :, None]  # (B, 3r, 1, n, nb, nb)
    # A = 1 − G0 V with V block-diagonal: column block j of G0 times V_j
    a = np.empty((bsz, 3, nz, ns * nb, ns * nb), complex)
    for j in range(ns):
        cols = slice(j * nb, (j + 1) * nb)
        a[..., cols] = -(g0cc[..., cols] @ vblk[:, :, :, j])
    a[..., np.arange(ns * nb), np.arange(ns * nb)] += 1.0
    rhs = np.broadcast_to(g0cc[..., :2 * nb], a.shape[:-1] + (2 * nb,))
    x = np.linalg.solve(a, rhs)  # (B, 3, nz, M, 2nb)
    gij = x[..., :nb, nb:]
    gji = x[..., nb:2 * nb, :nb]
    return _tensor_from_blocks(engine, gij, gji, delta[el[:, 0]] * delta[el[:, 1]])


@single_threaded
def lloyd_tensor(engine: Engine, defects: Sequence[Defect], i: int, j: int, theta: float = 0.02) -> np.ndarray:
    """The same tensor J_ij (meV) as finite differences of Lloyd band energies of small rotations.

    For each reference m and transverse directions n_α (of i) and n_β (of j), the moments are tilted
    to ``e = m cos θ ± n sin θ``; with ``E(s_i, s_j)`` the Lloyd grand-potential change of the
    whole cluster (host G0 only — no embedded G enters),
    ``J^{αβ} = −[E(++) − E(+−) − E(−+) + E(−−)] / (4 sin²θ)`` (error O(θ²)).
    """
    sites = np.array([d.site for d in defects], int)
    g0cc = engine.cluster_g0(sites)
    nb = engine.nb
    per_ref = np.zeros((3, 3, 3))
    for r, (m, trans) in enumerate(REFERENCES):
        v_ref = engine.cluster_potential(defects, _UNIT[m])
        vs, idx = [], []
        for a in trans:
            for b in trans:
                for si in (1, -1):
                    for sj in (1, -1):
                        v = v_ref.copy()
                        for k, (axis, s) in ((i, (a, si)), (j, (b, sj))):
                            e = _UNIT[m] * np.cos(theta) + s * _UNIT[axis] * np.sin(theta)
                            blk = engine.cluster_potential([defects[k]], e)
                            v[k * nb:(k + 1) * nb, k * nb:(k + 1) * nb] = blk
                        vs.append(v)
                        idx.append((a, b, si * sj))
        e = engine.lloyd(g0cc, np.stack(vs), v_ref)
        for (a, b, sign), val in zip(idx, e, strict=True):
            per_ref[r, a, b] -= sign * val / (4 * np.sin(theta) ** 2)
    return np.einsum("rab,rab->ab", per_ref, MASKS) / COUNTS * EV_TO_MEV
