"""All-electron ML-ES: a Jacobi cluster expansion of the KKRimp potential ΔV(r) on each atom's radial mesh.

What is learned is the part of ΔV that KKR stores, ``VM2Z`` (the spherical potential without the
nuclear −2Z/r): finite at r = 0 and smooth in Z. The nuclear term is exact and added back by
:func:`mlkkr.data.schema.nuclear_term` — it is never fitted. For cluster atom i at radius r::

    ΔV_i(r) = Σ_k B_k(r) · ( c_k + Σ_f W_kf F_f(i) )

* radial basis ``B_k`` (k < ``n_radial``): Chebyshev polynomials of the log-radial coordinate
  ``x(r) = 2 ln(1 + r/r_s) / ln(1 + r_max/r_s) − 1``: the KKR mesh is logarithmic near the nucleus,
  where ΔV changes on the scale of the 1s shell, and linear in the cell;
* atom features ``F(i)``: the 1-body term Δχ(Z_i) = χ(Z_i) − χ(Z_host,i) of the atom itself, and the
  2-body cluster expansion ``Σ_{a ≠ i} Δχ(Z_a) ⊗ φ_n(|R_a − R_i|)`` over the other atoms of the
  cluster, with ``φ_n`` the vanishing Jacobi radial functions of the JL descriptor
  (:func:`mlkkr.descriptors.jl.radial_basis`). Host atoms have Δχ = 0 and drop out: a perfect host
  gives the constant profile ``c`` (what KKRimp and KKRhost differ by on a host atom);
* chemistry ``χ(Z)``: a held-out element must be predicted from its neighbours in the periodic table,
  so species are not one-hot channels but smooth functions of the group g and period p: Legendre
  polynomials ``P_1 … P_d(t)`` with ``t = (g − 7.5)/4.5`` (t = −1 … 1 from group 3 to 12), and the
  same times ``(p − 4)``: polynomial interpolation along a row, with an offset per row. The degree
  ``d`` (1 … 5) is chosen with the ridge strength: a whole row supports d = 5, four elements d ≈ 2
  (docs/ml-es.md); a host-in-host embedding (ΔZ = 0) anchors the polynomial.

Fitting is two-staged and exact for atoms that share a mesh: each atom's profile is projected on the
radial basis (least squares on its own mesh points; the residual is the basis floor, reported), and
a ridge regression (scikit-learn) maps features to coefficients in a basis orthonormal on the
reference mesh, so that the ridge's squared error is the squared error on the mesh points. The ridge
strength is chosen by leave-one-group-out cross-validation over the training embeddings' impurity
elements (the same question the held-out evaluation asks).

Saved as a folder: ``model.json`` (kind "potential-radial", hyper-parameters, metrics) and
``weights.npz`` (coefficients; its SHA-256 recorded in model.json's ``"files"`` and verified on loading,
see :mod:`mlkkr.models.files`); no pickle anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlkkr import __version__
from mlkkr.data.schema import RadialEmbedding, nuclear_term
from mlkkr.descriptors.jl import make_params, radial_basis
from mlkkr.errors import InputError
from mlkkr.models.files import check_finite, checksums, read_meta, verify_files

KIND = "potential-radial"
META, WEIGHTS = "model.json", "weights.npz"
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-8, 4, 25))


def group_period(z: float) -> tuple[int, int]:
    """Group (1–18; lanthanides and actinides 3) and period of element ``z`` (1 … 118)."""
    z = int(round(float(z)))
    if not 1 <= z <= 118:
        raise InputError("z", z, allowed="an atomic number 1 … 118 (a vacancy has no chemistry here)")
    starts = [1, 3, 11, 19, 37, 55, 87, 119]
    p = next(k for k in range(7) if z < starts[k + 1]) + 1
    k = z - starts[p - 1]  # 0-based place in the period
    if p == 1:
        return (1 if k == 0 else 18), 1
    if p <= 3:
        return (k + 1 if k < 2 else k + 11), p
    if p <= 5:
        return k + 1, p
    if k < 2:
        return k + 1, p
    if k < 17:  # La … Lu, Ac … Lr
        return 3, p
    return k - 14 + 1, p


def chemistry(z: float, degree: int = 5) -> np.ndarray:
    """χ(Z): Legendre polynomials P_1 … P_degree of t = (group − 7.5)/4.5, then (p − 4) times (1, P_1 … P_degree):
    a polynomial of the group along a row, and an offset and its own polynomial per row. 2·degree + 1 values."""
    g, p = group_period(z)
    t = (g - 7.5) / 4.5
    row = np.polynomial.legendre.legvander(np.array([t]), degree)[0, 1:]
    return np.concatenate([row, (p - 4) * np.concatenate([[1.0], row])])


@dataclass(frozen=True)
class RadialConfig:
    """Hyper-parameters. n_radial: Chebyshev functions of log r; degrees: of the chemistry polynomials,
    chosen by cross-validation with the ridge strength; r_s (Å): the log scale near the nucleus;
    cutoff, n_max, alpha, beta: the Jacobi functions of the 2-body term (Å; 0 < n_max ≤ 12);
    alphas: ridge strengths for the cross-validation; pair_terms: add the defect–defect term
    Δχ₁(Z_i) ⊗ Σ_a Δχ₁(Z_a) φ_n(d_ia) (Δχ₁: chemistry of degree 1, 3 values) — zero on host atoms and on
    single impurities, so only data with impurity pairs train it."""

    n_radial: int = 24
    degrees: tuple[int, ...] = (1, 2, 3, 4, 5)
    r_s: float = 0.02
    cutoff: float = 6.0
    n_max: int = 4
    alpha: float = 0.0
    beta: float = 0.0
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    pair_terms: bool = False

    def check(self) -> None:
        if not isinstance(self.pair_terms, bool):
            raise InputError("pair_terms", self.pair_terms, allowed=[True, False])
        if isinstance(self.n_radial, bool) or not isinstance(self.n_radial, int) or not 2 <= self.n_radial <= 64:
            raise InputError("n_radial", self.n_radial, allowed="an integer from 2 to 64")
        if not self.degrees or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 8
                                   for d in self.degrees):
            raise InputError("degrees", list(self.degrees), allowed="integers from 1 to 8")
        if isinstance(self.n_max, bool) or not isinstance(self.n_max, int) or not 1 <= self.n_max <= 12:
            raise InputError("n_max", self.n_max, allowed="an integer from 1 to 12")
        for name, lo in (("r_s", 0.0), ("cutoff", 0.0)):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not np.isfinite(v) or v <= lo:
                raise InputError(name, v, allowed=f"a finite number > {lo:g} (Å)")
        if not self.alphas or any(not np.isfinite(a) or a <= 0 for a in self.alphas):
            raise InputError("alphas", list(self.alphas), allowed="positive ridge strengths")


class RadialPotentialModel:
    """Fit with :meth:`fit` on :class:`~mlkkr.data.RadialEmbedding` records, then :meth:`predict`."""

    def __init__(self, config: RadialConfig | None = None) -> None:
        self.config = config or RadialConfig()
        self.config.check()
        self.jl = make_params(["X"], cutoff=self.config.cutoff, n_max=self.config.n_max, l_max=0,
                              alpha=self.config.alpha, beta=self.config.beta, body_order=2)
        self.r_max: float | None = None
        self.q: np.ndarray | None = None  # (K, K): B @ q is orthonormal on the reference mesh
        self.coef: np.ndarray | None = None  # (F, K) in the orthonormal basis
        self.intercept: np.ndarray | None = None  # (K,)
        self.alpha_: float | None = None
        self.degree_: int = max(self.config.degrees)
        self.info: dict[str, Any] = {}

    # -- features ---------------------------------------------------------------------------------
    @property
    def n_chem(self) -> int:
        return 2 * self.degree_ + 1

    @property
    def n_features(self) -> int:
        return self.n_chem * (1 + self.config.n_max) + (9 * self.config.n_max if self.config.pair_terms else 0)

    def atom_features(self, rec: RadialEmbedding) -> np.ndarray:
        """(n_atoms, F): on-site Δχ, then Σ_{a≠i} Δχ_a ⊗ φ_n(d_ia); with ``pair_terms`` then
        Δχ₁(Z_i) ⊗ Σ_{a≠i} Δχ₁(Z_a) φ_n(d_ia)."""
        deg = self.degree_
        dchi = np.array([chemistry(z, deg) - chemistry(h, deg) if abs(z - h) > 1e-6 else np.zeros(self.n_chem)
                         for z, h in zip(rec.z, rec.host_z, strict=True)])
        d = np.linalg.norm(rec.positions[:, None] - rec.positions[None], axis=-1)
        phi = radial_basis(d, self.jl)  # (n, n, N)
        diag = np.arange(len(rec.z))
        phi[diag, diag] = 0.0  # no self term
        two = np.einsum("ian,ac->icn", phi, dchi).reshape(len(rec.z), -1)
        if not self.config.pair_terms:
            return np.hstack([dchi, two])
        low = np.array([chemistry(z, 1) - chemistry(h, 1) if abs(z - h) > 1e-6 else np.zeros(3)
                        for z, h in zip(rec.z, rec.host_z, strict=True)])
        cross = np.einsum("ic,ian,ad->icdn", low, phi, low).reshape(len(rec.z), -1)
        return np.hstack([dchi, two, cross])

    def radial(self, r: np.ndarray) -> np.ndarray:
        """(m, K) Chebyshev functions of the log-radial coordinate at radii ``r`` (Å)."""
        if self.r_max is None:
            raise InputError("model", "unfitted", reason="fit the model first")
        x = 2 * np.log1p(np.asarray(r, float) / self.config.r_s) / np.log1p(self.r_max / self.config.r_s) - 1
        return np.polynomial.chebyshev.chebvander(np.clip(x, -1.0, 1.0), self.config.n_radial - 1)

    # -- fit / predict ----------------------------------------------------------------------------
    def _targets(self, records: Sequence[RadialEmbedding]) -> tuple[np.ndarray, float]:
        """Per atom: projection on the orthonormal radial basis (atoms, K), and the basis floor
        (relative RMSE of the projections on the mesh points)."""
        rows, floor_num, floor_den = [], 0.0, 0.0
        for rec in records:
            for r, v in zip(rec.r, rec.delta_v, strict=True):
                b = self.radial(r) @ self.q
                c, *_ = np.linalg.lstsq(b, v, rcond=None)
                rows.append(c)
                floor_num += float(np.sum((b @ c - v) ** 2))
                floor_den += float(np.sum(v ** 2))
        return np.array(rows), float(np.sqrt(floor_num / max(floor_den, 1e-300)))

    def fit(self, records: Sequence[RadialEmbedding], groups: Sequence[Any] | None = None) -> RadialPotentialModel:
        """Fit on ``records``; ``groups`` (one label per record, default its impurity) for the CV of alpha."""
        from sklearn.linear_model import Ridge

        check_records(records)
        self.r_max = max(float(r.max()) for rec in records for r in rec.r)
        ref = max((r for rec in records for r in rec.r), key=len)
        _, s, vt = np.linalg.svd(self.radial(ref), full_matrices=False)
        if s[-1] < 1e-10 * s[0]:
            raise InputError("n_radial", self.config.n_radial, reason="more radial functions than the mesh resolves")
        self.q = vt.T / s  # B @ q has orthonormal columns on the reference mesh
        y, floor = self._targets(records)
        labels = np.array([g for rec, g in zip(records, groups or [rec.impurity for rec in records], strict=True)
                           for _ in rec.z])
        uniq = np.unique(labels)
        cv: dict[tuple[int, float], float] = {}
        xs: dict[int, np.ndarray] = {}
        for d in self.config.degrees:
            self.degree_ = d
            x = xs[d] = np.vstack([self.atom_features(rec) for rec in records])
            for a in self.config.alphas:
                err = 0.0
                for g in uniq if len(uniq) > 2 else []:
                    tr, te = labels != g, labels == g
                    m = Ridge(alpha=a).fit(x[tr], y[tr])
                    err += float(np.sum((m.predict(x[te]) - y[te]) ** 2))
                cv[(d, a)] = err
        if len(uniq) > 2:
            self.degree_, self.alpha_ = min(cv, key=cv.get)
        else:  # too few groups to cross-validate: the smallest degree, a middle strength
            self.degree_, self.alpha_ = min(self.config.degrees), float(np.median(self.config.alphas))
        final = Ridge(alpha=self.alpha_).fit(xs[self.degree_], y)
        self.coef, self.intercept = final.coef_.T.copy(), final.intercept_.copy()
        self.info = {"basis_floor_relative_rmse": floor, "alpha": self.alpha_, "degree": self.degree_,
                     "n_records": len(records), "n_atoms": int(len(y)), "cv_groups": [str(u) for u in uniq]}
        return self

    def predict_atoms(self, rec: RadialEmbedding) -> list[np.ndarray]:
        """ΔV (eV, nuclear term excluded) on each atom's mesh ``rec.r``."""
        if self.coef is None:
            raise InputError("model", "unfitted", reason="fit or load the model first")
        c = self.atom_features(rec) @ self.coef + self.intercept
        return [self.radial(r) @ self.q @ ck for r, ck in zip(rec.r, c, strict=True)]

    def predict_total(self, rec: RadialEmbedding) -> list[np.ndarray]:
        """The full ΔV (eV): the prediction plus the exact nuclear term −ΔZ e²/r."""
        return [v + nuclear_term(r, z - h)
                for v, r, z, h in zip(self.predict_atoms(rec), rec.r, rec.z, rec.host_z, strict=True)]

    # -- persistence --------------------------------------------------------------------------------
    def save(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / WEIGHTS, q=self.q, coef=self.coef, intercept=self.intercept)
        meta = {"kind": KIND, "mlkkr_version": __version__, "config": asdict(self.config), "r_max": self.r_max,
                "degree": self.degree_,
                "info": self.info, **(extra or {}), "files": checksums(folder, [WEIGHTS])}
        (folder / META).write_text(json.dumps(meta, indent=1, default=float))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RadialPotentialModel:
        """A folder written by :meth:`save`. Checked first (:mod:`mlkkr.models.files`): model.json must be a
        JSON object with finite ``config``, ``r_max`` and ``degree``; weights.npz must be present and, when
        model.json records checksums (``"files"``, since issue 15), match its SHA-256. Older folders have
        no ``"files"`` and load as before, unverified. :class:`InputError` otherwise."""
        folder = Path(folder)
        meta = read_meta(folder)
        if meta.get("kind") != KIND:
            raise InputError("model", str(folder), reason=f"not a {KIND} model (kind {meta.get('kind')!r})")
        check_finite(meta, ("config", "r_max", "degree"))
        verify_files(folder, meta, [WEIGHTS])
        try:
            cfg = meta["config"]
            cfg["alphas"], cfg["degrees"] = tuple(cfg["alphas"]), tuple(cfg["degrees"])
            model = cls(RadialConfig(**cfg))
            model.degree_ = int(meta["degree"])
            if model.degree_ not in model.config.degrees:
                raise ValueError(f"degree {model.degree_} is not one of {model.config.degrees}")
            with np.load(folder / WEIGHTS, allow_pickle=False) as w:
                model.q, model.coef, model.intercept = w["q"], w["coef"], w["intercept"]
        except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise InputError("model", str(folder), reason=f"not a readable {KIND} model ({exc})") from None
        model.r_max, model.info = float(meta["r_max"]), meta.get("info", {})
        if model.coef.shape != (model.n_features, model.config.n_radial) or not np.all(np.isfinite(model.coef)):
            raise InputError("model", str(folder),
                             reason="the weights do not match the configuration or are not finite")
        return model


