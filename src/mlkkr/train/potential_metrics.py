"""Error measures of ΔV predictions (eV), overall and per species of the nearest defect.

relative RMSE = RMSE / standard deviation of the true ΔV over the same points (= sqrt(1 − R²));
1.0 is what predicting the mean of the true values achieves, 0 is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def errors(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE (eV), relative RMSE, max |error| (eV), R² and the number of points."""
    y_true = np.asarray(y_true, float).ravel()
    y_pred = np.asarray(y_pred, float).ravel()
    err = y_pred - y_true
    rmse = float(np.sqrt(np.mean(err**2))) if err.size else float("nan")
    std = float(np.std(y_true)) if err.size else float("nan")
    return {"n_points": int(err.size), "mae_eV": float(np.mean(np.abs(err))) if err.size else float("nan"),
            "rmse_eV": rmse, "relative_rmse": rmse / std if std > 0 else float("nan"),
            "max_abs_error_eV": float(np.max(np.abs(err))) if err.size else float("nan"),
            "r2": 1.0 - (rmse / std) ** 2 if std > 0 else float("nan"), "std_true_eV": std}


def errors_by(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """:func:`errors` for each distinct label (e.g. the species of the nearest defect)."""
    labels = np.asarray(labels, dtype=object)
    return {str(k): errors(np.asarray(y_true)[labels == k], np.asarray(y_pred)[labels == k])
            for k in sorted(set(labels.tolist()))}


def report(y_true: np.ndarray, y_pred: np.ndarray, nearest: Sequence[str] | None = None) -> dict[str, Any]:
    """Overall errors plus, if ``nearest`` is given, errors per species of the nearest defect."""
    out: dict[str, Any] = errors(y_true, y_pred)
    if nearest is not None:
        out["by_nearest_defect"] = errors_by(y_true, y_pred, nearest)
    return out
