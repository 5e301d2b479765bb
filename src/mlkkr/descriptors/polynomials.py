"""Orthogonal polynomials and real spherical harmonics, vectorised over arrays (numpy only).

* :func:`jacobi` — Jacobi polynomials ``P_n^(α,β)(x)``, n = 0 … n_max, by the three-term recurrence
  (normalisation ``P_n^(α,β)(1) = binom(n + α, n)``, as in ``scipy.special.eval_jacobi``).
* :func:`real_harmonics` — real spherical harmonics ``Y_lm(r̂)``, l = 0 … l_max, orthonormal on the
  unit sphere, so that ``Σ_m Y_lm(a) Y_lm(b) = (2l + 1)/(4π) P_l(a·b)`` (addition theorem) — the
  identity the three-body Jacobi–Legendre terms are computed with.
* :func:`sphere_quadrature` — a product Gauss–Legendre (in cos θ) × trapezoid (in φ) rule on the
  unit sphere, exact for spherical harmonics up to degree ``2 n_theta − 1`` in θ and ``< n_phi`` in φ.
"""

from __future__ import annotations

import numpy as np


def jacobi(n_max: int, alpha: float, beta: float, x: np.ndarray) -> np.ndarray:
    """``P_n^(α,β)(x)`` for n = 0 … n_max: array of shape ``x.shape + (n_max + 1,)``."""
    x = np.asarray(x, float)
    out = np.empty(x.shape + (n_max + 1,))
    out[..., 0] = 1.0
    if n_max >= 1:
        out[..., 1] = (alpha + 1.0) + 0.5 * (alpha + beta + 2.0) * (x - 1.0)
    ab = alpha + beta
    for n in range(2, n_max + 1):
        c = 2 * n + ab
        a1 = 2.0 * n * (n + ab) * (c - 2.0)
        a2 = (c - 1.0) * (alpha * alpha - beta * beta)
        a3 = (c - 1.0) * c * (c - 2.0)
        a4 = 2.0 * (n + alpha - 1.0) * (n + beta - 1.0) * c
        out[..., n] = ((a2 + a3 * x) * out[..., n - 1] - a4 * out[..., n - 2]) / a1
    return out


def n_harmonics(l_max: int) -> int:
    """Number of real spherical harmonics with l ≤ l_max: (l_max + 1)²."""
    return (l_max + 1) ** 2


def harmonic_l(l_max: int) -> np.ndarray:
    """The l of each column of :func:`real_harmonics` (columns ordered l = 0, 1, …; m = −l … l)."""
    return np.concatenate([np.full(2 * l + 1, l) for l in range(l_max + 1)])


def real_harmonics(l_max: int, unit: np.ndarray) -> np.ndarray:
    """Real orthonormal spherical harmonics of unit vectors ``unit`` (k, 3): shape (k, (l_max+1)²).

    Columns: l = 0 … l_max, and for each l the 2l + 1 functions ``√2 Im Y_l|m|`` (m < 0),
    ``Y_l0``, ``√2 Re Y_lm`` (m > 0) of the complex harmonics ``Y_lm = N_lm P_l^m(cos θ) e^{imφ}``
    (any sign convention cancels in the rotation invariants built from them). Computed from the
    polynomials ``Q_l^m(z) = P_l^m(z)/sin^m θ`` times ``(x + i y)^m``, so there is no division by
    sin θ and the poles are exact.
    """
    unit = np.asarray(unit, float).reshape(-1, 3)
    x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
    k = len(unit)
    out = np.empty((k, n_harmonics(l_max)))
    xy = np.ones(k, complex)  # (x + i y)^m
    q_mm = np.ones(k)  # Q_m^m = (2m − 1)!!
    offsets = [l * l + l for l in range(l_max + 1)]  # column of (l, m = 0)
    for m in range(l_max + 1):
        if m > 0:
            xy = xy * (x + 1j * y)
            q_mm = q_mm * (2 * m - 1)
        q_prev2 = None
        q_prev = q_mm
        for l in range(m, l_max + 1):
            if l == m:
                q = q_mm
            elif l == m + 1:
                q = (2 * m + 1) * z * q_mm
            else:
                q = ((2 * l - 1) * z * q_prev - (l + m - 1) * q_prev2) / (l - m)
            if l > m:
                q_prev2, q_prev = q_prev, q
            norm = np.sqrt((2 * l + 1) / (4 * np.pi) / _fact_ratio(l, m))
            if m == 0:
                out[:, offsets[l]] = norm * q
            else:
                val = np.sqrt(2.0) * norm * q * xy
                out[:, offsets[l] + m] = val.real
                out[:, offsets[l] - m] = val.imag
    return out


def _fact_ratio(l: int, m: int) -> float:
    """(l + m)! / (l − m)!"""
    r = 1.0
    for k in range(l - m + 1, l + m + 1):
        r *= k
    return r


def sphere_quadrature(n_theta: int) -> tuple[np.ndarray, np.ndarray]:
    """Points (q, 3) and weights (q,) on the unit sphere, weights summing to 1 (an average).

    ``n_theta`` Gauss–Legendre nodes in cos θ times ``2 n_theta`` equally spaced azimuths, offset by
    half a step on alternate rings so that no two rings share an azimuth.
    """
    u, w = np.polynomial.legendre.leggauss(n_theta)
    n_phi = 2 * n_theta
    pts, wts = [], []
    for i, (ui, wi) in enumerate(zip(u, w, strict=True)):
        phi = 2 * np.pi * (np.arange(n_phi) + 0.5 * (i % 2)) / n_phi
        s = np.sqrt(1.0 - ui * ui)
        pts.append(np.stack([s * np.cos(phi), s * np.sin(phi), np.full(n_phi, ui)], axis=1))
        wts.append(np.full(n_phi, wi / (2.0 * n_phi)))
    return np.concatenate(pts), np.concatenate(wts)
