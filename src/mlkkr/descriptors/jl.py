"""Jacobi–Legendre (JL) descriptors of grid points in an atomic environment.

A grid point ``p`` sees the atoms ``a`` within the cutoff ``r_c`` (Å); ``r_a = |R_a − p|``,
``r̂_a`` its direction, ``s_a`` its species. The radial basis is the *vanishing Jacobi* basis of the
JL cluster expansion (Domina et al., PRB 2023; Focassio et al., npj Comput. Mater. 2023)::

    x(r)   = cos(π r / r_c)                         (x = 1 at r = 0, x = −1 at the cutoff)
    φ_n(r) = P_n^(α,β)(x(r)) − P_n^(α,β)(−1)   for r < r_c,   0 beyond;   n = 1 … n_max

It vanishes at ``r_c`` with zero slope (dx/dr = 0 there): a smooth cutoff. The features, linear
in which the model is (so ΔV(p) = w · D(p) + b is a cluster expansion), are

* 1-body — one-hot of the species of an atom sitting on the grid point (``r_a < onsite_tol``);
  all zero for a point between atoms;
* 2-body — ``B2[s, n] = Σ_{a ∈ s} φ_n(r_a)``;
* 3-body — ``B3[(s, n), (s', n'), l] = Σ_{a ∈ s, b ∈ s', a ≠ b} φ_n(r_a) φ_n'(r_b) P_l(r̂_a · r̂_b)``,
  one entry per unordered pair of channels (s, n) ≤ (s', n') with n, n' ≤ ``n_max3``, l = 0 … l_max.
  It is evaluated in O(neighbours) per point with the addition theorem
  ``P_l(r̂_a · r̂_b) = 4π/(2l+1) Σ_m Y_lm(r̂_a) Y_lm(r̂_b)`` minus the a = b terms. An atom *on* the
  point has no direction; it enters the angular sums as its spherical mean (l = 0 only), which is
  the limit of the sphere average below as the radius goes to 0.

Every feature is a sum over neighbours of functions of distances and angles, so it is invariant
under rotations and translations of the whole configuration and under permutations of the atoms.

:meth:`JLDescriptor.shells` gives the average of D over spheres of radius ``ρ`` around centres: the
descriptor of a spherically averaged quantity such as the l = 0 part of a KKR potential on the
radial mesh of an atom. Because the model is linear, the same weights predict points and shells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import cKDTree

from mlkkr.descriptors.polynomials import harmonic_l, jacobi, n_harmonics, real_harmonics, sphere_quadrature
from mlkkr.errors import InputError

#: An atom closer than this to a grid point sits on it (Å).
ONSITE_TOL = 1e-6
#: Grid points per batch (bounds the memory of the 3-body products).
BATCH_BYTES = 64 << 20


@dataclass(frozen=True)
class JLParams:
    """Hyper-parameters of the JL descriptor.

    species: the species channels, in feature order (element symbols, "Vac", …).
    cutoff: r_c, Å. n_max: radial order of the 2-body terms; n_max3: of the 3-body terms (default
    n_max). l_max: largest Legendre order of the 3-body terms. alpha, beta: Jacobi parameters
    (> −1). body_order: 1 (on-site species only), 2 (+ pairs) or 3 (+ triplets).
    """

    species: tuple[str, ...]
    cutoff: float = 5.0
    n_max: int = 6
    l_max: int = 3
    n_max3: int | None = None
    alpha: float = 0.0
    beta: float = 0.0
    body_order: int = 3

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["species"] = list(self.species)
        return d

    @property
    def radial3(self) -> int:
        return self.n_max if self.n_max3 is None else self.n_max3


def make_params(species: Any, **kw: Any) -> JLParams:
    """Validated :class:`JLParams`; every bad value is an :class:`InputError` naming the field."""
    allowed = ["cutoff", "n_max", "l_max", "n_max3", "alpha", "beta", "body_order"]
    for key in kw:
        if key not in allowed:
            raise InputError(f"descriptor.{key}", kw[key], allowed=allowed)
    if isinstance(species, str) or not species:
        raise InputError("descriptor.species", species, reason="expected a non-empty list of species names")
    species = tuple(str(s) for s in species)
    if len(set(species)) != len(species):
        raise InputError("descriptor.species", list(species), reason="species are repeated")
    out: dict[str, Any] = {}
    d = JLParams(species=species)
    for key, lo, hi in (("n_max", 1, 40), ("l_max", 0, 12), ("body_order", 1, 3)):
        v = kw.get(key, getattr(d, key))
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
            raise InputError(f"descriptor.{key}", v, allowed=f"an integer from {lo} to {hi}")
        out[key] = int(v)
    v = kw.get("n_max3")
    if v is not None:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= v <= 40:
            raise InputError("descriptor.n_max3", v, allowed="an integer from 1 to 40 (or unset: n_max)")
        v = int(v)
    out["n_max3"] = v
    for key, lo in (("cutoff", 0.0), ("alpha", -1.0), ("beta", -1.0)):
        v = kw.get(key, getattr(d, key))
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise InputError(f"descriptor.{key}", v, reason="not a number") from None
        if not np.isfinite(v) or v <= lo:
            raise InputError(f"descriptor.{key}", v, allowed=f"a finite number > {lo:g}")
        out[key] = v
    return JLParams(species=species, **out)


def radial_basis(r: np.ndarray, params: JLParams, n_max: int | None = None) -> np.ndarray:
    """Vanishing Jacobi functions φ_1 … φ_{n_max}(r): shape ``r.shape + (n_max,)`` (r in Å)."""
    n_max = params.n_max if n_max is None else n_max
    r = np.asarray(r, float)
    x = np.cos(np.pi * np.clip(r / params.cutoff, 0.0, 1.0))
    p = jacobi(n_max, params.alpha, params.beta, x)[..., 1:]
    p -= jacobi(n_max, params.alpha, params.beta, np.array(-1.0))[1:]
    p[r >= params.cutoff] = 0.0
    return p


class JLDescriptor:
    """Vectorised JL descriptor for batches of grid points (see the module docstring).

    Usage: ``d = JLDescriptor(make_params(["Cu", "Zn"], cutoff=4.0, n_max=4, l_max=2))``, then
    ``X = d(points, positions, species)`` gives (n_points, d.n_features).
    """

    def __init__(self, params: JLParams) -> None:
        self.params = params
        p = params
        self.S = len(p.species)
        self.N2 = p.n_max
        self.N3 = p.radial3
        self.K = self.S * self.N3
        self.H = n_harmonics(p.l_max)
        self._iu = np.triu_indices(self.K)
        self._index = {s: i for i, s in enumerate(p.species)}
        self.sizes = {"1b": self.S if p.body_order >= 1 else 0,
                      "2b": self.S * self.N2 if p.body_order >= 2 else 0,
                      "3b": len(self._iu[0]) * (p.l_max + 1) if p.body_order >= 3 else 0}

    # -- layout ---------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return sum(self.sizes.values())

    def feature_names(self) -> list[str]:
        """One name per column, e.g. ``1b:Zn``, ``2b:Cu:n3``, ``3b:Cu,Zn:n1,n2:l2``."""
        p, names = self.params, []
        if self.sizes["1b"]:
            names += [f"1b:{s}" for s in p.species]
        if self.sizes["2b"]:
            names += [f"2b:{s}:n{n}" for s in p.species for n in range(1, self.N2 + 1)]
        if self.sizes["3b"]:
            ch = [(s, n) for s in p.species for n in range(1, self.N3 + 1)]
            pairs = list(zip(*self._iu, strict=True))
            for l in range(p.l_max + 1):
                names += [f"3b:{ch[i][0]},{ch[j][0]}:n{ch[i][1]},{ch[j][1]}:l{l}" for i, j in pairs]
        return names

    def body_of_feature(self) -> np.ndarray:
        """Body order (1, 2, 3) of each column."""
        return np.concatenate([np.full(v, int(k[0])) for k, v in self.sizes.items()])

    # -- validation -----------------------------------------------------------------------------
    def species_index(self, species: Any) -> np.ndarray:
        """Channel index of each atom; InputError for a species the descriptor does not know."""
        idx = np.empty(len(species), int)
        for k, s in enumerate(species):
            i = self._index.get(str(s))
            if i is None:
                raise InputError("species", str(s), allowed=self.params.species,
                                 reason=f"atom {k} has species {str(s)!r}, which this descriptor (and "
                                        "model) has no channel for")
            idx[k] = i
        return idx

    @staticmethod
    def _finite(name: str, arr: Any, shape1: int | None = 3) -> np.ndarray:
        try:
            a = np.asarray(arr, float)
        except (TypeError, ValueError):
            raise InputError(name, None, reason="not an array of numbers") from None
        if shape1 is not None:
            if a.ndim != 2 or a.shape[1] != shape1:
                raise InputError(name, a.shape, reason=f"expected shape (n, {shape1}) (Cartesian, Å)")
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise InputError(name, a[row].tolist(), reason=f"row {row} is not finite (NaN or inf)")
        return a

    # -- points ---------------------------------------------------------------------------------
    def __call__(self, points: np.ndarray, positions: np.ndarray, species: Any) -> np.ndarray:
        """Descriptors of grid ``points`` (m, 3) Å among atoms at ``positions`` (n, 3) Å: (m, F).

        InputError if an input is not finite, a species is unknown, or a point has no atom within
        the cutoff (its descriptor would be empty: nothing to predict from).
        """
        points = self._finite("points", points)
        positions = self._finite("positions", positions)
        if len(species) != len(positions):
            raise InputError("species", len(species), reason=f"{len(species)} species for {len(positions)} positions")
        sidx = self.species_index(species)
        tree = cKDTree(positions) if len(positions) else None
        out = np.zeros((len(points), self.n_features))
        for lo, hi in self._batches(len(points)):
            pairs = self._pairs(points[lo:hi], positions, tree)
            counts = np.bincount(pairs[0], minlength=hi - lo)
            if np.any(counts == 0):
                k = lo + int(np.flatnonzero(counts == 0)[0])
                raise InputError("points", points[k].round(6).tolist(),
                                 reason=f"grid point {k} at {points[k].round(4).tolist()} Å has no atom within "
                                        f"the cutoff {self.params.cutoff} Å; raise descriptor.cutoff or drop the point")
            out[lo:hi] = self._features(hi - lo, pairs, sidx, onsite_1b=True)
        return out

    # -- spheres --------------------------------------------------------------------------------
    def shells(self, centres: np.ndarray, radii: np.ndarray, positions: np.ndarray, species: Any,
               n_theta: int = 6) -> np.ndarray:
        """Average of the descriptor over spheres of ``radii`` (m,) Å around ``centres`` (m, 3) Å.

        The 1-body block is the species of an atom at the centre (the shell's own atom). The 2- and
        3-body blocks are averaged with :func:`~mlkkr.descriptors.polynomials.sphere_quadrature`
        (``n_theta`` × 2 ``n_theta`` points). InputError as for points, or if no quadrature point of a
        shell has a neighbour.
        """
        centres = self._finite("centres", centres)
        radii = self._finite("radii", np.asarray(radii, float).reshape(-1, 1), 1)[:, 0]
        if len(radii) != len(centres):
            raise InputError("radii", len(radii), reason=f"{len(radii)} radii for {len(centres)} centres")
        if np.any(radii < 0):
            raise InputError("radii", float(radii.min()), reason="radii must be >= 0 (Å)")
        positions = self._finite("positions", positions)
        if len(species) != len(positions):
            raise InputError("species", len(species), reason=f"{len(species)} species for {len(positions)} positions")
        sidx = self.species_index(species)
        tree = cKDTree(positions) if len(positions) else None
        q, w = sphere_quadrature(n_theta)
        nq = len(q)
        out = np.zeros((len(centres), self.n_features))
        n1 = self.sizes["1b"]
        if n1:
            pairs = self._pairs(centres, positions, tree, ONSITE_TOL)
            out[:, :n1] = self._one_body(len(centres), pairs, sidx)
        if self.params.body_order < 2:
            return out
        step = max(1, self._batch_points() // nq)
        for lo in range(0, len(centres), step):
            hi = min(len(centres), lo + step)
            pts = (centres[lo:hi, None, :] + radii[lo:hi, None, None] * q[None]).reshape(-1, 3)
            pairs = self._pairs(pts, positions, tree)
            counts = np.bincount(pairs[0] // nq, minlength=hi - lo)
            if np.any(counts == 0):
                k = lo + int(np.flatnonzero(counts == 0)[0])
                raise InputError("radii", float(radii[k]),
                                 reason=f"the sphere of radius {radii[k]:.4f} Å around centre {k} has no atom "
                                        f"within the cutoff {self.params.cutoff} Å")
            f = self._features(len(pts), pairs, sidx, onsite_1b=False)[:, n1:]
            out[lo:hi, n1:] = np.einsum("mqf,q->mf", f.reshape(hi - lo, nq, -1), w)
        return out

    # -- internals ------------------------------------------------------------------------------
    def _batch_points(self) -> int:
        per_point = 8 * (self.K * self.K + self.K * self.H + self.n_features) * 3
        return int(max(64, min(20000, BATCH_BYTES // max(per_point, 1))))

    def _batches(self, m: int) -> list[tuple[int, int]]:
        b = self._batch_points()
        return [(lo, min(m, lo + b)) for lo in range(0, m, b)]

    def _pairs(self, points: np.ndarray, positions: np.ndarray, tree: cKDTree | None,
               radius: float | None = None) -> tuple[np.ndarray, ...]:
        """(point index, atom index, distance, unit vector) of all pairs within the cutoff, sorted."""
        if tree is None or len(points) == 0:
            e = np.zeros(0, int)
            return e, e, np.zeros(0), np.zeros((0, 3))
        rc = self.params.cutoff if radius is None else radius
        res = cKDTree(points).sparse_distance_matrix(tree, rc, output_type="ndarray")
        i, j = res["i"].astype(int), res["j"].astype(int)
        vec = positions[j] - points[i]
        d = np.linalg.norm(vec, axis=1)
        keep = d < rc
        i, j, vec, d = i[keep], j[keep], vec[keep], d[keep]
        order = np.lexsort((j, i))
        i, j, vec, d = i[order], j[order], vec[order], d[order]
        unit = np.zeros_like(vec)
        far = d >= ONSITE_TOL
        unit[far] = vec[far] / d[far, None]
        return i, j, d, unit

    def _one_body(self, m: int, pairs: tuple[np.ndarray, ...], sidx: np.ndarray) -> np.ndarray:
        i, j, d, _ = pairs
        on = d < ONSITE_TOL
        out = np.zeros((m, self.S))
        out[i[on], sidx[j[on]]] = 1.0
        return out

    def _features(self, m: int, pairs: tuple[np.ndarray, ...], sidx: np.ndarray, onsite_1b: bool) -> np.ndarray:
        p = self.params
        i, j, d, unit = pairs
        s = sidx[j]
        npairs = len(i)
        # sums over neighbours by species: a sparse (m·S × pairs) indicator matrix
        gather = csr_matrix((np.ones(npairs), (i * self.S + s, np.arange(npairs))), shape=(m * self.S, npairs))
        blocks = []
        if self.sizes["1b"]:
            blocks.append(self._one_body(m, pairs, sidx) if onsite_1b else np.zeros((m, self.S)))
        if p.body_order >= 2:
            phi = radial_basis(d, p, max(self.N2, self.N3 if p.body_order >= 3 else 0))
            blocks.append((gather @ phi[:, :self.N2]).reshape(m, self.S * self.N2))
        if p.body_order >= 3:
            blocks.append(self._three_body(m, phi[:, :self.N3], unit, d < ONSITE_TOL, gather))
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((m, 0))

    def _three_body(self, m: int, phi: np.ndarray, unit: np.ndarray, onsite: np.ndarray,
                    gather: csr_matrix) -> np.ndarray:
        p, S, N, H = self.params, self.S, self.N3, self.H
        y = real_harmonics(p.l_max, unit)
        if onsite.any():  # no direction: spherical mean (l = 0 only)
            y[onsite, 1:] = 0.0
            y[onsite, 0] = 1.0 / np.sqrt(4 * np.pi)
        g = (phi[:, :, None] * y[:, None, :]).reshape(len(phi), N * H)
        a = (gather @ g).reshape(m, S * N, H)  # A[p, (s, n), lm]
        # a = b terms: Σ_a φ_n φ_n' (4π/(2l+1)) Σ_m Y_lm(a)² = Σ_a φ_n φ_n' × (1, or δ_l0 on site)
        pp = (phi[:, :, None] * phi[:, None, :]).reshape(len(phi), N * N)
        self_all = (gather @ pp).reshape(m, S, N, N)
        self_dir = (gather @ (pp * (~onsite)[:, None])).reshape(m, S, N, N)
        lcol = harmonic_l(p.l_max)
        out = np.empty((m, p.l_max + 1, len(self._iu[0])))
        for l in range(p.l_max + 1):
            cols = lcol == l
            al = a[:, :, cols]
            prod = np.einsum("pkh,pjh->pkj", al, al) * (4 * np.pi / (2 * l + 1))
            self_l = self_all if l == 0 else self_dir
            for sp in range(S):
                prod[:, sp * N:(sp + 1) * N, sp * N:(sp + 1) * N] -= self_l[:, sp]
            out[:, l] = prod[:, self._iu[0], self._iu[1]]
        return out.reshape(m, -1)


def brute_force(points: np.ndarray, positions: np.ndarray, species: Any, params: JLParams) -> np.ndarray:
    """Reference implementation by explicit loops over neighbours and neighbour pairs (slow; for tests).

    Uses scipy's Jacobi and Legendre polynomials, not this module's.
    """
    from scipy.special import eval_jacobi, eval_legendre

    desc = JLDescriptor(params)
    sidx = desc.species_index(species)
    rc, S = params.cutoff, desc.S
    out = np.zeros((len(points), desc.n_features))

    def phi(r: float, n: int) -> float:
        if r >= rc:
            return 0.0
        return eval_jacobi(n, params.alpha, params.beta, np.cos(np.pi * r / rc)) - eval_jacobi(
            n, params.alpha, params.beta, -1.0)

    for k, pt in enumerate(points):
        vec = positions - pt
        r = np.linalg.norm(vec, axis=1)
        nb = np.flatnonzero(r < rc)
        f1 = np.zeros(S)
        f2 = np.zeros((S, desc.N2))
        f3 = np.zeros((params.l_max + 1, desc.K, desc.K))
        for a in nb:
            if r[a] < ONSITE_TOL:
                f1[sidx[a]] = 1.0
            for n in range(1, desc.N2 + 1):
                f2[sidx[a], n - 1] += phi(r[a], n)
        for a in nb:
            for b in nb:
                if a == b:
                    continue
                if r[a] < ONSITE_TOL or r[b] < ONSITE_TOL:
                    pl = np.array([1.0] + [0.0] * params.l_max)
                else:
                    c = np.clip(vec[a] @ vec[b] / (r[a] * r[b]), -1, 1)
                    pl = np.array([eval_legendre(l, c) for l in range(params.l_max + 1)])
                for n1 in range(1, desc.N3 + 1):
                    for n2 in range(1, desc.N3 + 1):
                        ka = sidx[a] * desc.N3 + n1 - 1
                        kb = sidx[b] * desc.N3 + n2 - 1
                        f3[:, ka, kb] += phi(r[a], n1) * phi(r[b], n2) * pl
        row = []
        if desc.sizes["1b"]:
            row.append(f1)
        if desc.sizes["2b"]:
            row.append(f2.ravel())
        if desc.sizes["3b"]:
            row.append(f3[:, desc._iu[0], desc._iu[1]].ravel())
        out[k] = np.concatenate(row)
    return out
