"""Substitutional defects: the element table and the on-site potential of a defect.

A defect X on a lattice site replaces the host's on-site Hamiltonian by adding (eV)

    V_X = U_X · 1  +  W_X · τ_x ⊗ 1_σ  −  Δ_X · 1_τ ⊗ (m · σ)

* ``U_X``: on-site potential shift (scalar; repulsive > 0). A vacancy is a large ``U``, which
  pushes the site's states far above the bands and so removes the site.
* ``W_X``: parity-mixing term (orbital-off-diagonal τ_x): the substitution site has no inversion
  centre, as the Bi site of Bi2Te3 has none. Without it the TI host's Dzyaloshinskii–Moriya
  interaction vanishes identically (its spin–orbit hopping is orbital-off-diagonal). It needs two
  orbitals of opposite parity, so it is ignored in the single-band metal.
* ``Δ_X``: exchange splitting (> 0) along the unit moment direction ``m``: the spin parallel to ``m``
  is the majority (lowered by Δ), the antiparallel one raised by Δ (splitting 2Δ).

The numbers in :data:`ELEMENTS` are **model parameters** chosen to give the trends of the 3d series
(largest splitting for Mn, d-level shift growing from V to Ni), not DFT numbers; docs/engine.md
lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlkkr.errors import InputError
from mlkkr.greens.hosts import ID2, PAULI, Host


@dataclass(frozen=True)
class Element:
    """Model parameters of one substitution (eV): ``U``, ``W``, ``delta``; ``magnetic`` iff delta > 0."""

    symbol: str
    U: float
    W: float
    delta: float
    description: str

    @property
    def magnetic(self) -> bool:
        return self.delta > 0


#: The element table (model numbers, eV).
ELEMENTS: dict[str, Element] = {e.symbol: e for e in (
    Element("V", -0.6, 0.15, 0.6, "3d, early: attractive level, moderate splitting"),
    Element("Cr", -0.3, 0.20, 1.0, "3d, large splitting"),
    Element("Mn", 0.0, 0.25, 1.3, "3d, half-filled shell: largest splitting"),
    Element("Fe", 0.3, 0.20, 1.0, "3d, large splitting"),
    Element("Co", 0.6, 0.15, 0.7, "3d, late: repulsive level, smaller splitting"),
    Element("Ni", 0.9, 0.10, 0.4, "3d, late: weakest splitting"),
    Element("Sb", 0.1, 0.05, 0.0, "isovalent substitution (weak scatterer)"),
    Element("Sn", 0.6, 0.10, 0.0, "acceptor-like"),
    Element("Pb", 0.4, 0.15, 0.0, "acceptor-like, heavy"),
    Element("In", 1.0, 0.10, 0.0, "acceptor-like, strong"),
    Element("Se", -0.4, 0.05, 0.0, "donor-like, attractive"),
    Element("Vac", 8.0, 0.0, 0.0, "vacancy: a large U removes the site"),
)}

MAGNETIC = tuple(s for s, e in ELEMENTS.items() if e.magnetic)
NONMAGNETIC = tuple(s for s, e in ELEMENTS.items() if not e.magnetic)


@dataclass(frozen=True)
class Defect:
    """A defect: element symbol and lattice site (integer vector, lattice units)."""

    element: str
    site: tuple[int, int, int]

    @property
    def params(self) -> Element:
        return ELEMENTS[self.element]


def make_defects(items: Sequence[object], field_name: str = "defects") -> list[Defect]:
    """Validate a list of ``{"element": X, "position": [i, j, k]}`` (or ``Defect``) into defects.

    Raises :class:`InputError` naming ``defects[i].element`` for an unknown element and
    ``defects[i].position`` for a non-integer position or a site already taken by another defect.
    """
    if not isinstance(items, list | tuple) or len(items) == 0:
        raise InputError(field_name, items, reason="need a non-empty list of defects")
    out: list[Defect] = []
    seen: dict[tuple[int, int, int], int] = {}
    for i, item in enumerate(items):
        if isinstance(item, Defect):
            el, pos = item.element, item.site
        elif isinstance(item, dict):
            unknown = set(item) - {"element", "position"}
            if unknown:
                key = sorted(unknown)[0]
                raise InputError(f"{field_name}[{i}].{key}", item[key], allowed=["element", "position"])
            el, pos = item.get("element"), item.get("position")
        else:
            raise InputError(f"{field_name}[{i}]", item, reason="expected a table with element and position")
        if el not in ELEMENTS:
            raise InputError(f"{field_name}[{i}].element", el, allowed=list(ELEMENTS))
        site = _site(pos, f"{field_name}[{i}].position")
        if site in seen:
            raise InputError(f"{field_name}[{i}].position", list(site),
                             reason=f"site {list(site)} is already taken by {field_name}[{seen[site]}]; "
                                    "one defect per site")
        seen[site] = i
        out.append(Defect(str(el), site))
    return out


def _site(pos: object, field_name: str) -> tuple[int, int, int]:
    try:
        arr = np.asarray(pos, dtype=float)
    except (TypeError, ValueError):
        raise InputError(field_name, pos, reason="expected three integers (lattice units)") from None
    if arr.shape != (3,) or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise InputError(field_name, pos, reason="expected three integers (lattice units)")
    return tuple(int(v) for v in arr)  # type: ignore[return-value]


def spin_op(host: Host, alpha: int) -> np.ndarray:
    """``1_τ ⊗ σ_α`` in the host's site basis (nb × nb)."""
    return np.kron(np.eye(host.n_orb), PAULI[alpha])


def onsite_potential(host: Host, element: str, moment: np.ndarray | None = None,
                     shift: float | None = None) -> np.ndarray:
    """The on-site potential V_X (nb × nb, eV) of ``element`` with unit moment direction ``moment``.

    ``shift`` replaces ``U_X`` (the self-consistent screening passes ΔV_i here).
    """
    e = ELEMENTS[element]
    u = e.U if shift is None else shift
    v = u * np.eye(host.nb, dtype=complex)
    if host.n_orb == 2 and e.W:
        v = v + e.W * np.kron(PAULI[0], ID2)
    if e.magnetic:
        m = np.asarray(moment if moment is not None else (0.0, 0.0, 1.0), float)
        m = m / np.linalg.norm(m)
        v = v - e.delta * np.kron(np.eye(host.n_orb), np.einsum("a,aij->ij", m, PAULI))
    return v


def min_potential_eigenvalue(host: Host, elements: Sequence[str], shifts: Sequence[float] | None = None) -> float:
    """Lowest eigenvalue (eV) over the on-site potentials (moment direction does not matter)."""
    lows = []
    for i, el in enumerate(elements):
        v = onsite_potential(host, el, shift=None if shifts is None else shifts[i])
        lows.append(np.linalg.eigvalsh(v).min())
    return float(min(lows)) if lows else 0.0
