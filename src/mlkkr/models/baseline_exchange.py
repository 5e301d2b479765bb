"""Distance-and-species baseline for exchange tensors: kernel ridge regression (scikit-learn).

It sees only what a shell-by-shell fit of J(r) sees: the pair distance |r_ij| (Å) and the two magnetic
species (unordered: one-hot(i) + one-hot(j)), nothing of the direction of the bond or of the
surrounding atoms. It predicts the nine Cartesian elements of J_ij (meV, lab frame) with one RBF kernel
ridge per element; being blind to directions, for D and S it can at best learn their means, which
is what it is for: the reference the equivariant model must beat.

Training points beyond ``max_train`` are subsampled (seeded) to bound the n² kernel matrix. The fitted
model is plain arrays (no pickle): ``to_arrays`` / ``from_arrays``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV

from mlkkr.errors import InputError


class DistanceSpeciesBaseline:
    """Kernel ridge on (|r_ij| / scale, one-hot(species_i) + one-hot(species_j)) → 9 tensor elements (meV)."""

    def __init__(self, species: Sequence[str], max_train: int = 3000, seed: int = 0) -> None:
        self.species = list(species)
        self.max_train = int(max_train)
        self.seed = int(seed)
        self.scale = 1.0
        self.gamma = 1.0
        self.alpha = 1e-3
        self.x_fit: np.ndarray | None = None
        self.dual: np.ndarray | None = None
        self.mean = np.zeros(9)

    def features(self, pairs: Sequence[Any]) -> np.ndarray:
        index = {s: n for n, s in enumerate(self.species)}
        x = np.zeros((len(pairs), 1 + len(self.species)))
        for r, p in enumerate(pairs):
            for name in (p.species_i, p.species_j):
                if name not in index:
                    raise InputError(f"pairs[{r}].species", name, allowed=self.species,
                                     reason=f"species {name!r} is unknown to the baseline")
                x[r, 1 + index[name]] += 1.0
            x[r, 0] = p.distance / self.scale
        return x

    def fit(self, pairs: Sequence[Any]) -> DistanceSpeciesBaseline:
        """Fit on ``pairs`` (RBF kernel; gamma and alpha chosen by 3-fold CV on up to 1500 points)."""
        d = np.array([p.distance for p in pairs])
        self.scale = float(max(d.std(), 1e-6))
        rng = np.random.default_rng(self.seed)
        idx = rng.permutation(len(pairs))[: self.max_train]
        x = self.features([pairs[i] for i in idx])
        y = np.array([pairs[i].tensor.reshape(9) for i in idx])
        self.mean = y.mean(axis=0)
        sub = idx[: min(len(idx), 1500)]
        if len(sub) >= 30:
            search = GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": [1e-4, 1e-3, 1e-2, 1e-1],
                                                               "gamma": [1.0, 10.0, 100.0, 1000.0]},
                                  cv=3, scoring="neg_mean_absolute_error")
            search.fit(x[: len(sub)], (y - self.mean)[: len(sub)])
            self.alpha, self.gamma = float(search.best_params_["alpha"]), float(search.best_params_["gamma"])
        krr = KernelRidge(kernel="rbf", alpha=self.alpha, gamma=self.gamma).fit(x, y - self.mean)
        self.x_fit, self.dual = x, np.asarray(krr.dual_coef_)
        return self

    def predict(self, pairs: Sequence[Any]) -> np.ndarray:
        """Tensors (n, 3, 3) meV."""
        if self.x_fit is None or self.dual is None:
            raise RuntimeError("baseline not fitted")
        x = self.features(pairs)
        out = np.empty((len(x), 9))
        for s in range(0, len(x), 512):
            d2 = ((x[s:s + 512, None, :] - self.x_fit[None]) ** 2).sum(-1)
            out[s:s + 512] = np.exp(-self.gamma * d2) @ self.dual + self.mean
        return out.reshape(-1, 3, 3)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"species": np.array(self.species, dtype=str), "x_fit": self.x_fit, "dual": self.dual,
                "mean": self.mean, "params": np.array([self.scale, self.gamma, self.alpha, self.max_train, self.seed])}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> DistanceSpeciesBaseline:
        scale, gamma, alpha, max_train, seed = a["params"].tolist()
        b = cls([str(s) for s in a["species"]], int(max_train), int(seed))
        b.scale, b.gamma, b.alpha = scale, gamma, alpha
        b.x_fit, b.dual, b.mean = a["x_fit"], a["dual"], a["mean"]
        return b
