"""The engine: a host, a k-grid and a contour, with the host Green function ready for embedding.

:class:`Engine` owns ``G0(d; z_k)`` on the contour. When the full table (all d of the n³
supercell) fits in :data:`TABLE_BYTES` it is computed once by FFT and blocks are gathered from it;
otherwise the needed separations are computed on demand (still by FFT, energy chunk by chunk).

Embedding (Dyson equation / T-matrix) of a cluster of sites ``c`` with on-site potentials
``V = diag(V_1 … V_n)`` (eV):

    G_cc = (1 − G0_cc V)⁻¹ G0_cc = G0_cc + G0_cc T G0_cc,   T = V (1 − G0_cc V)⁻¹,

solved for all energies at once with one batched ``numpy.linalg.solve``, and only for the
columns that are needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlkkr.errors import InputError
from mlkkr.greens.contour import Contour, ContourParams, make_contour
from mlkkr.greens.defects import ELEMENTS, Defect, min_potential_eigenvalue, onsite_potential
from mlkkr.greens.green import BlochEigen, bloch_eigen, host_green
from mlkkr.greens.hosts import Host

#: Largest full G0 table kept in memory (bytes); above it blocks are computed on demand.
TABLE_BYTES = 512 << 20

#: Default k points per direction (= Born–von Kármán supercell size), chosen by the convergence
#: test recorded in docs/engine.md.
DEFAULT_KGRID = 24


@dataclass(frozen=True)
class KGrid:
    """k-grid parameters: base n, cap n_max, and the scale ``c`` of the energy-dependent grid.

    As KKR codes do, energies close to the real axis get denser k-grids: the host Green function at
    ``z`` decays over ``v_F / Im z`` lattice constants (``v_F``: the largest Fermi velocity of the
    host, eV·lattice constant), and the n³ k-sum aliases ``G0(d)`` with ``G0(d + nL)``. So energy z
    uses ``n(z) = clamp(c · v_F / δ(z), n, n_max)`` (rounded up to even), δ(z) the distance from z to
    the band interval (= Im z above the bands); n(z) = n for most of the contour. Doubling ``n``,
    ``n_max`` and ``c`` doubles every n(z) (the convergence test).
    ``c = 0`` gives the uniform n³ grid (one Born–von Kármán supercell for every energy, as needed
    to compare with a periodic-supercell calculation).
    """

    n: int = DEFAULT_KGRID
    n_max: int = 64
    c: float = 4.0

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "n_max": self.n_max, "c": self.c}

    def scaled(self, factor: int) -> KGrid:
        return KGrid(self.n * factor, self.n_max * factor, self.c * factor)


def make_kgrid(value: int | dict[str, Any] | KGrid | None = None) -> KGrid:
    """Validated :class:`KGrid` from an int (base n, default cap and scale) or a table.

    ``n`` and ``n_max`` are integers from 4 to 256. Without an explicit ``n_max`` the cap is the default
    (64) or ``n`` when that is larger, so ``kgrid = 100`` is a 100³ grid at every energy; an explicit
    ``n_max`` below ``n`` is refused.
    """
    if value is None:
        return KGrid()
    if isinstance(value, KGrid):
        kw = value.to_dict()
    elif isinstance(value, dict):
        unknown = set(value) - {"n", "n_max", "c"}
        if unknown:
            key = sorted(unknown)[0]
            raise InputError(f"kgrid.{key}", value[key], allowed=["n", "n_max", "c"])
        kw = {**KGrid().to_dict(), **value}
    else:
        kw = {**KGrid().to_dict(), "n": value}
    n, n_max, c = kw["n"], kw["n_max"], kw["c"]
    for key, v in (("n", n), ("n_max", n_max)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 4 <= v <= 256:
            raise InputError(f"kgrid.{key}", v, allowed="an integer from 4 to 256 (k points per direction)")
    explicit_cap = isinstance(value, KGrid) or (isinstance(value, dict) and "n_max" in value)
    if not explicit_cap:
        n_max = max(n_max, n)  # the default cap follows a larger base n (kgrid = 100 is a 100³ grid)
    if n_max < n:
        raise InputError("kgrid.n_max", n_max, reason=f"must be >= kgrid.n = {n}")
    try:
        c = float(c)
    except (TypeError, ValueError):
        raise InputError("kgrid.c", c, reason="not a number") from None
    if not np.isfinite(c) or c < 0:
        raise InputError("kgrid.c", c, reason="must be a finite number >= 0 (0: uniform grid)")
    return KGrid(int(n), int(n_max), c)


class Engine:
    """A host with its k-grids (n³ Born–von Kármán supercells) and energy contour.

    Parameters
    ----------
    host: the host (:func:`mlkkr.greens.hosts.make_host`).
    kgrid: k-grid parameters (:class:`KGrid`, or an int for the base n).
    contour: contour parameters; the contour runs from ``band bottom − contour.margin`` to E_F.
    cache: keep the full G0 tables in the on-disk cache (:mod:`mlkkr.greens.cache`): ``True`` for the
        default folder, or a folder; ``False`` (default) computes them in every process. Cached and
        computed tables are bit-for-bit the same. ``MLKKR_NO_CACHE=1`` turns the cache off everywhere.
    """

    def __init__(self, host: Host, kgrid: int | KGrid | dict[str, Any] | None = None,
                 contour: ContourParams | None = None, *, cache: bool | str | os.PathLike[str] = False) -> None:
        self.host = host
        self.cache = cache
        #: how :meth:`tables` got the tables: "none" (not yet), "off", "hit", "miss" (computed and
        #: stored), "error" (cache folder unusable: computed); ``table_seconds`` how long it took
        self.cache_status = "none"
        self.table_seconds = 0.0
        self.kgrid = make_kgrid(kgrid)
        self.contour_params = contour if contour is not None else ContourParams()
        lo, hi = host.band_range()
        self.band_bottom, self.band_top = lo, hi
        self.contour: Contour = make_contour(self.contour_params, lo - self.contour_params.margin,
                                             host.fermi_level)
        self.fermi_velocity = host.fermi_velocity()
        self.n_of_z = self._grid_sizes()
        self.n = int(self.n_of_z.min())
        self._eig: dict[int, BlochEigen] = {}
        self._tables: dict[int, np.ndarray] | None = None

    def _grid_sizes(self) -> np.ndarray:
        kg = self.kgrid
        lo, hi = self.band_bottom, self.band_top
        z = self.contour.z
        dist = np.abs(z - np.clip(z.real, lo, hi))  # distance from z to the band interval
        want = np.ceil(kg.c * self.fermi_velocity / dist / 2) * 2 if kg.c > 0 else np.zeros(len(z))
        return np.clip(want, kg.n, kg.n_max).astype(int)

    # -- host Green function ------------------------------------------------------------------
    @property
    def nb(self) -> int:
        return self.host.nb

    def eig(self, n: int) -> BlochEigen:
        if n not in self._eig:
            self._eig[n] = bloch_eigen(self.host, n)
        return self._eig[n]

    def _groups(self) -> list[tuple[int, np.ndarray]]:
        return [(int(n), np.flatnonzero(self.n_of_z == n)) for n in np.unique(self.n_of_z)]

    def table_bytes(self) -> int:
        return sum(16 * len(idx) * n**3 * self.nb**2 for n, idx in self._groups())

    def table_fits(self) -> bool:
        return self.table_bytes() <= TABLE_BYTES

    def tables(self) -> dict[int, np.ndarray]:
        """Full tables ``g[z, d1, d2, d3, a, b]`` (1/eV) per k-grid size n, computed once by FFT
        (or loaded from the on-disk cache when ``cache`` is set, see :mod:`mlkkr.greens.cache`)."""
        if self._tables is None:
            from mlkkr.greens import cache as cache_mod

            t0 = time.perf_counter()
            folder = cache_mod.resolve_folder(self.cache)
            if folder is None:
                self._tables, self.cache_status = self._compute_tables(), "off"
            else:
                self._tables, self.cache_status = cache_mod.load_or_compute(folder, self.cache_key(),
                                                                            self._compute_tables)
            self.table_seconds = time.perf_counter() - t0
        return self._tables

    def _compute_tables(self) -> dict[int, np.ndarray]:
        return {n: host_green(self.host, n, self.contour.z[idx], eig=self.eig(n)) for n, idx in self._groups()}

    def cache_key(self) -> dict[str, Any]:
        """Everything the G0 tables depend on (the key of :mod:`mlkkr.greens.cache`): engine version, host,
        k-grid settings, contour parameters and energies, the k-grid of every energy, the numerical stack."""
        from mlkkr.greens import ENGINE_VERSION
        from mlkkr.greens.cache import numerics

        return {"what": "mlkkr.greens host G0 tables", "engine_version": ENGINE_VERSION,
                "host": self.host.to_dict(), "kgrid": self.kgrid.to_dict(), "contour": self.contour_params.to_dict(),
                "z": [[float(z.real), float(z.imag)] for z in self.contour.z],
                "n_of_z": [int(n) for n in self.n_of_z], "numerics": numerics()}

    def g0(self, d: np.ndarray) -> np.ndarray:
        """``G0(d; z_k)`` for separations ``d`` (..., 3) in lattice units: shape (nz, ..., nb, nb)."""
        d = np.asarray(d, int)
        shape = d.shape[:-1]
        flat = d.reshape(-1, 3)
        out = np.empty((len(self.contour), len(flat), self.nb, self.nb), complex)
        fits = self.table_fits()
        uniq, inv = (None, None) if fits else np.unique(flat, axis=0, return_inverse=True)
        for n, idx in self._groups():
            if fits:
                m = flat % n
                out[idx] = self.tables()[n][:, m[:, 0], m[:, 1], m[:, 2]]
            else:
                g = host_green(self.host, n, self.contour.z[idx], d=uniq, eig=self.eig(n))
                out[idx] = g[:, inv.ravel()]
        return out.reshape((len(self.contour),) + shape + (self.nb, self.nb))

    def cluster_g0(self, sites: np.ndarray) -> np.ndarray:
        """Host Green function on a cluster of sites (ns, 3): shape (nz, ns·nb, ns·nb) (1/eV)."""
        sites = np.asarray(sites, int)
        ns, nb = len(sites), self.nb
        self.check_cluster(sites)
        blocks = self.g0(sites[:, None, :] - sites[None, :, :])  # (nz, ns, ns, nb, nb)
        return blocks.transpose(0, 1, 3, 2, 4).reshape(len(self.contour), ns * nb, ns * nb)

    def check_cluster(self, sites: np.ndarray) -> None:
        """Fail if a cluster does not fit in the smallest supercell (n per direction)."""
        sites = np.asarray(sites, int).reshape(-1, 3)
        span = sites.max(axis=0) - sites.min(axis=0) if len(sites) else np.zeros(3)
        if np.any(2 * span >= self.n):
            raise InputError("kgrid.n", self.n, reason=f"the cluster spans {span.tolist()} lattice constants; "
                             "the supercell must be more than twice that; use a larger kgrid")

    # -- potentials ---------------------------------------------------------------------------
    def check_potentials(self, elements: Sequence[str], shifts: Sequence[float] | None = None) -> None:
        """Fail if an on-site potential could bind a state below the contour's start."""
        low = min_potential_eigenvalue(self.host, elements, shifts)
        if low < -self.contour_params.margin + 0.25:
            raise InputError("contour.margin", self.contour_params.margin,
                             reason=f"an on-site potential reaches {low:.3f} eV; the contour must start "
                                    f"deeper below the bands (margin > {-low + 0.25:.2f} eV)")

    def cluster_potential(self, defects: Sequence[Defect], moment: np.ndarray,
                          shifts: np.ndarray | None = None, extra_sites: int = 0) -> np.ndarray:
        """Block-diagonal potential (M × M, eV) of the defects (first) and ``extra_sites`` host sites.

        ``shifts`` (n_defects + extra_sites,) replaces the scalar part (U on defects, 0 on host sites).
        """
        nb = self.nb
        ns = len(defects) + extra_sites
        v = np.zeros((ns * nb, ns * nb), complex)
        for i in range(ns):
            s = None if shifts is None else float(shifts[i])
            if i < len(defects):
                blk = onsite_potential(self.host, defects[i].element, moment, shift=s)
            else:
                blk = (0.0 if s is None else s) * np.eye(nb)
            v[i * nb:(i + 1) * nb, i * nb:(i + 1) * nb] = blk
        return v

    # -- embedding ----------------------------------------------------------------------------
    @staticmethod
    def embed(g0cc: np.ndarray, v: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """Embedded Green function ``G = (1 − G0 V)⁻¹ G0`` (columns ``cols`` only if given).

        ``g0cc`` (..., nz, M, M), ``v`` (..., M, M) broadcast against it. Returns (..., nz, M, K).
        """
        m = g0cc.shape[-1]
        a = np.eye(m) - g0cc @ v[..., None, :, :]
        rhs = g0cc if cols is None else g0cc[..., cols]
        rhs = np.broadcast_to(rhs, a.shape[:-1] + (rhs.shape[-1],))
        return np.linalg.solve(a, rhs)

    def lloyd(self, g0cc: np.ndarray, v: np.ndarray, v_ref: np.ndarray) -> np.ndarray:
        """Lloyd's formula: grand-potential change (eV) from potential ``v_ref`` to ``v`` on a cluster.

        ``ΔΩ = (1/π) Im Σ_k w_k [ln det(1 − G0 V) − ln det(1 − G0 V_ref)]`` (the finite-T or T = 0
        band energy at fixed E_F). The two potentials must be close: the phase difference is taken
        on its principal branch. ``v`` may carry leading batch axes.
        """
        m = g0cc.shape[-1]
        s1, l1 = np.linalg.slogdet(np.eye(m) - g0cc @ v[..., None, :, :])
        s0, l0 = np.linalg.slogdet(np.eye(m) - g0cc @ v_ref)
        dlog = (l1 - l0) + 1j * np.angle(s1 / s0)
        return (dlog @ self.contour.w).imag / np.pi

    def provenance(self) -> dict[str, object]:
        """Every parameter that fixes this engine's numbers (host, kgrid, contour)."""
        return {"host": self.host.to_dict(), "kgrid": self.kgrid.to_dict(),
                "contour": self.contour_params.to_dict()}


def element_names() -> list[str]:
    return list(ELEMENTS)