def check_records(records: Sequence[RadialEmbedding]) -> None:
    """InputError for an empty dataset or a record with a non-finite value (names the record and atom)."""
    if not records:
        raise InputError("data", 0, reason="no all-electron embeddings to fit")
    for k, rec in enumerate(records):
        for a, (r, v) in enumerate(zip(rec.r, rec.delta_v, strict=True)):
            if len(r) < 2 or not (np.all(np.isfinite(r)) and np.all(np.isfinite(v))):
                raise InputError(f"data[{k}].atom[{a}]", rec.impurity,
                                 reason="a radial mesh with fewer than 2 points or non-finite values")


def errors(records: Sequence[RadialEmbedding], predictions: Sequence[Sequence[np.ndarray]],
           near_nucleus: float = 0.1, boundary: float = 0.9, core: float = 0.5) -> dict[str, float]:
    """Errors of predicted ΔV (nuclear term excluded) on every mesh point of ``records``.

    ``*_relative_rmse`` = ‖pred − true‖ / ‖true‖ of the stored ΔV over: all points; points near the
    nucleus (r < ``near_nucleus`` Å); the cell boundary (r ≥ ``boundary`` × the atom's largest
    radius); defect sites; other atoms. The stored ΔV is dominated by the change of the core
    charge (≈ +ΔZ e²/r outside it); the stringent measure is ``screened_relative_rmse``: the same
    error relative to the *full* ΔV (nuclear term included: the screened potential, small) on the
    points outside the core (r ≥ ``core`` Å). ``*_rmse_eV``: the plain RMSE of each part.
    """
    keys = ("all", "near_nucleus", "cell_boundary", "defect_sites", "other_atoms", "screened")
    parts: dict[str, list[list[float]]] = {k: [[], []] for k in keys}
    for rec, pred in zip(records, predictions, strict=True):
        defects = set(rec.defects.tolist())
        for a, (r, v, p) in enumerate(zip(rec.r, rec.delta_v, pred, strict=True)):
            e2, v2 = (p - v) ** 2, v ** 2
            out = r >= core
            full2 = (v[out] + nuclear_term(r[out], rec.z[a] - rec.host_z[a])) ** 2
            masks = {"all": np.ones(len(r), bool), "near_nucleus": r < near_nucleus,
                     "cell_boundary": r >= boundary * r.max(),
                     "defect_sites": np.full(len(r), a in defects), "other_atoms": np.full(len(r), a not in defects)}
            for k, m in masks.items():
                parts[k][0].extend(e2[m])
                parts[k][1].extend(v2[m])
            parts["screened"][0].extend(e2[out])
            parts["screened"][1].extend(full2)
    result: dict[str, float] = {}
    for k, (e2, v2) in parts.items():
        if e2:
            result[f"{k}_relative_rmse"] = float(np.sqrt(np.sum(e2) / max(np.sum(v2), 1e-300)))
            result[f"{k}_rmse_eV"] = float(np.sqrt(np.mean(e2)))
    return result
