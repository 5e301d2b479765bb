"""mlkkr.greens — the model Green-function engine (pure numpy/scipy; no AiiDA, no Jupyter).

Tight-binding hosts (:mod:`.hosts`), the real-space host Green function for every R of a supercell
by FFT (:mod:`.green`), complex energy contours (:mod:`.contour`), defects and their element table
(:mod:`.defects`), T-matrix embedding (:mod:`.engine`), self-consistent screening (:mod:`.scf`),
exchange tensors from the magnetic force theorem with a Lloyd-formula check (:mod:`.exchange`),
and input files (:mod:`.inputs`). Physics conventions: docs/engine.md and the module docstrings.
"""

from __future__ import annotations

#: Version of the engine's numbers: bump whenever a change alters any computed value.
ENGINE_VERSION = "1.0.0"

from mlkkr.greens.api import PairResult, magnetic_pairs, run_embedding, run_exchange  # noqa: E402
from mlkkr.greens.contour import Contour, ContourParams, make_contour, make_contour_params  # noqa: E402
from mlkkr.greens.defects import ELEMENTS, MAGNETIC, NONMAGNETIC, Defect, make_defects  # noqa: E402
from mlkkr.greens.engine import Engine, KGrid, make_kgrid  # noqa: E402
from mlkkr.greens.exchange import compose, decompose, exchange_tensor, lloyd_tensor  # noqa: E402
from mlkkr.greens.hosts import HOSTS, Host, make_host  # noqa: E402
from mlkkr.greens.scf import ScfParams, ScreeningResult, make_scf_params, screen  # noqa: E402

__all__ = [
    "ENGINE_VERSION", "ELEMENTS", "HOSTS", "MAGNETIC", "NONMAGNETIC",
    "Contour", "ContourParams", "Defect", "Engine", "Host", "KGrid", "PairResult", "ScfParams",
    "ScreeningResult", "compose", "decompose", "exchange_tensor", "lloyd_tensor", "magnetic_pairs",
    "make_contour", "make_contour_params", "make_defects", "make_host", "make_kgrid", "make_scf_params",
    "run_embedding", "run_exchange", "screen",
]
