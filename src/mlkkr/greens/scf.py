"""Self-consistent on-site screening of an embedded defect cluster (the ML-ES grid).

Every site ``i`` of the *region* — all lattice sites within ``radius`` (lattice units) of a defect —
carries a scalar potential shift ``ΔV_i`` (eV) on top of the defect terms (W τ_x, −Δ m·σ):

    ΔV_i = V_i^bare + U_H Δn_i,       V_i^bare = U_X on a defect site, 0 on a host site,

    Δn_i = −(1/π) Im Σ_k w_k Tr_i [G(z_k) − G0(z_k)]_ii       (electrons, both spins),

with G the Green function of the region embedded in the host (Dyson equation) and ``U_H`` the
host's ``screening_u`` (eV per electron). The fixed point is found by Anderson mixing (default) or
plain linear mixing of the input and output potentials; failure to reach ``tol`` within
``max_iterations`` is an :class:`~mlkkr.errors.InputError` naming ``scf.max_iterations``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlkkr.errors import InputError
from mlkkr.greens._threads import single_threaded
from mlkkr.greens.defects import Defect
from mlkkr.greens.engine import Engine

MIXERS = ("anderson", "linear")
VACANCY = "Vac"


@dataclass(frozen=True)
class ScfParams:
    """Screening parameters: region ``radius`` (lattice units), mixer, mixing factor, Anderson
    ``history``, tolerance ``tol`` on max |ΔV_out − ΔV_in| (eV), ``max_iterations``, and the moment
    direction of the magnetic defects."""

    radius: float = 2.0
    mixer: str = "anderson"
    mixing: float = 0.5
    history: int = 6
    tol: float = 1e-5
    max_iterations: int = 50
    moment: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "moment": list(self.moment)}


def make_scf_params(**kw: Any) -> ScfParams:
    """Validated :class:`ScfParams` from keyword arguments (the ``[scf]`` input table)."""
    d = ScfParams()
    allowed = list(d.to_dict())
    for key in kw:
        if key not in allowed:
            raise InputError(f"scf.{key}", kw[key], allowed=allowed)
    mixer = kw.get("mixer", d.mixer)
    if mixer not in MIXERS:
        raise InputError("scf.mixer", mixer, allowed=MIXERS)
    out: dict[str, Any] = {"mixer": mixer}
    for key, lo, hi in (("radius", 0.0, 6.0), ("mixing", 0.0, 1.0), ("tol", 0.0, 1.0)):
        v = kw.get(key, getattr(d, key))
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise InputError(f"scf.{key}", v, reason="not a number") from None
        if not lo < v <= hi:
            raise InputError(f"scf.{key}", v, allowed=f"a number in ({lo}, {hi}]")
        out[key] = v
    for key, lo, hi in (("history", 1, 50), ("max_iterations", 1, 10000)):
        v = kw.get(key, getattr(d, key))
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
            raise InputError(f"scf.{key}", v, allowed=f"an integer from {lo} to {hi}")
        out[key] = int(v)
    m = kw.get("moment", d.moment)
    try:
        m = np.asarray(m, float)
    except (TypeError, ValueError):
        raise InputError("scf.moment", m, reason="expected three numbers") from None
    if m.shape != (3,) or not np.all(np.isfinite(m)) or np.linalg.norm(m) == 0:
        raise InputError("scf.moment", kw.get("moment"), reason="expected a non-zero 3-vector")
    out["moment"] = tuple(float(x) for x in m / np.linalg.norm(m))
    return ScfParams(**out)


@dataclass
class ScreeningResult:
    """Converged screening on the region: sites (n, 3) int — the defects first, in input order —,
    ``dv`` ΔV_i (eV), ``dn`` Δn_i (electrons), ``v_bare`` (eV), ``dn_bare`` (Δn with the bare
    potential, electrons), ``iterations`` and the residual history (eV)."""

    sites: np.ndarray
    dv: np.ndarray
    dn: np.ndarray
    v_bare: np.ndarray
    dn_bare: np.ndarray
    iterations: int
    residuals: list[float] = field(default_factory=list)
    n_defects: int = 0
    host_occupation: float = 0.0
    n_vacancies: int = 0

    @property
    def residual(self) -> float:
        return self.residuals[-1] if self.residuals else float("nan")

    @property
    def net_charge(self) -> float:
        """Net displaced charge (electrons) in the region relative to the neutral host: Σ_i Δn_i,
        plus the host site occupation for each vacancy (a vacancy removes a neutral atom)."""
        return float(self.dn.sum() + self.n_vacancies * self.host_occupation)

    @property
    def net_charge_bare(self) -> float:
        """The same for the bare (unscreened) potential."""
        return float(self.dn_bare.sum() + self.n_vacancies * self.host_occupation)


def region(defects: Sequence[Defect], radius: float) -> np.ndarray:
    """Sites within ``radius`` of any defect: the defect sites first, then the others sorted."""
    r = int(np.floor(radius))
    g = np.arange(-r, r + 1)
    offs = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    offs = offs[np.einsum("ij,ij->i", offs, offs) <= radius**2 + 1e-9]
    dsites = [tuple(d.site) for d in defects]
    others = {tuple(int(x) for x in np.asarray(s) + o) for s in dsites for o in offs} - set(dsites)
    return np.array(dsites + sorted(others), int).reshape(-1, 3)


class _Charges:
    """Δn(ΔV) on a fixed region: ``G = (G0⁻¹ − V)⁻¹`` with ``G0⁻¹`` of the region computed once, so
    an evaluation is one batched inversion (V is block-diagonal: no matrix product)."""

    def __init__(self, engine: Engine, defects: Sequence[Defect], sites: np.ndarray, moment: np.ndarray) -> None:
        self.engine = engine
        self.defects = list(defects)
        self.n = len(sites)
        self.nb = engine.nb
        g0cc = engine.cluster_g0(sites)
        self.p = np.linalg.inv(g0cc)
        self.moment = moment
        nb = self.nb
        idx = np.arange(self.n * nb).reshape(self.n, nb)
        self.diag = (idx[:, :, None], idx[:, None, :])
        self.g0_trace = np.einsum("zsaa->zs", g0cc[:, self.diag[0], self.diag[1]])

    def __call__(self, shifts: np.ndarray) -> np.ndarray:
        eng = self.engine
        v = eng.cluster_potential(self.defects, self.moment, shifts, self.n - len(self.defects))
        g = np.linalg.inv(self.p - v)
        tr = np.einsum("zsaa->zs", g[:, self.diag[0], self.diag[1]]) - self.g0_trace
        return -(eng.contour.w @ tr).imag / np.pi


@single_threaded
def screen(engine: Engine, defects: Sequence[Defect], params: ScfParams | None = None) -> ScreeningResult:
    """Self-consistent ΔV and Δn on every site within ``params.radius`` of the defect cluster."""
    p = params if params is not None else ScfParams()
    sites = region(defects, p.radius)
    nd = len(defects)
    v_bare = np.zeros(len(sites))
    v_bare[:nd] = [d.params.U for d in defects]
    engine.check_potentials([d.element for d in defects])
    charges = _Charges(engine, defects, sites, np.asarray(p.moment))
    u_h = engine.host.screening_u

    x = v_bare.copy()
    dn = charges(x)
    dn_bare = dn.copy()
    xs: list[np.ndarray] = []
    fs: list[np.ndarray] = []
    residuals: list[float] = []
    # the Hartree term acts on the charge of an atom; a vacancy site has none (its ΔV stays bare)
    hartree = np.ones(len(sites))
    hartree[:nd] = [0.0 if d.element == VACANCY else 1.0 for d in defects]
    for it in range(1, p.max_iterations + 1):
        f = v_bare + u_h * hartree * dn - x
        residuals.append(float(np.abs(f).max()))
        if residuals[-1] < p.tol:
            engine.check_potentials([d.element for d in defects], x[:nd])
            n_vac = sum(d.element == VACANCY for d in defects)
            return ScreeningResult(sites, x, dn, v_bare, dn_bare, it - 1, residuals, nd,
                                   host_occupation(engine), n_vac)
        xs.append(x.copy())
        fs.append(f.copy())
        xs, fs = xs[-(p.history + 1):], fs[-(p.history + 1):]
        x = _mix(xs, fs, p) if p.mixer == "anderson" else x + p.mixing * f
        dn = charges(x)
    raise InputError("scf.max_iterations", p.max_iterations,
                     reason=f"the screening did not converge in {p.max_iterations} iterations "
                            f"(residual {residuals[-1]:.2e} eV > tol {p.tol:.1e} eV); raise "
                            "scf.max_iterations, lower scf.mixing or use scf.mixer = 'anderson'")


def _mix(xs: list[np.ndarray], fs: list[np.ndarray], p: ScfParams) -> np.ndarray:
    """Anderson (Pulay) mixing: x_new = x + βF − (ΔX + βΔF) γ, γ = argmin |F − ΔF γ|."""
    x, f = xs[-1], fs[-1]
    if len(xs) == 1:
        return x + p.mixing * f
    dx = np.stack([xs[k + 1] - xs[k] for k in range(len(xs) - 1)], axis=1)
    df = np.stack([fs[k + 1] - fs[k] for k in range(len(fs) - 1)], axis=1)
    gamma, *_ = np.linalg.lstsq(df, f, rcond=1e-12)
    return x + p.mixing * f - (dx + p.mixing * df) @ gamma


def host_occupation(engine: Engine) -> float:
    """Electrons per host site (both spins) on the engine's contour: −(1/π) Im Σ_k w_k Tr G0(0; z_k)."""
    g = engine.g0(np.zeros((1, 3), int))[:, 0]
    return float(-(engine.contour.w @ np.trace(g, axis1=-2, axis2=-1)).imag / np.pi)
