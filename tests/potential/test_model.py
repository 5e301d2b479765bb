"""JL ridge model: exact recovery of a JL expansion, CV choice of alpha, save/load, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlkkr.descriptors import JLDescriptor, make_params
from mlkkr.errors import InputError
from mlkkr.models.potential import PotentialModel, select_alpha

from .conftest import random_configuration

SPECIES = ["Cu", "Zn"]


def dataset(desc: JLDescriptor, n_configs: int, seed: int):
    rng = np.random.default_rng(seed)
    xs, gs = [], []
    for k in range(n_configs):
        pts, pos, sp = random_configuration(rng, SPECIES, n_atoms=12, n_points=25)
        xs.append(desc(pts, pos, sp))
        gs.append(np.full(len(pts), k))
    return np.vstack(xs), np.concatenate(gs)


@pytest.mark.parametrize("body_order", [2, 3])
def test_exact_recovery_of_a_known_jl_expansion(body_order):
    """A field that *is* a JL expansion (random coefficients, intercept) is fitted back to round-off:
    the CV picks the smallest alpha, predictions on new configurations and the coefficients agree."""
    p = make_params(SPECIES, cutoff=3.5, n_max=5, l_max=2, n_max3=2, alpha=0.5, beta=0.0, body_order=body_order)
    desc = JLDescriptor(p)
    X, groups = dataset(desc, 30, seed=10)
    rng = np.random.default_rng(11)
    w_true = rng.normal(size=desc.n_features)
    w_true[desc.body_of_feature() == 1] = 0.0  # random points never sit on an atom: no 1-body signal
    b_true = 0.37
    y = X @ w_true + b_true
    model = PotentialModel(p, alphas=[0.0, 1e-8, 1e-4, 1e-1, 10.0], n_folds=5, solver="svd").fit(X, y, groups)
    assert model.alpha_ == 0.0
    X_new, _ = dataset(desc, 5, seed=12)
    y_new = X_new @ w_true + b_true
    assert np.max(np.abs(model.predict(X_new) - y_new)) < 1e-9 * np.abs(y_new).max()
    live = X.std(axis=0) > 0
    np.testing.assert_allclose(model.coef_[live], w_true[live], rtol=1e-7, atol=1e-7 * np.abs(w_true).max())
    assert abs(model.intercept_ - b_true) < 1e-7


def test_cv_prefers_more_regularisation_for_noisy_data():
    p = make_params(SPECIES, cutoff=3.5, n_max=6, body_order=2)
    desc = JLDescriptor(p)
    X, groups = dataset(desc, 20, seed=1)
    y = X @ np.random.default_rng(2).normal(size=desc.n_features)
    Z = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
    alphas = list(np.logspace(-8, 4, 13))
    clean, _ = select_alpha(Z, y, groups, alphas, 4)
    noisy_y = y + np.random.default_rng(3).normal(scale=0.5 * y.std(), size=len(y))
    noisy, rmse = select_alpha(Z, noisy_y, groups, alphas, 4)
    assert noisy > clean
    assert len(rmse) == len(alphas) and min(rmse) == rmse[alphas.index(noisy)]


def test_cv_rmse_matches_scikit_learn_ridge_refits():
    """The eigen-decomposition shortcut gives the same CV errors as refitting scikit-learn's Ridge."""
    from sklearn.linear_model import Ridge

    from mlkkr.models.potential import fold_ids

    p = make_params(SPECIES, cutoff=3.5, n_max=4, body_order=2)
    X, groups = dataset(JLDescriptor(p), 12, seed=4)
    y = np.sin(X[:, 2]) + X[:, 5] ** 2
    alphas = [1e-3, 1.0, 100.0]
    _, rmse = select_alpha(X, y, groups, alphas, 3)
    folds = fold_ids(groups, 3)
    for alpha, got in zip(alphas, rmse, strict=True):
        sse = 0.0
        for f in range(3):
            m = Ridge(alpha=alpha).fit(X[folds != f], y[folds != f])
            sse += np.sum((m.predict(X[folds == f]) - y[folds == f]) ** 2)
        assert got == pytest.approx(np.sqrt(sse / len(y)), rel=1e-8)


def test_save_and_load(tmp_path):
    p = make_params(SPECIES, cutoff=3.0, n_max=4, l_max=1, body_order=3)
    desc = JLDescriptor(p)
    X, groups = dataset(desc, 8, seed=5)
    y = X[:, 4] - 0.5 * X[:, 7]
    model = PotentialModel(p, alphas=[1e-6, 1e-2], n_folds=3).fit(X, y, groups)
    folder = model.save(tmp_path / "m", {"metrics": {"x": 1}})
    meta = json.loads((folder / "model.json").read_text())
    assert meta["kind"] == "potential" and meta["species"] == SPECIES and meta["metrics"] == {"x": 1}
    assert meta["descriptor"]["n_max"] == 4 and meta["ridge"]["alpha"] == model.alpha_
    loaded, meta2 = PotentialModel.load(folder)
    assert meta2 == meta
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_bad_input():
    p = make_params(SPECIES, cutoff=3.0, n_max=3, body_order=2)
    model = PotentialModel(p)
    X = np.zeros((5, model.descriptor.n_features))
    with pytest.raises(InputError, match="not fitted"):
        model.predict(X)
    with pytest.raises(InputError, match="ridge.alphas"):
        PotentialModel(p, alphas=[-1.0])
    with pytest.raises(InputError, match="ridge.n_folds"):
        PotentialModel(p, n_folds=1)
    y = np.arange(5.0)
    y[3] = np.nan
    with pytest.raises(InputError, match="delta_v: row 3 is not finite"):
        model.fit(X + np.arange(5)[:, None], y, np.arange(5))
    with pytest.raises(InputError, match="at least two groups"):
        model.fit(X + np.arange(5)[:, None], np.arange(5.0), np.zeros(5))
    with pytest.raises(InputError, match=r"expected \(n, 8\)"):
        model.fit(np.zeros((5, 3)), np.arange(5.0))
