"""Host crystals of the model engine: tight-binding Bloch Hamiltonians on a simple-cubic lattice.

Conventions (used by every module of :mod:`mlkkr.greens`):

* Lattice: simple cubic, lattice constant 1 inside the engine (positions are integer vectors);
  ``Host.lattice_constant`` (Å) converts at the edge (datasets store Å).
* Basis on each site: ``n_orb`` orbitals × 2 spins, index ``orbital * 2 + spin`` (spin fastest), so
  on-site operators are ``kron(tau, sigma)``. Every host carries the spin index, also the
  spin-degenerate one, so that an exchange splitting ``Δ m·σ`` can be added on a defect site.
* Bloch sums: ``H(k) = Σ_d t(d) e^{i k·d}`` with ``t(d) = <0|H|d>`` the hopping matrix from the site at
  ``d`` to the origin (``t(-d) = t(d)†``); ``k`` in radians per lattice constant.
* Energies in eV.

A host is a parameter set (:class:`HostParams`); :data:`HOSTS` holds the presets, and
:func:`make_host` builds one with overrides and validates it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlkkr.errors import InputError

#: Pauli matrices σ_x, σ_y, σ_z (also used for the orbital τ matrices).
PAULI = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=complex)
ID2 = np.eye(2, dtype=complex)


@dataclass(frozen=True)
class HostParams:
    """A host model: its kind, tight-binding parameters (eV), Fermi level (eV) and lattice constant (Å).

    ``kind`` is ``"metal"`` (single band, nearest-neighbour hopping ``t`` on the simple-cubic
    lattice, ``ε(k) = -2t Σ_a cos k_a``, spin-degenerate, no spin–orbit coupling) or ``"ti"``
    (the four-band 3D topological-insulator lattice model
    ``H(k) = [M − 2B Σ_a (1 − cos k_a)] τ_z + A Σ_a sin k_a τ_x σ_a``, strong TI for ``0 < M/B < 4``).
    ``screening_u`` (eV per electron) is the on-site Hartree-like constant ``U_H`` of the
    self-consistent screening ``ΔV_i = V_i^bare + U_H Δn_i``.
    """

    name: str
    kind: str
    fermi_level: float
    lattice_constant: float
    screening_u: float
    params: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for provenance in output files)."""
        return asdict(self)


#: Presets. Model numbers (not fitted to any DFT calculation); see docs/engine.md.
HOSTS: dict[str, HostParams] = {
    # Single-band metal: band [-6t, 6t] = [-6, 6] eV; E_F = -2 eV (about 0.24 electrons per spin and
    # site), away from the half-filling nesting point; lattice constant of bcc-Fe-like spacing.
    "metal": HostParams(name="metal", kind="metal", fermi_level=-2.0, lattice_constant=2.87,
                        screening_u=1.0, params={"t": 1.0}),
    # 3D TI in its strong-topological phase (M/B = 2, band inversion at Γ only). Bulk gap
    # [-0.8, 0.8] eV; E_F = 1.1 eV lies in the conduction band (n-doped, metallic bulk, as as-grown
    # Bi2Te3, 0.24 electrons per site in the conduction band); lattice constant that of the Bi2Te3 hexagonal plane.
    "ti": HostParams(name="ti", kind="ti", fermi_level=1.1, lattice_constant=4.38, screening_u=1.0,
                     params={"M": 1.0, "B": 0.5, "A": 0.8}),
}

_KIND_PARAMS = {"metal": ("t",), "ti": ("M", "B", "A")}


