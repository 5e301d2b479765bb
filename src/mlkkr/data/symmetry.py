"""Which parts of an exchange tensor the symmetry of a pair's surroundings allows (Moriya's rules).

A point operation R about the bond midpoint that maps the pair's atoms (i, j and its environment, with
their species) onto themselves constrains the tensor: if it keeps i and j, ``D = det(R)·R·D``; if it swaps
them, ``D = −det(R)·R·D`` (D is an axial vector and ``D_ji = −D_ij``). The D left allowed is the common null
space of those conditions. Used to test a model against an exact zero: in bcc Fe, fcc Co/Ni, B2 FeCo and
the L1₂ cells every pair has an inversion centre or enough mirror planes, so D = 0 whether or not spin–orbit
coupling was computed.

The operations tried are the 48 of the cube (signed permutations of x, y, z): exact for the cubic crystals
above in their conventional axes; for other axes nothing is found and no constraint is claimed. The
check sees the atoms of the pair's record (its environment cutoff), not the whole crystal.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

#: two positions closer than this (Å) are the same site
TOL = 1e-3


def cubic_operations() -> list[np.ndarray]:
    """The 48 orthogonal 3×3 matrices of the full cubic group O_h."""
    ops = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for row, (col, s) in enumerate(zip(perm, signs, strict=True)):
                m[row, col] = s
            ops.append(m)
    return ops


def _maps_onto(points: np.ndarray, labels: list[str], image: np.ndarray) -> bool:
    for p, lab in zip(image, labels, strict=True):
        d = np.linalg.norm(points - p, axis=1)
        k = int(np.argmin(d))
        if d[k] > TOL or labels[k] != lab:
            return False
    return True


def allowed_dmi(pair: Any) -> np.ndarray:
    """Orthonormal basis (k, 3) of the D vectors the pair's symmetry allows; k = 0 means D = 0 exactly."""
    pi, pj = np.asarray(pair.position_i, float), np.asarray(pair.position_j, float)
    mid = (pi + pj) / 2
    pts = np.vstack([pi, pj, np.asarray(pair.environment_positions, float).reshape(-1, 3)]) - mid
    labels = [pair.species_i, pair.species_j, *pair.environment_species]
    rows = []
    for r in cubic_operations():
        image = pts @ r.T
        if not _maps_onto(pts, labels, image):
            continue
        det = float(np.linalg.det(r))
        if np.linalg.norm(image[0] - pts[0]) < TOL and np.linalg.norm(image[1] - pts[1]) < TOL:
            rows.append(det * r - np.eye(3))  # keeps i and j
        elif np.linalg.norm(image[0] - pts[1]) < TOL and np.linalg.norm(image[1] - pts[0]) < TOL:
            rows.append(-det * r - np.eye(3))  # swaps them (then species_i == species_j: checked above)
    if not rows:
        return np.eye(3)
    _, s, vt = np.linalg.svd(np.vstack(rows))
    rank = int(np.sum(s > 1e-8))
    return vt[rank:]
