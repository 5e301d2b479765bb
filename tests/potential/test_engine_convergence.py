"""Systematic convergence of the JL expansion on engine data (held-out embeddings).

The engine's ΔV (self-consistent screening of 2-3 defects in the single-band metal) is fitted on
45 embeddings and tested on 15 others. The held-out RMSE must fall as the radial order n_max grows,
and the 3-body expansion must beat the 2-body one of the same radial order.
"""

from __future__ import annotations

import pytest

from mlkkr.train.potential import train_potential

CUTOFF = 8.61  # Å: three lattice constants of the metal host


def held_out(records, **kw):
    _, rep = train_potential(records, cutoff=CUTOFF, test_fraction=0.25, n_folds=4, seed=1, **kw)
    return rep["test"]


@pytest.fixture(scope="module")
def errors(engine_records):
    runs = {f"2b-n{n}": dict(body_order=2, n_max=n) for n in (1, 2, 4, 8)}
    runs["1b"] = dict(body_order=1, n_max=1)
    runs["3b-n8"] = dict(body_order=3, n_max=8, n_max3=2, l_max=2)
    runs["3b-n8-big"] = dict(body_order=3, n_max=8, n_max3=4, l_max=4)
    return {name: held_out(engine_records, **kw) for name, kw in runs.items()}


def test_error_falls_with_radial_order(errors):
    rmse = [errors[f"2b-n{n}"]["rmse_eV"] for n in (1, 2, 4, 8)]
    for coarse, fine in zip(rmse, rmse[1:], strict=False):
        assert fine < 0.9 * coarse, rmse
    assert errors["2b-n1"]["rmse_eV"] < errors["1b"]["rmse_eV"]
    assert rmse[-1] < 0.25 * rmse[0]


def test_three_body_beats_two_body(errors):
    two, three, bigger = errors["2b-n8"], errors["3b-n8"], errors["3b-n8-big"]
    assert three["rmse_eV"] < 0.9 * two["rmse_eV"]
    assert three["screening"]["relative_rmse"] < two["screening"]["relative_rmse"]
    assert bigger["rmse_eV"] < two["rmse_eV"]


def test_accuracy_on_held_out_embeddings(errors):
    best = errors["3b-n8"]
    assert best["relative_rmse"] < 0.05  # the goal, here already on 45 training embeddings
    assert best["screening"]["relative_rmse"] < 0.05  # also for the screening part ΔV − V_bare alone
    assert set(best["by_nearest_defect"]) <= {"Fe", "Sn", "Se"}