class Host:
    """A validated host: Bloch Hamiltonian, real-space hoppings, band range and Fermi level.

    Build with :func:`make_host`. ``nb`` is the number of spin-orbitals per site.
    """

    def __init__(self, p: HostParams) -> None:
        self.p = p
        self.name = p.name
        self.kind = p.kind
        self.fermi_level = float(p.fermi_level)
        self.lattice_constant = float(p.lattice_constant)
        self.screening_u = float(p.screening_u)
        self.n_orb = 1 if p.kind == "metal" else 2
        self.nb = 2 * self.n_orb
        self.has_soc = p.kind == "ti"
        self._hop = self._hoppings()
        self._vf: float | None = None
        self._range: dict[int, tuple[float, float]] = {}

    # -- real space ---------------------------------------------------------------------------
    def _hoppings(self) -> dict[tuple[int, int, int], np.ndarray]:
        q = self.p.params
        hop: dict[tuple[int, int, int], np.ndarray] = {}
        if self.kind == "metal":
            t = q["t"]
            hop[(0, 0, 0)] = np.zeros((2, 2), complex)
            for a in range(3):
                for s in (1, -1):
                    d = [0, 0, 0]
                    d[a] = s
                    hop[tuple(d)] = -t * ID2
        else:
            m, b, a_soc = q["M"], q["B"], q["A"]
            tz = np.kron(PAULI[2], ID2)
            hop[(0, 0, 0)] = (m - 6 * b) * tz
            for a in range(3):
                txs = np.kron(PAULI[0], PAULI[a])
                for s in (1, -1):
                    d = [0, 0, 0]
                    d[a] = s
                    # -2B(1 - cos k) -> on-site -2B, hopping +B e^{±ik}; A sin k = A (e^{ik} - e^{-ik}) / 2i
                    hop[tuple(d)] = b * tz + s * a_soc / 2j * txs
        return hop

    def hoppings(self) -> dict[tuple[int, int, int], np.ndarray]:
        """Real-space hopping matrices ``t(d) = <0|H|d>`` (eV), ``d`` in lattice units, incl. d = 0."""
        return {d: m.copy() for d, m in self._hop.items()}

    # -- reciprocal space ---------------------------------------------------------------------
    def hamiltonian(self, k: np.ndarray) -> np.ndarray:
        """Bloch Hamiltonian ``H(k)`` (eV) for ``k`` of shape (..., 3) (rad/lattice constant).

        Returns shape (..., nb, nb).
        """
        k = np.asarray(k, float)
        out = np.zeros(k.shape[:-1] + (self.nb, self.nb), complex)
        for d, t in self._hop.items():
            phase = np.exp(1j * (k @ np.asarray(d, float)))
            out += phase[..., None, None] * t
        return out

    def band_range(self, n: int = 32) -> tuple[float, float]:
        """(lowest, highest) band energy (eV), analytic where known, else sampled on an n³ grid."""
        q = self.p.params
        if self.kind == "metal":
            return -6.0 * abs(q["t"]), 6.0 * abs(q["t"])
        if n not in self._range:  # computed once per host (make_host and Engine both ask)
            k = 2 * np.pi * np.arange(n) / n
            kk = np.stack(np.meshgrid(k, k, k, indexing="ij"), -1).reshape(-1, 3)
            e = np.linalg.eigvalsh(self.hamiltonian(kk))
            self._range[n] = (float(e.min()), float(e.max()))
        return self._range[n]

    def velocity_operator(self, k: np.ndarray) -> np.ndarray:
        """``∂H/∂k_a`` (eV · lattice constant) for ``k`` (..., 3): shape (3, ..., nb, nb)."""
        k = np.asarray(k, float)
        out = np.zeros((3,) + k.shape[:-1] + (self.nb, self.nb), complex)
        for d, t in self._hop.items():
            if d == (0, 0, 0):
                continue
            phase = np.exp(1j * (k @ np.asarray(d, float)))[..., None, None] * t
            for a in range(3):
                if d[a]:
                    out[a] += 1j * d[a] * phase
        return out

    def fermi_velocity(self, n: int = 24, window: float = 0.3) -> float:
        """Largest band velocity |∇ε| (eV · lattice constant) of states within ``window`` eV of E_F.

        Hellmann–Feynman on an n³ grid. If no state lies in the window (E_F in a gap), the closest
        1 % of states are used. Sets the decay length ``v_F / Im z`` of G0 (see ``engine.KGrid``).
        """
        if self._vf is None:
            k = 2 * np.pi * np.arange(n) / n
            kk = np.stack(np.meshgrid(k, k, k, indexing="ij"), -1).reshape(-1, 3)
            e, u = np.linalg.eigh(self.hamiltonian(kk))
            dh = self.velocity_operator(kk)
            v = np.einsum("kai,xkab,kbi->kix", u.conj(), dh, u).real
            speed = np.linalg.norm(v, axis=-1)
            dist = np.abs(e - self.fermi_level)
            sel = dist < window
            if not sel.any():
                sel = dist <= np.quantile(dist, 0.01)
            self._vf = float(speed[sel].max())
        return self._vf

    def to_dict(self) -> dict[str, Any]:
        return self.p.to_dict()

    def __repr__(self) -> str:
        return f"Host({self.p!r})"


