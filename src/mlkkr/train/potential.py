"""Training and evaluation of the JL ridge model of ΔV on impurity embeddings.

An :class:`~mlkkr.data.ImpurityEmbedding` gives the defects (species, positions, Å), the grid
points (Å) and ΔV there (eV). The atoms a grid point sees are the defects, and — when the
descriptor has a channel for the host (``host_species``) — the host lattice sites (one per cell of
``cell``) that no defect occupies. Points of one embedding form one CV group; the held-out test set
is a random subset of whole embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlkkr.data.schema import ImpurityEmbedding
from mlkkr.descriptors.jl import JLDescriptor, make_params
from mlkkr.errors import InputError
from mlkkr.models.potential import DEFAULT_ALPHAS, PotentialModel
from mlkkr.train.potential_metrics import errors, report

Progress = Callable[[int], None] | None


@dataclass
class Featurized:
    """Descriptor rows of a set of embeddings: X (n, F), ΔV y (n,) eV, the embedding of each row
    (``groups``), the species of the nearest defect of each row, the bare potential (eV, NaN where
    the source has none) and whether a defect sits on the point."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    nearest: np.ndarray
    v_bare: np.ndarray
    on_defect: np.ndarray


def species_of(records: Sequence[ImpurityEmbedding]) -> list[str]:
    """Sorted defect species of a dataset."""
    return sorted({s for r in records for s in r.species})


def host_sites(record: ImpurityEmbedding, cutoff: float) -> np.ndarray:
    """Host lattice sites (one per cell of ``record.cell``) within ``cutoff`` Å of a grid point,
    the defect sites excluded: (k, 3) Å."""
    cell = record.cell
    inv = np.linalg.inv(cell)
    lo = np.floor((record.grid @ inv).min(axis=0)) - 1
    hi = np.ceil((record.grid @ inv).max(axis=0)) + 1
    reach = np.ceil(cutoff * np.linalg.norm(inv, axis=0)) + 1
    ranges = [np.arange(lo[k] - reach[k], hi[k] + reach[k] + 1) for k in range(3)]
    frac = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3)
    pts = frac @ cell
    from scipy.spatial import cKDTree

    near = cKDTree(record.grid).query(pts, distance_upper_bound=cutoff)[0] < cutoff
    pts = pts[near]
    if len(record.positions):
        taken = cKDTree(record.positions).query(pts)[0] < 1e-6
        pts = pts[~taken]
    return pts


def environment(record: ImpurityEmbedding, cutoff: float, host_species: str | None = None
                ) -> tuple[np.ndarray, list[str]]:
    """Atoms seen by the grid points of ``record``: positions (Å) and species."""
    pos, sp = record.positions, list(record.species)
    if host_species is not None:
        h = host_sites(record, cutoff)
        pos = np.vstack([pos, h])
        sp = sp + [host_species] * len(h)
    return pos, sp


def nearest_defect(record: ImpurityEmbedding) -> np.ndarray:
    """Species of the defect nearest to each grid point (object array)."""
    if not len(record.positions):
        return np.array(["none"] * len(record.grid), dtype=object)
    d = np.linalg.norm(record.grid[:, None, :] - record.positions[None], axis=-1)
    return np.array(record.species, dtype=object)[np.argmin(d, axis=1)]


def featurize(records: Sequence[ImpurityEmbedding], descriptor: JLDescriptor, host_species: str | None = None,
              progress: Progress = None, batch: int = 256) -> Featurized:
    """Descriptor rows, targets, groups and nearest-defect species of every grid point.

    Up to ``batch`` embeddings are described in one call: each is translated along x, far enough
    (more than the cutoff) from the others that no grid point sees another embedding's atoms — the
    descriptor is translation invariant, so the rows are those of the embeddings taken one by one.
    """
    F = descriptor.n_features
    if not records:
        e = np.zeros(0)
        return Featurized(np.zeros((0, F)), e, e.astype(int), e.astype(object), e, e.astype(bool))
    rc = descriptor.params.cutoff
    xs, ys, gs, ns, vb, od = [], [], [], [], [], []
    for lo in range(0, len(records), batch):
        chunk = records[lo:lo + batch]
        pts, pos, sp, shift = [], [], [], 0.0
        for k, rec in enumerate(chunk):
            p, s = environment(rec, rc, host_species)
            both = np.vstack([rec.grid, p])
            off = np.array([shift - both[:, 0].min(), 0.0, 0.0])
            pts.append(rec.grid + off)
            pos.append(p + off)
            sp += list(s)
            shift += float(both[:, 0].max() - both[:, 0].min()) + 2 * rc + 1.0
            ys.append(rec.delta_v)
            gs.append(np.full(len(rec.grid), lo + k))
            ns.append(nearest_defect(rec))
            vb.append(rec.v_bare if len(rec.v_bare) == len(rec.grid) else np.full(len(rec.grid), np.nan))
            od.append(on_defect(rec))
        xs.append(descriptor(np.vstack(pts), np.vstack(pos), sp))
        if progress is not None:
            progress(len(chunk))
    return Featurized(np.vstack(xs), np.concatenate(ys), np.concatenate(gs), np.concatenate(ns),
                      np.concatenate(vb), np.concatenate(od))


