"""Fixtures of the ML-ES tests: a small engine dataset and the real KKRimp reference archives."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Real JuKKR results (aiida-kkr test archives); see their README. Never written to.
REFERENCE = Path(os.environ.get("MLKKR_KKR_REFERENCE", ROOT / ".." / "shared" / "kkr-reference")).resolve()
ARCHIVES = ("kkrimp_full_wc.aiida", "kkrimp_cached.aiida", "kkrimp_sub_wc.aiida")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reference_archive(name: str) -> Path:
    """Path of a reference archive whose SHA-256 matches SHA256SUMS (fails, never skips, if not)."""
    sums = REFERENCE / "SHA256SUMS"
    if not sums.is_file():
        pytest.fail(f"the KKR reference archives are missing: {sums} (set MLKKR_KKR_REFERENCE)")
    table = dict(line.split()[::-1] for line in sums.read_text().splitlines() if line.strip())
    path = REFERENCE / name
    assert name in table, f"{name} is not listed in {sums}"
    assert sha256(path) == table[name], f"{path} does not match its SHA-256 in {sums}"
    return path


@pytest.fixture(scope="module")
def kkr_reference(aiida_profile):
    """The three KKRimp archives imported into the (cleaned) test profile.

    Returns {archive name: UUID of its top impurity workflow (kkr_imp_wc, or kkr_imp_sub_wc)}.
    The profile is cleaned again afterwards.
    """
    from aiida import orm
    from aiida.tools.archive import import_archive

    aiida_profile.reset_storage()
    found: dict[str, str] = {}
    seen: set[str] = set()
    for name in ARCHIVES:
        import_archive(reference_archive(name))
        for label in ("kkr_imp_wc", "kkr_imp_sub_wc"):
            qb = orm.QueryBuilder().append(orm.WorkflowNode, filters={"attributes.process_label": label},
                                           project=["uuid"])
            new = sorted(u for (u,) in qb.all() if u not in seen)
            if new and name not in found:
                found[name] = new[0]
        seen |= {u for (u,) in orm.QueryBuilder().append(orm.WorkflowNode, project=["uuid"]).all()}
    yield found
    aiida_profile.reset_storage()


#: Species of the engine test dataset (few, so that 60 embeddings resolve the 3-body terms).
ENGINE_SPECIES = ("Fe", "Sn", "Se")


@pytest.fixture(scope="session")
def engine_records():
    """60 self-consistently screened embeddings of 2-3 defects (Fe, Sn, Se) in the single-band metal
    host, built with the engine (k-grid 16, screening radius 1.5 lattice constants)."""
    from mlkkr.data.builders import embedding_record
    from mlkkr.greens import Engine, make_host
    from mlkkr.greens.defects import Defect
    from mlkkr.greens.scf import make_scf_params, screen

    engine = Engine(make_host("metal"), 16)
    scf = make_scf_params(radius=1.5)
    g = np.arange(-1, 2)
    ball = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    ball = ball[(ball**2).sum(axis=1) > 0]
    rng = np.random.default_rng(5)
    records = []
    for r in range(60):
        k = int(rng.integers(2, 4))
        sites = np.vstack([np.zeros((1, 3), int), ball[rng.choice(len(ball), k - 1, replace=False)]])
        defects = [Defect(str(rng.choice(ENGINE_SPECIES)), tuple(int(x) for x in s)) for s in sites]
        records.append(embedding_record(engine, defects, screen(engine, defects, scf),
                                        {"source": "tests/potential", "sample_index": r}))
    return records


@pytest.fixture(scope="session")
def engine_file(engine_records, tmp_path_factory):
    """The engine records written as an HDF5 dataset (schema mlkkr.embedding)."""
    from mlkkr.data.h5io import write_embeddings

    path = tmp_path_factory.mktemp("potential") / "metal60.h5"
    write_embeddings(path, engine_records, {"source": "tests/potential/conftest.py", "host": "metal", "n": 60})
    return path


def random_configuration(rng: np.random.Generator, species: list[str], n_atoms: int = 10,
                         n_points: int = 20, box: float = 3.0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Random grid points (inside the central part of a box) and atoms: points, positions, species."""
    pos = rng.uniform(-box, box, (n_atoms, 3))
    sp = [species[k] for k in rng.integers(len(species), size=n_atoms)]
    pts = rng.uniform(-box / 2, box / 2, (n_points, 3))
    return pts, pos, sp
