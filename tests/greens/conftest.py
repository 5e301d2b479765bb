"""Fixtures of the engine tests: small engines (12³ uniform k-grid) for the symmetry and identity checks,
which hold at any k-grid, and the default engines for the physics at converged settings."""

from __future__ import annotations

import dataclasses

import pytest

from mlkkr.greens import Engine, KGrid, make_host
from mlkkr.greens import defects as defects_mod
from mlkkr.greens import exchange as exchange_mod
from support import greens_cache_at


@pytest.fixture(scope="session", autouse=True)
def greens_cache_dir(tmp_path_factory):
    """The on-disk host-table cache of every engine and command in these tests: a fresh folder, not the
    user's ~/.cache (the `mlkkr` commands cache by default)."""
    with greens_cache_at(tmp_path_factory.mktemp("greens-cache")) as folder:
        yield folder


@pytest.fixture(scope="session")
def metal_small() -> Engine:
    return Engine(make_host("metal"), KGrid(12, 12, 0.0))


@pytest.fixture(scope="session")
def ti_small() -> Engine:
    return Engine(make_host("ti"), KGrid(12, 12, 0.0))


@pytest.fixture(scope="session")
def metal_default() -> Engine:
    return Engine(make_host("metal"))


@pytest.fixture(scope="session")
def ti_default() -> Engine:
    return Engine(make_host("ti"))


@pytest.fixture
def no_w(monkeypatch):
    """Every element with W_X = 0 (no parity mixing on the defect sites)."""
    table = {k: dataclasses.replace(e, W=0.0) for k, e in defects_mod.ELEMENTS.items()}
    monkeypatch.setattr(defects_mod, "ELEMENTS", table)
    monkeypatch.setattr(exchange_mod, "ELEMENTS", table)
    exchange_mod._onsite_table.cache_clear()
    yield table
    exchange_mod._onsite_table.cache_clear()