def on_defect(record: ImpurityEmbedding) -> np.ndarray:
    """Whether a defect sits on each grid point (within 1e-6 Å)."""
    if not len(record.positions):
        return np.zeros(len(record.grid), bool)
    d = np.linalg.norm(record.grid[:, None, :] - record.positions[None], axis=-1)
    return d.min(axis=1) < 1e-6


def full_report(data: Featurized, pred: np.ndarray, rows: np.ndarray | None = None) -> dict[str, Any]:
    """Errors (eV) on ``rows`` of ``data``: overall, by nearest defect, on host sites only
    (``off_defect``) and relative to the spread of the screening part ΔV − V_bare (``screening``)."""
    rows = np.ones(len(data.y), bool) if rows is None else rows
    y, p = data.y[rows], pred[rows]
    out = report(y, p, data.nearest[rows])
    off = ~data.on_defect[rows]
    if off.any():
        out["off_defect"] = errors(y[off], p[off])
    vb = data.v_bare[rows]
    ok = np.isfinite(vb)
    if ok.any():
        out["screening"] = errors(y[ok] - vb[ok], p[ok] - vb[ok])
    return out


def auto_cutoff(records: Sequence[ImpurityEmbedding], factor: float = 2.0) -> float:
    """``factor`` × the largest distance from a grid point to its nearest defect (Å), rounded up to
    0.01 Å: every point sees at least one defect, and most see the whole cluster."""
    worst = 0.0
    for r in records:
        if len(r.positions) and len(r.grid):
            d = np.linalg.norm(r.grid[:, None, :] - r.positions[None], axis=-1).min(axis=1)
            worst = max(worst, float(d.max()))
    if worst == 0.0:
        worst = 1.0
    return float(np.ceil(100 * factor * worst + 1e-9) / 100)


def split(n_groups: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, test) embedding indices; ``test_fraction`` of them (at least one) held out."""
    if not 0.0 <= test_fraction < 1.0:
        raise InputError("test_fraction", test_fraction, allowed="a number in [0, 1)")
    perm = np.random.default_rng(seed).permutation(n_groups)
    n_test = int(round(test_fraction * n_groups))
    if test_fraction > 0:
        n_test = min(max(n_test, 1), n_groups - 2)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def check_records(records: Sequence[ImpurityEmbedding]) -> None:
    """InputError for an empty dataset, a non-finite value, or a record without grid points."""
    if not records:
        raise InputError("data", 0, reason="the dataset has no embeddings")
    for k, r in enumerate(records):
        if len(r.grid) == 0:
            raise InputError("data", k, reason=f"embedding {k} has no grid points")
        if len(r.delta_v) != len(r.grid):
            raise InputError("delta_v", k, reason=f"embedding {k}: {len(r.delta_v)} values for {len(r.grid)} points")
        for name, a in (("delta_v", r.delta_v), ("grid", r.grid), ("positions", r.positions)):
            if not np.all(np.isfinite(a)):
                raise InputError(name, k, reason=f"embedding {k} has a non-finite {name} (NaN or inf)")


def train_potential(records: Sequence[ImpurityEmbedding], *, cutoff: float | None = None, n_max: int = 8,
                    l_max: int = 2, n_max3: int | None = 2, alpha: float = 0.0, beta: float = 0.0,
                    body_order: int = 3, host_species: str | None = None,
                    alphas: Sequence[float] = DEFAULT_ALPHAS, n_folds: int = 5, test_fraction: float = 0.2,
                    seed: int = 0, progress: Progress = None) -> tuple[PotentialModel, dict[str, Any]]:
    """Fit a JL ridge model on a random ``1 − test_fraction`` of the embeddings; report the errors
    on the training embeddings and on the held-out ones (eV)."""
    check_records(records)
    cutoff = auto_cutoff(records) if cutoff is None else cutoff
    species = species_of(records) + ([host_species] if host_species is not None else [])
    params = make_params(species, cutoff=cutoff, n_max=n_max, l_max=l_max, n_max3=n_max3, alpha=alpha,
                         beta=beta, body_order=body_order)
    model = PotentialModel(params, alphas=alphas, n_folds=n_folds)
    train_ids, test_ids = split(len(records), test_fraction, seed)
    data = featurize(records, model.descriptor, host_species, progress)
    tr = np.isin(data.groups, train_ids)
    te = np.isin(data.groups, test_ids)
    import time

    t0 = time.perf_counter()
    model.fit(data.X[tr], data.y[tr], data.groups[tr])
    fit_s = time.perf_counter() - t0
    pred = model.predict(data.X)
    out: dict[str, Any] = {
        "train": full_report(data, pred, tr),
        "split": {"seed": seed, "test_fraction": test_fraction, "n_train_embeddings": len(train_ids),
                  "n_test_embeddings": len(test_ids), "test_embeddings": test_ids.tolist()},
        "fit_seconds": fit_s,
        "environment": {"host_species": host_species},
    }
    if te.any():
        out["test"] = full_report(data, pred, te)
    return model, out


def evaluate(model: PotentialModel, records: Sequence[ImpurityEmbedding], host_species: str | None = None,
             progress: Progress = None) -> dict[str, Any]:
    """Errors of ``model`` on every grid point of ``records`` (overall and by nearest defect)."""
    check_records(records)
    data = featurize(records, model.descriptor, host_species, progress)
    out = full_report(data, model.predict(data.X))
    out["n_embeddings"] = len(records)
    return out


