"""JL ridge model of the impurity potential: ΔV(p) = w · D(p) + b, D the Jacobi–Legendre descriptor.

The regularisation strength ``alpha`` (scikit-learn's: the objective is ``|y − Xw − b|² + alpha |w|²``
on scaled features) is chosen by K-fold cross-validation over a grid. Features are centred and
scaled *per body-order block* (one RMS per block), not per feature: per-feature standardisation
inflates rare features (a species pair present in a few embeddings) and lets them overfit, which
measurably hurt the held-out error of the 3-body model on engine data. Folds are *groups*
(embeddings), never single grid points, because points of one embedding are strongly correlated.
For speed the CV solves every (fold, alpha) from one eigen-decomposition of the fold's centred Gram
matrix (exact ridge solutions, one pass over the data); the final model is scikit-learn's
:class:`~sklearn.linear_model.Ridge` fitted on all training data with the chosen alpha.

Saved as a folder: ``model.json`` (kind "potential", hyper-parameters, species, metrics, training-data
checksum — written by the caller through :meth:`PotentialModel.save`) and ``weights.npz`` (the
coefficients on the raw descriptor: prediction = X @ coef + intercept, eV). model.json records the
SHA-256 of weights.npz (``"files"``), verified on loading (:mod:`mlkkr.models.files`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlkkr import __version__
from mlkkr.descriptors.jl import JLDescriptor, JLParams, make_params
from mlkkr.errors import InputError
from mlkkr.models.files import check_finite, checksums, read_meta, verify_files

KIND = "potential"
#: Default grid of ridge strengths (scikit-learn's alpha on standardised features).
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-10, 6, 33))
WEIGHTS = "weights.npz"
META = "model.json"


class PotentialModel:
    """A JL descriptor plus a ridge regression of ΔV (eV) on it.

    Parameters
    ----------
    params: descriptor hyper-parameters (:func:`mlkkr.descriptors.make_params`).
    alphas: ridge strengths to choose from by cross-validation.
    n_folds: number of group folds (at most the number of groups).
    solver: scikit-learn Ridge solver of the final fit ("auto", "cholesky", "svd", …).
    """

    def __init__(self, params: JLParams, alphas: Sequence[float] = DEFAULT_ALPHAS, n_folds: int = 5,
                 solver: str = "auto") -> None:
        alphas = [float(a) for a in alphas]
        if not alphas or any(not np.isfinite(a) or a < 0 for a in alphas):
            raise InputError("ridge.alphas", alphas, reason="expected finite numbers >= 0")
        if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or not 2 <= n_folds <= 50:
            raise InputError("ridge.n_folds", n_folds, allowed="an integer from 2 to 50")
        self.params = params
        self.descriptor = JLDescriptor(params)
        self.alphas = sorted(alphas)
        self.n_folds = int(n_folds)
        self.solver = solver
        self.alpha_: float | None = None
        self.cv_rmse_: list[float] = []
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> PotentialModel:
        """Choose alpha by group K-fold CV, then fit on all rows. X (n, F), y (n,) eV, groups (n,)."""
        from sklearn.linear_model import Ridge

        X, y = self._check_xy(X, y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        if len(groups) != len(y):
            raise InputError("groups", len(groups), reason=f"{len(groups)} group labels for {len(y)} rows")
        mean, scale, mask = _standardiser(X, self.descriptor.body_of_feature())
        Z = (X[:, mask] - mean[mask]) / scale[mask]
        self.alpha_, self.cv_rmse_ = select_alpha(Z, y, groups, self.alphas, self.n_folds)
        ridge = Ridge(alpha=self.alpha_, solver=self.solver, fit_intercept=True)
        ridge.fit(Z, y)
        coef = np.zeros(X.shape[1])
        coef[mask] = ridge.coef_ / scale[mask]
        self.coef_ = coef
        self.intercept_ = float(ridge.intercept_ - coef[mask] @ mean[mask])
        return self

    def _check_xy(self, X: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, float)
        if X.ndim != 2 or X.shape[1] != self.descriptor.n_features:
            raise InputError("X", X.shape, reason=f"expected (n, {self.descriptor.n_features}) descriptor rows")
        if y is None:
            return X, np.zeros(0)
        y = np.asarray(y, float).ravel()
        if len(y) != len(X):
            raise InputError("y", len(y), reason=f"{len(y)} targets for {len(X)} rows")
        if len(y) < 2:
            raise InputError("y", len(y), reason="need at least two grid points to fit")
        for name, a in (("X", X), ("delta_v", y)):
            bad = ~np.isfinite(a)
            if bad.any():
                raise InputError(name, None, reason=f"row {int(np.argwhere(bad)[0][0])} is not finite (NaN or inf)")
        return X, y

    # -- prediction -----------------------------------------------------------------------------
    def predict(self, X: np.ndarray) -> np.ndarray:
        """ΔV (eV) for descriptor rows X (n, F)."""
        if self.coef_ is None:
            raise InputError("model", None, reason="the model is not fitted")
        X, _ = self._check_xy(X)
        return X @ self.coef_ + self.intercept_

    def predict_points(self, points: np.ndarray, positions: np.ndarray, species: Sequence[str]) -> np.ndarray:
        """ΔV (eV) at grid points (m, 3) Å among atoms (n, 3) Å of ``species``."""
        return self.predict(self.descriptor(points, positions, species))

    def predict_shells(self, centres: np.ndarray, radii: np.ndarray, positions: np.ndarray,
                       species: Sequence[str], n_theta: int = 6) -> np.ndarray:
        """Spherical averages of ΔV (eV) on spheres of ``radii`` Å around ``centres`` Å."""
        return self.predict(self.descriptor.shells(centres, radii, positions, species, n_theta))

    # -- persistence ----------------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        return {"descriptor": self.params.to_dict(), "ridge": {
            "alpha": self.alpha_, "alphas": self.alphas, "n_folds": self.n_folds, "solver": self.solver,
            "cv_rmse_eV": self.cv_rmse_}}

    def save(self, folder: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write ``model.json`` (kind, version, hyper-parameters, species, + ``meta``) and weights."""
        if self.coef_ is None:
            raise InputError("model", None, reason="the model is not fitted")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / WEIGHTS, coef=self.coef_, intercept=np.array(self.intercept_),
                 feature_names=np.array(self.descriptor.feature_names()))
        doc = {"kind": KIND, "mlkkr_version": __version__, **self.hyperparameters(),
               "species": list(self.params.species), "n_features": self.descriptor.n_features,
               "units": {"delta_v": "eV", "positions": "angstrom", "cutoff": "angstrom"},
               "weights": WEIGHTS, **(meta or {}), "files": checksums(folder, [WEIGHTS])}
        (folder / META).write_text(json.dumps(doc, indent=2, sort_keys=True, default=_plain) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> tuple[PotentialModel, dict[str, Any]]:
        """(model, model.json contents) from a folder written by :meth:`save`.

        Checked first (:mod:`mlkkr.models.files`): model.json must be a JSON object with finite numbers in
        ``descriptor``, ``ridge`` and ``environment``; weights.npz must be present and, when model.json
        records checksums (``"files"``, written since issue 15), match its SHA-256. Folders written
        before that have no ``"files"`` and load as before, unverified. :class:`InputError` otherwise.
        """
        folder = Path(folder)
        meta = read_meta(folder)
        if meta.get("kind") != KIND:
            raise InputError("model.json:kind", meta.get("kind"), allowed=[KIND])
        check_finite(meta, ("descriptor", "ridge", "environment"))
        weights = meta.get("weights", WEIGHTS)
        if weights != WEIGHTS:
            raise InputError("model.json:weights", weights, allowed=[WEIGHTS])
        verify_files(folder, meta, [WEIGHTS])
        try:
            d = dict(meta["descriptor"])
            params = make_params(d.pop("species"), **d)
            r = meta["ridge"]
            model = cls(params, alphas=r["alphas"], n_folds=r["n_folds"], solver=r.get("solver", "auto"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError("model.json", str(folder / META), reason=f"not a potential model ({exc!r})") from None
        try:
            with np.load(folder / WEIGHTS, allow_pickle=False) as w:
                coef = np.asarray(w["coef"], float)
                intercept = float(w["intercept"])
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise InputError("MODEL", str(folder / WEIGHTS), reason=f"{WEIGHTS} is damaged: {exc}") from None
        if coef.shape != (model.descriptor.n_features,):
            raise InputError("weights", coef.shape, reason="do not match the descriptor in model.json")
        if not (np.all(np.isfinite(coef)) and np.isfinite(intercept)):
            raise InputError("MODEL", str(folder / WEIGHTS), reason=f"{WEIGHTS} holds non-finite coefficients")
        model.coef_ = coef
        model.intercept_ = intercept
        model.alpha_ = r["alpha"]
        model.cv_rmse_ = list(r.get("cv_rmse_eV", []))
        return model, meta


def _plain(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _standardiser(X: np.ndarray, blocks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means, scales and the mask of non-constant columns (constant ones carry no signal).

    The scale is the RMS of the centred columns of each block (``blocks``: a label per column, e.g.
    the body order); without blocks, each column's own standard deviation.
    """
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    mask = std > 1e-12 * max(1.0, float(np.abs(X).max(initial=0.0)))
    if blocks is None:
        return mean, np.where(mask, std, 1.0), mask
    scale = np.ones(X.shape[1])
    for b in np.unique(blocks):
        sel = (blocks == b) & mask
        if sel.any():
            scale[blocks == b] = np.sqrt(np.mean(std[sel] ** 2))
    return mean, scale, mask


def fold_ids(groups: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold of each row: scikit-learn's GroupKFold over the group labels (no group is split)."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    k = min(n_folds, n_groups)
    if k < 2:
        raise InputError("groups", n_groups, reason="cross-validation needs at least two groups (embeddings)")
    folds = np.empty(len(groups), int)
    for f, (_, test) in enumerate(GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups)):
        folds[test] = f
    return folds


def select_alpha(Z: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: Sequence[float],
                 n_folds: int) -> tuple[float, list[float]]:
    """The alpha with the smallest group-K-fold CV RMSE, and the CV RMSE (eV) of every alpha.

    Each fold's ridge solutions for all alphas come from one eigen-decomposition of the centred Gram
    matrix of its training rows (the Gram matrices of all folds from one pass over Z).
    """
    folds = fold_ids(groups, n_folds)
    k = folds.max() + 1
    F = Z.shape[1]
    gram_f = np.empty((k, F, F))
    zy_f = np.empty((k, F))
    sz_f = np.empty((k, F))
    sy_f = np.empty(k)
    n_f = np.empty(k)
    for f in range(k):
        zf, yf = Z[folds == f], y[folds == f]
        gram_f[f] = zf.T @ zf
        zy_f[f] = zf.T @ yf
        sz_f[f] = zf.sum(axis=0)
        sy_f[f] = yf.sum()
        n_f[f] = len(yf)
    gram, zy, sz, sy, n = gram_f.sum(0), zy_f.sum(0), sz_f.sum(0), sy_f.sum(), n_f.sum()
    sse = np.zeros(len(alphas))
    for f in range(k):
        nt = n - n_f[f]
        mu = (sz - sz_f[f]) / nt
        ybar = (sy - sy_f[f]) / nt
        c = gram - gram_f[f] - nt * np.outer(mu, mu)
        b = zy - zy_f[f] - nt * mu * ybar
        lam, vec = np.linalg.eigh(c)
        lam = np.clip(lam, 0.0, None)
        vb = vec.T @ b
        zf, yf = Z[folds == f], y[folds == f]
        zfv = (zf - mu) @ vec
        for a, alpha in enumerate(alphas):
            den = lam + alpha
            inv = np.where(den > 1e-12 * max(lam.max(initial=0.0), 1e-300), 1.0 / np.where(den > 0, den, 1.0), 0.0)
            pred = zfv @ (inv * vb) + ybar
            sse[a] += float(np.sum((pred - yf) ** 2))
    rmse = np.sqrt(sse / n)
    best = int(np.argmin(rmse))
    return float(alphas[best]), [float(r) for r in rmse]
