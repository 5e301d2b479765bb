"""Convergence at the defaults: doubling the k-grid or the contour points changes J by < 0.5 %,
and the screening region is large enough. The numbers are recorded in docs/engine.md
(``python benchmarks/bench_engine.py --convergence`` prints them)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_greens import cluster

from mlkkr.greens import ContourParams, Engine, KGrid, exchange_tensor, make_host, make_scf_params, screen

PAIRS = [
    [("Fe", (0, 0, 0)), ("Fe", (1, 0, 0))],
    [("Mn", (0, 0, 0)), ("Co", (1, 1, 0)), ("Sn", (1, 0, 0)), ("Vac", (0, 1, 1))],
    [("Cr", (0, 0, 0)), ("Mn", (2, 1, 0)), ("In", (1, 0, 0))],
    [("Mn", (0, 0, 0)), ("Mn", (0, 0, 2))],
    [("Fe", (0, 0, 0)), ("Ni", (3, 1, 1)), ("Se", (2, 1, 0))],
]


def tensors(engine: Engine) -> np.ndarray:
    return np.array([exchange_tensor(engine, cluster(*c), 0, 1) for c in PAIRS])


@pytest.mark.slow
@pytest.mark.parametrize("host_name", ["metal", "ti"])
def test_doubling_kgrid_or_contour_changes_j_below_half_percent(host_name):
    host = make_host(host_name)
    base = tensors(Engine(host))
    for label, engine in (("k-grid x2", Engine(host, KGrid().scaled(2))),
                          ("contour x2", Engine(host, None, ContourParams().scaled(2)))):
        other = tensors(engine)
        scale = np.abs(base).max(axis=(1, 2))
        tensor_change = np.abs(other - base).max(axis=(1, 2)) / scale
        j = np.trace(base, axis1=1, axis2=2) / 3
        j_change = np.abs(np.trace(other, axis1=1, axis2=2) / 3 - j) / np.abs(j)
        print(f"{host_name} {label}: tensor {np.round(100 * tensor_change, 3)} %, J {np.round(100 * j_change, 3)} %")
        assert tensor_change.max() < 0.005, label
        assert j_change.max() < 0.005, label


@pytest.mark.slow
def test_screening_region_and_contour_converged():
    """ΔV at the default radius (2) agrees within 1 meV with radius 3 on the common sites, and with a
    doubled contour and k-grid."""
    host = make_host("ti")
    eng = Engine(host)
    defects = cluster(("In", (0, 0, 0)))
    base = screen(eng, defects)
    wide = screen(eng, defects, make_scf_params(radius=3.0))
    index = {tuple(s): k for k, s in enumerate(wide.sites)}
    common = np.array([index[tuple(s)] for s in base.sites])
    assert np.abs(wide.dv[common] - base.dv).max() < 1e-3
    fine = screen(Engine(host, KGrid().scaled(2), ContourParams().scaled(2)), defects)
    assert np.abs(fine.dv - base.dv).max() < 1e-3
