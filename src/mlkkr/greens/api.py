"""High-level calls of the engine: exchange tensors of defect pairs, and screened embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlkkr.errors import InputError
from mlkkr.greens.defects import Defect
from mlkkr.greens.engine import Engine
from mlkkr.greens.exchange import Decomposition, decompose, exchange_tensor
from mlkkr.greens.scf import ScfParams, ScreeningResult, screen


@dataclass
class PairResult:
    """Exchange tensor ``tensor`` (3×3, meV; convention in :mod:`mlkkr.greens.exchange`) of defects i, j."""

    i: int
    j: int
    tensor: np.ndarray

    @property
    def decomposition(self) -> Decomposition:
        return decompose(self.tensor)


def magnetic_pairs(defects: Sequence[Defect]) -> list[tuple[int, int]]:
    """All pairs (i < j) of magnetic defects."""
    mag = [k for k, d in enumerate(defects) if d.params.magnetic]
    return [(a, b) for ia, a in enumerate(mag) for b in mag[ia + 1:]]


def run_exchange(engine: Engine, defects: Sequence[Defect], pairs: Sequence[tuple[int, int]] | None = None,
                 scf: ScfParams | None = None) -> tuple[list[PairResult], ScreeningResult | None]:
    """Exchange tensors for ``pairs`` (default: every magnetic pair) of the cluster ``defects``.

    With ``scf`` the scalar potentials are first screened self-consistently
    (:func:`mlkkr.greens.scf.screen`, moments along ``scf.moment``) on the region around the
    cluster, and the tensors use those frozen potentials (force theorem); otherwise the bare U.
    """
    pairs = magnetic_pairs(defects) if pairs is None else [tuple(p) for p in pairs]
    if not pairs:
        raise InputError("defects", [d.element for d in defects],
                         reason="need at least two magnetic defects for an exchange pair")
    scr = screen(engine, defects, scf) if scf is not None else None
    out = []
    for i, j in pairs:
        if scr is None:
            t = exchange_tensor(engine, defects, i, j)
        else:
            t = exchange_tensor(engine, defects, i, j, shifts=scr.dv, extra_sites=scr.sites[len(defects):])
        out.append(PairResult(int(i), int(j), t))
    return out, scr


def run_embedding(engine: Engine, defects: Sequence[Defect], scf: ScfParams | None = None) -> ScreeningResult:
    """Self-consistent ΔV (eV) and Δn (electrons) on every site within ``scf.radius`` of the cluster."""
    return screen(engine, defects, scf if scf is not None else ScfParams())
