"""Exchange datasets for training: validation, environment keys, seeded splits by environment.

A pair's *environment* is everything the engine (or KKR) saw when it computed J_ij: the two magnetic
atoms and the other defects. Pairs that share an environment — the same cluster, also translated,
rotated, reflected, with i and j swapped or the defects listed in another order — get the same
:func:`environment_key`, and :func:`split_by_environment` puts every pair of one environment in the
same split, so no pair of a test environment is seen in training. Positions in Å, J in meV.

Training must not depend on the order of the records in the file: datasets merged from batches
come in whatever order the batches were named or finished. :func:`split_by_environment` therefore
shuffles the sorted environment keys, and :func:`canonical_rank` gives every record a place that
depends on its content only (the trainer visits records in that order before shuffling an epoch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlkkr.errors import InputError
from mlkkr.greens.exchange import decompose

#: Names of the three splits, in order.
SPLITS = ("train", "val", "test")


def validate_pairs(pairs: Sequence[Any], field_name: str = "data") -> None:
    """Refuse an empty dataset and any record with a non-finite tensor or position (names the record)."""
    if len(pairs) == 0:
        raise InputError(field_name, 0, reason="the dataset has no exchange pairs")
    for r, p in enumerate(pairs):
        if not np.all(np.isfinite(p.tensor)):
            raise InputError(f"{field_name}[{r}].tensor", "NaN/inf",
                             reason=f"record {r} has a non-finite exchange tensor (meV)")
        for name, arr in (("position_i", p.position_i), ("position_j", p.position_j),
                          ("environment_positions", p.environment_positions)):
            if not np.all(np.isfinite(arr)):
                raise InputError(f"{field_name}[{r}].{name}", "NaN/inf", reason=f"record {r} has a non-finite position")


def environment_key(pair: Any, decimals: int = 3) -> str:
    """A fingerprint of the pair's cluster (i, j and the other defects), invariant to translation,
    rotation, reflection, i↔j swap and the order of the defects.

    It is the sorted list of (label_a, label_b, distance_ab rounded to ``decimals`` Å) over all atom
    pairs of the cluster, with labels ``P:<species>`` for i and j and ``E:<species>`` for the others,
    plus the host name; hashed with SHA-256.
    """
    labels = [f"P:{pair.species_i}", f"P:{pair.species_j}"] + [f"E:{s}" for s in pair.environment_species]
    pos = np.vstack([pair.position_i, pair.position_j, np.asarray(pair.environment_positions).reshape(-1, 3)])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    items = sorted((*sorted((labels[a], labels[b])), f"{d[a, b]:.{decimals}f}")
                   for a in range(len(labels)) for b in range(a + 1, len(labels)))
    text = str(pair.host) + "|" + ";".join(",".join(t) for t in items)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_by_environment(pairs: Sequence[Any], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
                         ) -> dict[str, np.ndarray]:
    """Indices of the train / val / test splits, whole environments at a time, fixed by ``seed``.

    The distinct environments, sorted by key, are shuffled with ``numpy.random.default_rng(seed)`` and assigned in
    that order to the split whose share of pairs is furthest below its target fraction. Refuses
    fractions that are not three non-negative numbers summing to 1 and any split that comes out
    empty (too few environments for the fractions asked).
    """
    fr = np.asarray(fractions, float)
    if fr.shape != (3,) or np.any(~np.isfinite(fr)) or np.any(fr < 0) or abs(fr.sum() - 1) > 1e-6:
        raise InputError("split", list(fractions), allowed="three fractions train,val,test >= 0 summing to 1")
    keys = [environment_key(p) for p in pairs]
    groups: dict[str, list[int]] = {}
    for r, k in enumerate(keys):
        groups.setdefault(k, []).append(r)
    order = sorted(groups)  # the keys, not their first appearance: the split ignores the record order
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    counts = np.zeros(3)
    out: list[list[int]] = [[], [], []]
    n = len(pairs)
    for k in order:
        members = groups[k]
        deficit = fr * (n if n else 1) - counts
        s = int(np.argmax(deficit))
        out[s].extend(members)
        counts[s] += len(members)
    result = {name: np.array(sorted(idx), np.int64) for name, idx in zip(SPLITS, out, strict=True)}
    for name, f in zip(SPLITS, fr, strict=True):
        if f > 0 and len(result[name]) == 0:
            raise InputError(f"split.{name}", 0, reason=f"the {name} split is empty: {len(groups)} distinct "
                             f"environments in {n} pairs are too few for fractions {list(fractions)}")
    return result




#: the parts of an exchange tensor: isotropic J, DMI vector D, symmetric traceless S
PARTS = ("J", "D", "S")


def held_parts(pair: Any) -> tuple[str, ...]:
    """The parts of ``pair.tensor`` that were computed (``provenance["tensor_parts"]``; all when absent)."""
    given = (pair.provenance or {}).get("tensor_parts")
    return PARTS if given is None else tuple(name for name in PARTS if name in given)


def record_key(pair: Any) -> str:
    """A key of the record's content: its environment, positions (1e-6 Å) and tensor (1e-9 meV) — of the tensor
    only the parts the record holds (``provenance["tensor_parts"]``: what was not computed is not content)."""
    parts = [environment_key(pair)]
    t = np.asarray(pair.tensor, float)
    held = held_parts(pair)
    if held != PARTS:
        dec = decompose(t)
        pieces = {"J": [dec.J], "D": dec.D, "S": dec.S.ravel()}
        t = np.concatenate([np.asarray(pieces[name], float) for name in held])
    for arr, decimals in ((pair.position_i, 6), (pair.position_j, 6), (pair.environment_positions, 6),
                          (t, 9)):
        parts.append(",".join(f"{x:.{decimals}f}" for x in np.asarray(arr, float).ravel()))
    parts.append(",".join(pair.environment_species))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def canonical_rank(pairs: Sequence[Any]) -> np.ndarray:
    """``rank[i]``: the place of record ``i`` when the records are sorted by :func:`record_key`."""
    order = sorted(range(len(pairs)), key=lambda i: record_key(pairs[i]))
    rank = np.empty(len(pairs), np.int64)
    rank[np.asarray(order, np.int64)] = np.arange(len(pairs))
    return rank
