"""Small helpers of the engine tests (a module, not fixtures, so tests can import them)."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from mlkkr.greens import make_defects
from mlkkr.greens.contour import K_B
from mlkkr.greens.defects import onsite_potential


def cluster(*items):
    """Defects from (element, (x, y, z)) tuples."""
    return make_defects([{"element": e, "position": list(p)} for e, p in items])


def rel(a, b) -> float:
    """max |a − b| relative to max |b|."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def supercell_hamiltonian(host, n: int, defects, moments=None) -> np.ndarray:
    """Real-space Hamiltonian (eV) of the periodic n×n×n supercell with the defects (moments along z
    unless ``moments[k]`` is given): the same system as the engine with a uniform n³ k-grid."""
    nb, ns = host.nb, n**3

    def idx(r):
        return ((r[0] % n) * n + r[1] % n) * n + r[2] % n

    h = np.zeros((ns * nb, ns * nb), complex)
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for d, t in host.hoppings().items():
        for r in grid:
            i, j = idx(r), idx(r + np.array(d))
            h[i * nb:(i + 1) * nb, j * nb:(j + 1) * nb] += t
    for k, d in enumerate(defects):
        i = idx(d.site)
        m = np.array([0.0, 0.0, 1.0]) if moments is None or k not in moments else moments[k]
        h[i * nb:(i + 1) * nb, i * nb:(i + 1) * nb] += onsite_potential(host, d.element, m)
    return h


def grand_potential(h: np.ndarray, mu: float, temperature: float) -> float:
    """Ω = −k_B T Σ_n ln(1 + e^{−(ε_n − μ)/k_B T}) (eV) of a Hamiltonian by exact diagonalisation."""
    kt = K_B * temperature
    with threadpool_limits(1, "blas"):  # threaded LAPACK is slower on a busy 2-core machine
        e = np.linalg.eigvalsh(h)
    return float(-kt * np.logaddexp(0.0, -(e - mu) / kt).sum())