def make_host(name: str = "ti", **overrides: Any) -> Host:
    """Build a host from a preset of :data:`HOSTS` with overrides, and validate it.

    Overrides are the top-level fields (``fermi_level``, ``lattice_constant``, ``screening_u``) or
    the model parameters (``t`` for the metal; ``M``, ``B``, ``A`` for the TI), in eV / Å.
    Raises :class:`~mlkkr.errors.InputError` for an unknown host or parameter, a non-finite number,
    a TI parameter set outside the strong-topological phase, or a Fermi level outside all bands.
    """
    if name not in HOSTS:
        raise InputError("host.name", name, allowed=sorted(HOSTS))
    base = HOSTS[name]
    top: dict[str, Any] = {}
    params = dict(base.params)
    for key, value in overrides.items():
        if key in ("fermi_level", "lattice_constant", "screening_u"):
            top[key] = _finite(f"host.{key}", value)
        elif key in _KIND_PARAMS[base.kind]:
            params[key] = _finite(f"host.{key}", value)
        elif key == "name":
            continue
        else:
            allowed = ["name", "fermi_level", "lattice_constant", "screening_u", *_KIND_PARAMS[base.kind]]
            raise InputError(f"host.{key}", value, allowed=allowed)
    p = HostParams(name=base.name, kind=base.kind, fermi_level=top.get("fermi_level", base.fermi_level),
                   lattice_constant=top.get("lattice_constant", base.lattice_constant),
                   screening_u=top.get("screening_u", base.screening_u), params=params)
    if p.lattice_constant <= 0:
        raise InputError("host.lattice_constant", p.lattice_constant, reason="must be > 0 (Å)")
    if p.screening_u < 0:
        raise InputError("host.screening_u", p.screening_u, reason="must be >= 0 (eV per electron)")
    if p.kind == "metal" and p.params["t"] == 0:
        raise InputError("host.t", 0.0, reason="hopping must be non-zero")
    if p.kind == "ti":
        m, b = p.params["M"], p.params["B"]
        if b == 0 or not 0 < m / b < 4:
            raise InputError("host.M", m, reason=f"M/B = {m}/{b} is not in the strong-TI phase; need 0 < M/B < 4")
        if p.params["A"] == 0:
            raise InputError("host.A", 0.0, reason="the spin-orbit coupling A must be non-zero")
    host = Host(p)
    lo, hi = host.band_range()
    if not lo < host.fermi_level < hi:
        raise InputError("host.fermi_level", host.fermi_level,
                         reason=f"{host.fermi_level} eV is outside all bands",
                         allowed=f"a value in ({lo:.3f}, {hi:.3f}) eV")
    return host


def _finite(field_name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(field_name, value, reason=f"{value!r} is not a number") from None
    if not math.isfinite(x):
        raise InputError(field_name, value, reason="must be finite")
    return x
