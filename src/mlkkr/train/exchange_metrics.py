"""Errors of predicted exchange tensors, per part of the decomposition (meV).

Parts (convention of :mod:`mlkkr.greens.exchange`): ``J`` = Tr/3; ``D_x, D_y, D_z`` of the
antisymmetric part (A_yz, A_zx, A_xy) and ``D`` (the three pooled); ``S`` the symmetric traceless part,
its six independent Cartesian elements (xx, yy, zz, xy, yz, zx) pooled; ``tensor`` all nine elements.
For each: MAE, RMSE (meV), R² (1 − SSE/SST about the mean of the true values) and the standard
deviation of the true values (meV), against which the goals are stated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlkkr.greens.exchange import decompose

#: The parts reported, in table order.
PARTS = ("J", "D_x", "D_y", "D_z", "D", "S", "tensor")


def parts(tensors: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of each part of (n, 3, 3) tensors (meV), flattened per part."""
    t = np.asarray(tensors, float).reshape(-1, 3, 3)
    dec = decompose(t)
    s = dec.S
    s6 = np.stack([s[:, 0, 0], s[:, 1, 1], s[:, 2, 2], s[:, 0, 1], s[:, 1, 2], s[:, 2, 0]], axis=-1)
    return {"J": np.asarray(dec.J).reshape(-1), "D_x": dec.D[:, 0], "D_y": dec.D[:, 1], "D_z": dec.D[:, 2],
            "D": dec.D.reshape(-1), "S": s6.reshape(-1), "tensor": t.reshape(-1)}


def error_table(pred: np.ndarray, true: np.ndarray) -> dict[str, dict[str, float]]:
    """``{part: {mae, rmse, r2, std, n}}`` in meV for predicted vs true tensors (n, 3, 3)."""
    p, t = parts(pred), parts(true)
    out: dict[str, dict[str, float]] = {}
    for name in PARTS:
        e = p[name] - t[name]
        sst = float(np.sum((t[name] - t[name].mean()) ** 2))
        out[name] = {"mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e**2))),
                     "r2": float(1 - np.sum(e**2) / sst) if sst > 0 else float("nan"),
                     "std": float(t[name].std()), "n": int(len(e))}
    return out


def format_table(tables: dict[str, dict[str, dict[str, float]]]) -> str:
    """A text table: one block of rows per model (e.g. ``{"e3nn": ..., "baseline": ...}``)."""
    lines = [f"{'model':<10} {'part':<7} {'MAE/meV':>10} {'RMSE/meV':>10} {'R2':>8} {'std/meV':>10} "
             f"{'MAE/std':>8}"]
    for model, table in tables.items():
        for name in PARTS:
            row: dict[str, Any] = table[name]
            rel = row["mae"] / row["std"] if row["std"] > 0 else float("nan")
            lines.append(f"{model:<10} {name:<7} {row['mae']:>10.4f} {row['rmse']:>10.4f} {row['r2']:>8.4f} "
                         f"{row['std']:>10.4f} {rel:>8.3f}")
    return "\n".join(lines)
