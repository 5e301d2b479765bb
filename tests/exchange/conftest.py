"""Fixtures of the ML-Exc tests: a small engine dataset, tiny model settings, the reference archive."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

#: The shared folder of real JuKKR archives (read-only): env MLKKR_KKR_REFERENCE, else ../shared/kkr-reference
#: next to the repository.
KKR_REFERENCE = Path(os.environ.get("MLKKR_KKR_REFERENCE",
                                    Path(__file__).resolve().parents[2].parent / "shared" / "kkr-reference"))


@pytest.fixture(scope="session")
def engine_pairs():
    """400 exchange pairs of the TI host from the engine (small uniform k-grid: fast, still physical)."""
    from mlkkr.data.builders import ExchangeSampler, build_exchange
    from mlkkr.greens.engine import Engine
    from mlkkr.greens.hosts import make_host

    engine = Engine(make_host("ti"), {"n": 12, "n_max": 12, "c": 0.0})
    pairs, params = build_exchange(engine, 400, 3, ExchangeSampler(cutoff=2.0, env_radius=1.0, max_others=2))
    return pairs, params


@pytest.fixture(scope="session")
def engine_h5(engine_pairs, tmp_path_factory):
    """The same pairs as an mlkkr.exchange HDF5 file."""
    from mlkkr.data.h5io import write_exchange

    pairs, params = engine_pairs
    return write_exchange(tmp_path_factory.mktemp("exc") / "pairs.h5", pairs, params)


@pytest.fixture(scope="session")
def jij_archive() -> Path:
    """The reference archive jij.aiida, its SHA-256 checked against SHA256SUMS (never written to)."""
    path = KKR_REFERENCE / "jij.aiida"
    sums = KKR_REFERENCE / "SHA256SUMS"
    if not path.is_file() or not sums.is_file():
        pytest.fail(f"{path} (and SHA256SUMS) missing: the shared kkr-reference folder must be present "
                    "(or set MLKKR_KKR_REFERENCE)")
    want = {line.split()[1]: line.split()[0] for line in sums.read_text().splitlines() if line.strip()}
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    assert got == want["jij.aiida"], "jij.aiida does not match its SHA256SUMS entry"
    return path
