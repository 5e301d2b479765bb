"""Complex energy contours ending at the Fermi level.

A :class:`Contour` is a set of complex energies ``z_k`` (eV) and complex weights ``w_k`` (eV) such
that, for any ``F(z)`` analytic in the upper half plane and real on the real axis below the bottom
``e_bottom`` of the contour,

    ∫ dE f_T(E) F(E + i0)  ≈  Σ_k w_k F(z_k),

with ``f_T`` the Fermi–Dirac function at the contour's temperature (a step at ``E_F`` for T = 0).
Physical quantities take the imaginary part of that sum (e.g. the electron number
``N = -(1/π) Im Σ_k w_k Tr G(z_k)``).

Two kinds, as KKR codes use them:

* ``"semicircle"`` (T = 0): Gauss–Legendre points in the angle on the semicircle from
  ``e_bottom`` to ``E_F``; ``n_points`` points.
* ``"matsubara"`` (T > 0, JuKKR style): a rectangle — a vertical line ``e_bottom → e_bottom + iΓ``
  (``n_vertical`` Gauss–Legendre points), a horizontal line at height ``Γ = 2 n_poles π k_B T``
  up to ``E_F − 30 k_B T`` (``n_horizontal`` points), a Gauss quadrature with the Fermi function as
  weight over ``E_F ± 30 k_B T`` on the same line (``n_fermi`` points; on that line
  ``f_T(x + iΓ) = f_T(x)`` is real), and the residues at the ``n_poles`` Matsubara poles
  ``E_F + i(2n+1)π k_B T`` inside the rectangle (weight ``−2πi k_B T``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlkkr.errors import InputError

#: Boltzmann constant in eV/K.
K_B = 8.617333262e-5
_FERMI_WINDOW = 30.0  # half width of the Fermi-window segment, in k_B T

CONTOUR_KINDS = ("matsubara", "semicircle")


@dataclass(frozen=True)
class ContourParams:
    """Contour parameters: kind, point counts, temperature (K) and the depth below the band bottom.

    ``margin`` (eV) is how far below the lowest host band the contour starts; it must exceed the
    depth of any impurity bound state (the engine checks the lowest eigenvalue of every on-site
    potential against it). Total points: ``n_points`` (semicircle) or
    ``n_vertical + n_horizontal + n_fermi + n_poles`` (matsubara). Defaults: 3 + 12 + 6 + 5 = 26
    points at 800 K (JuKKR's default temperature), from the convergence test in docs/engine.md.
    """

    kind: str = "matsubara"
    n_vertical: int = 3
    n_horizontal: int = 12
    n_fermi: int = 6
    n_poles: int = 5
    n_points: int = 40
    temperature: float = 800.0
    margin: float = 2.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def total_points(self) -> int:
        if self.kind == "semicircle":
            return self.n_points
        return self.n_vertical + self.n_horizontal + self.n_fermi + self.n_poles

    def scaled(self, factor: int) -> ContourParams:
        """The same contour with every point count multiplied by ``factor`` (for convergence tests)."""
        return ContourParams(kind=self.kind, n_vertical=self.n_vertical * factor,
                             n_horizontal=self.n_horizontal * factor, n_fermi=self.n_fermi * factor,
                             n_poles=self.n_poles * factor, n_points=self.n_points * factor,
                             temperature=self.temperature, margin=self.margin)


@dataclass(frozen=True)
class Contour:
    """Energies ``z`` (eV, complex, Im z > 0) and weights ``w`` (eV); see the module docstring."""

    z: np.ndarray
    w: np.ndarray
    e_bottom: float
    e_fermi: float
    params: ContourParams = field(default_factory=ContourParams)

    def __len__(self) -> int:
        return len(self.z)


def make_contour_params(**kw: Any) -> ContourParams:
    """Validated :class:`ContourParams` from keyword arguments (the ``[contour]`` input table)."""
    defaults = ContourParams()
    allowed = list(defaults.to_dict())
    for key in kw:
        if key not in allowed:
            raise InputError(f"contour.{key}", kw[key], allowed=allowed)
    kind = kw.get("kind", defaults.kind)
    if kind not in CONTOUR_KINDS:
        raise InputError("contour.kind", kind, allowed=CONTOUR_KINDS)
    values: dict[str, Any] = {"kind": kind}
    for key in ("n_vertical", "n_horizontal", "n_fermi", "n_poles", "n_points"):
        v = kw.get(key, getattr(defaults, key))
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= v <= 2000:
            raise InputError(f"contour.{key}", v, allowed="an integer from 1 to 2000")
        values[key] = int(v)
    for key, lo in (("temperature", 0.0), ("margin", 0.0)):
        v = kw.get(key, getattr(defaults, key))
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise InputError(f"contour.{key}", v, reason="not a number") from None
        if not np.isfinite(v) or v <= lo:
            raise InputError(f"contour.{key}", v, reason=f"must be a finite number > {lo}")
        values[key] = v
    return ContourParams(**values)


def make_contour(params: ContourParams, e_bottom: float, e_fermi: float) -> Contour:
    """Build the contour from ``e_bottom`` (eV, below every state) to the Fermi level ``e_fermi`` (eV)."""
    if not e_bottom < e_fermi:
        raise InputError("contour.margin", params.margin, reason="the contour must start below E_F")
    if params.kind == "semicircle":
        z, w = _semicircle(e_bottom, e_fermi, params.n_points)
    else:
        z, w = _matsubara(e_bottom, e_fermi, params)
    return Contour(z=z, w=w, e_bottom=float(e_bottom), e_fermi=float(e_fermi), params=params)


def _semicircle(eb: float, ef: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, g = np.polynomial.legendre.leggauss(n)
    theta = np.pi * (1 - x) / 2  # from π (at E_b) ... to 0 (at E_F), ordered from the bottom
    g = g * np.pi / 2
    c, r = (eb + ef) / 2, (ef - eb) / 2
    z = c + r * np.exp(1j * theta)
    # ∫_{E_b}^{E_F} F dz along the arc = ∫_π^0 F(z(θ)) i r e^{iθ} dθ = -Σ g i r e^{iθ} F
    w = -1j * r * np.exp(1j * theta) * g
    order = np.argsort(-theta)
    return z[order], w[order]


def _gl(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, g = np.polynomial.legendre.leggauss(n)
    return (a + b) / 2 + (b - a) / 2 * x, g * (b - a) / 2


def fermi(x: np.ndarray) -> np.ndarray:
    """Fermi function of ``x = (E − E_F) / k_B T`` (overflow-safe)."""
    return 0.5 * (1.0 - np.tanh(0.5 * np.asarray(x)))


@functools.lru_cache(maxsize=32)
def gauss_fermi(n: int, half_width: float = _FERMI_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature with weight ``f(y) = 1/(e^y + 1)`` on ``[-half_width, half_width]``.

    Nodes and weights from the discretised Stieltjes procedure on a composite Gauss–Legendre grid
    (exact for polynomials of degree ``2n − 1`` times ``f`` up to the discretisation, ~1e-14).
    """
    # composite Gauss–Legendre: panels of width ≤ 1 (f is analytic within π of the real axis)
    panels = int(np.ceil(2 * half_width))
    x, g0 = np.polynomial.legendre.leggauss(max(16, n))
    edges = np.linspace(-half_width, half_width, panels + 1)
    h = np.diff(edges)[:, None] / 2
    t = ((edges[:-1, None] + edges[1:, None]) / 2 + h * x).ravel()
    g = (h * g0).ravel()
    lam = g * fermi(t)
    # Stieltjes: orthonormal polynomials on the discrete measure (t, lam)
    alpha = np.zeros(n)
    beta = np.zeros(n)
    p_prev = np.zeros_like(t)
    p = np.ones_like(t) / np.sqrt(lam.sum())
    beta0 = lam.sum()
    for k in range(n):
        alpha[k] = np.sum(lam * t * p * p)
        q = (t - alpha[k]) * p - (beta[k] ** 0.5 if k else 0.0) * p_prev
        if k + 1 < n:
            beta[k + 1] = np.sum(lam * q * q)
            p_prev, p = p, q / np.sqrt(beta[k + 1])
    jac = np.diag(alpha) + np.diag(np.sqrt(beta[1:]), 1) + np.diag(np.sqrt(beta[1:]), -1)
    nodes, vecs = np.linalg.eigh(jac)
    weights = beta0 * vecs[0] ** 2
    return nodes, weights


def _matsubara(eb: float, ef: float, p: ContourParams) -> tuple[np.ndarray, np.ndarray]:
    kt = K_B * p.temperature
    gamma = 2 * p.n_poles * np.pi * kt
    e1 = ef - _FERMI_WINDOW * kt
    if e1 <= eb:
        raise InputError("contour.temperature", p.temperature,
                         reason="the Fermi window E_F ± 30 k_B T reaches below the contour start")
    zs, ws = [], []
    # 1. vertical line E_b -> E_b + iΓ: dz = i dy, f = 1
    y, g = _gl(0.0, gamma, p.n_vertical)
    zs.append(eb + 1j * y)
    ws.append(1j * g)
    # 2. horizontal line E_b + iΓ -> E_F - 30kT + iΓ: f = 1 (to 1e-13)
    x, g = _gl(eb, e1, p.n_horizontal)
    zs.append(x + 1j * gamma)
    ws.append(g * fermi((x - ef) / kt))
    # 3. Fermi window on the same line, Gauss quadrature with weight f
    y, g = gauss_fermi(p.n_fermi)
    zs.append(ef + kt * y + 1j * gamma)
    ws.append(kt * g + 0j)
    # 4. Matsubara poles inside the rectangle: ∫_real = ∫_C − 2πi k_B T Σ_n F(z_n)
    n = np.arange(p.n_poles)
    zs.append(ef + 1j * (2 * n + 1) * np.pi * kt)
    ws.append(np.full(p.n_poles, -2j * np.pi * kt))
    return np.concatenate(zs), np.concatenate(ws)
