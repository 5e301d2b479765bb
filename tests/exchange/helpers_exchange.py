"""Helpers of the ML-Exc tests (tiny settings, random rotations)."""

from __future__ import annotations

import numpy as np

from mlkkr.models.exchange import ExchangeModelConfig
from mlkkr.train.exchange import TrainConfig


def tiny_model(**kw) -> ExchangeModelConfig:
    """A small network (fast on one CPU thread)."""
    base = {"species": [], "mul": 4, "latent": 16, "layers": 1, "n_basis": 6, "n_basis_pair": 8, "embed": 8,
            "r_env": 4.5, "r_host": 4.5}
    base.update(kw)
    return ExchangeModelConfig(**base)


def tiny_training(**kw) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 32, "lr": 5e-3, "patience": 50, "seed": 0, "baseline": False}
    base.update(kw)
    return TrainConfig(**base)


def rotation(seed: int, dtype=np.float64) -> np.ndarray:
    """A random proper rotation (det +1)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.astype(dtype)
