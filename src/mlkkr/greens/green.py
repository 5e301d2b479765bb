"""Real-space host Green function ``G0(R, z)`` for every R of an N×N×N supercell at once, by FFT.

``G0(R_i, R_j; z) = g(R_i − R_j; z)`` with

    g(d; z) = (1/N³) Σ_k e^{i k·d} (z − H(k))⁻¹,   k = 2π m / N, m ∈ {0..N−1}³,

which is exactly the Green function of the N×N×N Born–von Kármán (periodic) supercell: ``d`` is
taken modulo N. With ``(z − H(k))⁻¹ = U diag(1/(z − ε)) U†`` from one diagonalisation per k, the
sum over k for all ``d`` is one inverse FFT per energy and matrix element (``numpy.fft.ifftn``).
Units: energies eV, G in 1/eV, ``d`` in lattice units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlkkr.errors import InputError
from mlkkr.greens._threads import single_threaded
from mlkkr.greens.hosts import Host

#: Default working-memory budget for one chunk of energies in :func:`host_green` (bytes).
CHUNK_BYTES = 256 * 2**20


def kgrid(n: int) -> np.ndarray:
    """Γ-centred n×n×n grid of k (rad per lattice constant), shape (n, n, n, 3)."""
    k = 2 * np.pi * np.arange(n) / n
    return np.stack(np.meshgrid(k, k, k, indexing="ij"), axis=-1)


@dataclass
class BlochEigen:
    """Eigenvalues ``e`` (n, n, n, nb) in eV and eigenvectors ``u`` (n, n, n, nb, nb) of H(k) on a grid."""

    n: int
    e: np.ndarray
    u: np.ndarray

    @property
    def uh(self) -> np.ndarray:
        """Conjugate transpose of ``u``."""
        return np.conj(np.swapaxes(self.u, -1, -2))


@single_threaded
def bloch_eigen(host: Host, n: int) -> BlochEigen:
    """Diagonalise the host's Bloch Hamiltonian on the Γ-centred n³ grid."""
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 2:
        raise InputError("kgrid", n, allowed="an integer >= 2 (k points per direction)")
    h = host.hamiltonian(kgrid(int(n)))
    e, u = np.linalg.eigh(h)
    return BlochEigen(int(n), e, u)


def _green_k(eig: BlochEigen, z: np.ndarray) -> np.ndarray:
    """(z − H(k))⁻¹ for energies z: shape (nz, n, n, n, nb, nb)."""
    inv = 1.0 / (z[:, None, None, None, None] - eig.e[None])  # (nz, n,n,n, nb)
    return (eig.u[None] * inv[..., None, :]) @ eig.uh[None]


@single_threaded
def host_green(host: Host, n: int, z: np.ndarray, d: np.ndarray | None = None, *,
               eig: BlochEigen | None = None, chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Host Green function by FFT over the n³ k-grid.

    Parameters
    ----------
    host: the host model.
    n: k points per direction (= supercell size).
    z: complex energies (eV), shape (nz,).
    d: optional integer separations (nd, 3) in lattice units; if given, only these are returned.
    eig: a precomputed :func:`bloch_eigen` for this host and n (reused between calls).

    Returns
    -------
    ``g[z, d1, d2, d3, a, b]`` of shape (nz, n, n, n, nb, nb) for all separations (index = d mod n),
    or ``g[z, i, a, b]`` of shape (nz, nd, nb, nb) for the separations ``d``. Units 1/eV.
    """
    z = np.atleast_1d(np.asarray(z, complex))
    eig = eig if eig is not None else bloch_eigen(host, n)
    nb = host.nb
    per_energy = 16 * n**3 * nb * nb * 3  # G(k), its FFT and temporaries
    step = max(1, int(chunk_bytes // per_energy))
    if d is None:
        out = np.empty((len(z), n, n, n, nb, nb), complex)
    else:
        d = np.asarray(d, int).reshape(-1, 3) % n
        out = np.empty((len(z), len(d), nb, nb), complex)
    for s in range(0, len(z), step):
        gk = _green_k(eig, z[s:s + step])
        gr = np.fft.ifftn(gk, axes=(1, 2, 3))
        if d is None:
            out[s:s + step] = gr
        else:
            out[s:s + step] = gr[:, d[:, 0], d[:, 1], d[:, 2]]
    return out


@single_threaded
def host_green_direct(host: Host, n: int, z: np.ndarray, d: np.ndarray, *,
                      eig: BlochEigen | None = None) -> np.ndarray:
    """The same ``g(d; z)`` by the direct k-sum (reference for tests and benchmarks): (nz, nd, nb, nb)."""
    z = np.atleast_1d(np.asarray(z, complex))
    eig = eig if eig is not None else bloch_eigen(host, n)
    k = kgrid(n).reshape(-1, 3)
    d = np.asarray(d, int).reshape(-1, 3)
    phase = np.exp(1j * (k @ d.T))  # (nk, nd)
    u = eig.u.reshape(len(k), host.nb, host.nb)
    e = eig.e.reshape(len(k), host.nb)
    out = np.empty((len(z), len(d), host.nb, host.nb), complex)
    for iz, zz in enumerate(z):
        gk = np.einsum("kab,kb,kcb->kac", u, 1.0 / (zz - e), u.conj())
        out[iz] = np.einsum("kd,kac->dac", phase, gk) / len(k)
    return out
