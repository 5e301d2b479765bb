"""Dataset records shared by the engine and the aiida-kkr readers: ``ImpurityEmbedding`` and
``ExchangePair``.

Units: positions in Å (Cartesian), potentials in eV, charges in electrons, exchange in meV with the
convention of :mod:`mlkkr.greens.exchange` (``E = −Σ_{i<j} e_i·J_ij·e_j``, J > 0 ferromagnetic,
``D = (A_yz, A_zx, A_xy)`` of the antisymmetric part ``A = (J − Jᵀ)/2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlkkr.greens.exchange import decompose


def dmi_from_aiida_kkr(d_aiida: np.ndarray) -> np.ndarray:
    """Convert a DMI vector written by aiida-kkr's impurity Jij parser to mlkkr's convention (meV).

    aiida-kkr writes ``D = (J_yz − J_zy, J_zx − J_xz, J_xy − J_yx)`` — without the factor ½ of the
    antisymmetric part — so its D is twice ours: ``D_mlkkr = D_aiida / 2``. (Its sign of J, positive
    for ferromagnetic, and J = Tr/3 already match.)
    """
    return np.asarray(d_aiida, float) / 2.0


def dmi_to_aiida_kkr(d: np.ndarray) -> np.ndarray:
    """Inverse of :func:`dmi_from_aiida_kkr`: mlkkr D → aiida-kkr's D (twice as large)."""
    return 2.0 * np.asarray(d, float)


@dataclass
class ImpurityEmbedding:
    """A converged impurity embedding: the defects and ΔV on the grid of sites around them.

    host: host name (a model host of the engine, or a KKR host label).
    species: defect species (element symbols; "Vac" for a vacancy).
    positions: defect positions (n, 3), Å.
    grid: grid points (m, 3), Å — for the engine, every lattice site within the screening radius
        of a defect, the defect sites first.
    delta_v: converged potential shift ΔV at each grid point (m,), eV.
    delta_n: displaced electrons at each grid point (m,), or empty if the source has none.
    v_bare: the bare (unscreened) potential at each grid point (m,), eV, or empty.
    cell: host lattice vectors (3, 3), Å (rows).
    converged, iterations: state of the self-consistency.
    provenance: engine version and every input parameter, or the AiiDA node it came from.
    """

    host: str
    species: list[str]
    positions: np.ndarray
    grid: np.ndarray
    delta_v: np.ndarray
    delta_n: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_bare: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cell: np.ndarray = field(default_factory=lambda: np.eye(3))
    converged: bool = True
    iterations: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, float).reshape(-1, 3)
        self.grid = np.asarray(self.grid, float).reshape(-1, 3)
        self.delta_v = np.asarray(self.delta_v, float)
        self.delta_n = np.asarray(self.delta_n, float)
        self.v_bare = np.asarray(self.v_bare, float)
        self.cell = np.asarray(self.cell, float).reshape(3, 3)
        self.species = [str(s) for s in self.species]


@dataclass
class RadialEmbedding:
    """An all-electron impurity embedding (KKRimp): ΔV(r) on the radial mesh of every cluster atom.

    host: host label (e.g. ``"fcc-Cu"``); impurity: the defect species, joined (``"Fe"``, ``"Fe+Co"``).
    species, z: cluster atoms (symbols, nuclear charges); host_species, host_z: the host atoms they
    replace (z == host_z on host atoms). positions: (n, 3) Å, relative to the cluster centre.
    r: per atom, the radial mesh (Å) — log mesh to the muffin-tin radius, then the panel mesh of the
    cell; delta_v: per atom, ΔV of the stored spherical potentials *without* the nuclear −2Z/r term
    (VM2Z, eV); the full change of the potential is ``delta_v − 2 (z − host_z) e²/r`` (see
    :meth:`delta_v_total`). cell: host lattice vectors (3, 3) Å. converged, rms, iterations: state of
    the KKRimp self-consistency. provenance: the AiiDA nodes read.
    """

    host: str
    species: list[str]
    z: np.ndarray
    host_species: list[str]
    host_z: np.ndarray
    positions: np.ndarray
    r: list[np.ndarray]
    delta_v: list[np.ndarray]
    cell: np.ndarray = field(default_factory=lambda: np.eye(3))
    converged: bool = True
    rms: float = float("nan")
    iterations: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.species = [str(s) for s in self.species]
        self.host_species = [str(s) for s in self.host_species]
        self.z = np.asarray(self.z, float).reshape(-1)
        self.host_z = np.asarray(self.host_z, float).reshape(-1)
        self.positions = np.asarray(self.positions, float).reshape(-1, 3)
        self.r = [np.asarray(a, float).reshape(-1) for a in self.r]
        self.delta_v = [np.asarray(a, float).reshape(-1) for a in self.delta_v]
        self.cell = np.asarray(self.cell, float).reshape(3, 3)
        n = len(self.species)
        for name in ("z", "host_species", "host_z", "positions", "r", "delta_v"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RadialEmbedding.{name}: {len(getattr(self, name))} entries for {n} atoms")
        for k, (r, v) in enumerate(zip(self.r, self.delta_v, strict=True)):
            if len(r) != len(v):
                raise ValueError(f"RadialEmbedding atom {k}: {len(r)} mesh points but {len(v)} values")

    @property
    def defects(self) -> np.ndarray:
        """Indices of the cluster atoms whose nuclear charge differs from the host atom's."""
        return np.flatnonzero(np.abs(self.z - self.host_z) > 1e-6)

    @property
    def impurity(self) -> str:
        """The defects' species joined by "+" ("Fe", a pair "Fe+Co"), "host" for a host-in-host embedding."""
        return "+".join(self.species[i] for i in self.defects) or "host"

    @property
    def impurity_elements(self) -> set[str]:
        """The defects' species as a set (a held-out element leaves training with every record holding it)."""
        return {self.species[i] for i in self.defects}

    def delta_v_total(self, k: int) -> np.ndarray:
        """Full ΔV of atom ``k`` (eV): stored part plus the nuclear term −2 ΔZ e²/r (inf at r = 0 if ΔZ ≠ 0)."""
        return self.delta_v[k] + nuclear_term(self.r[k], self.z[k] - self.host_z[k])


#: e²/(4πε0) in eV·Å (Hartree · bohr): the nuclear term of ΔV is −ΔZ · COULOMB_EV_A / r.
COULOMB_EV_A = 14.399645


def nuclear_term(r: np.ndarray, dz: float) -> np.ndarray:
    """−ΔZ e²/r in eV for r in Å (−2ΔZ/r in Ry and bohr); −inf/+inf at r = 0 when ΔZ ≠ 0."""
    r = np.asarray(r, float)
    if dz == 0:
        return np.zeros_like(r)
    with np.errstate(divide="ignore"):
        return -dz * COULOMB_EV_A / r


@dataclass
class ExchangePair:
    """An exchange pair: the two magnetic species and positions, their environment, and J_ij.

    host: host name. species_i, species_j: the magnetic species; position_i, position_j: Å.
    environment_species, environment_positions: the other defects of the embedding (m, 3), Å
        (readers of real KKR results put the atoms within their cutoff here).
    cell: host lattice vectors (3, 3), Å; :meth:`host_sites` lists the host atoms near the pair.
    tensor: J_ij (3, 3), meV. provenance: as for :class:`ImpurityEmbedding`.
    """

    host: str
    species_i: str
    species_j: str
    position_i: np.ndarray
    position_j: np.ndarray
    tensor: np.ndarray
    environment_species: list[str] = field(default_factory=list)
    environment_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    cell: np.ndarray = field(default_factory=lambda: np.eye(3))
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position_i = np.asarray(self.position_i, float).reshape(3)
        self.position_j = np.asarray(self.position_j, float).reshape(3)
        self.tensor = np.asarray(self.tensor, float).reshape(3, 3)
        self.environment_positions = np.asarray(self.environment_positions, float).reshape(-1, 3)
        self.environment_species = [str(s) for s in self.environment_species]
        self.cell = np.asarray(self.cell, float).reshape(3, 3)

    @property
    def bond(self) -> np.ndarray:
        """Vector from i to j, Å."""
        return self.position_j - self.position_i

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(self.bond))

    @property
    def J(self) -> float:
        """Isotropic exchange Tr(J_ij)/3, meV (> 0 ferromagnetic)."""
        return float(decompose(self.tensor).J)

    @property
    def D(self) -> np.ndarray:
        """DMI vector (A_yz, A_zx, A_xy) of the antisymmetric part, meV."""
        return decompose(self.tensor).D

    @property
    def S(self) -> np.ndarray:
        """Symmetric traceless anisotropy, (3, 3) meV."""
        return decompose(self.tensor).S

    def host_sites(self, cutoff: float) -> np.ndarray:
        """Host atoms (one per cell of ``cell``) within ``cutoff`` Å of i or j, defect sites excluded."""
        inv = np.linalg.inv(self.cell)
        centre = (self.position_i + self.position_j) / 2
        reach = cutoff + self.distance / 2
        nmax = int(np.ceil(reach * np.abs(inv).sum(axis=0).max())) + 1
        g = np.arange(-nmax, nmax + 1)
        frac0 = np.round(centre @ inv)
        grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + frac0
        pts = grid @ self.cell
        near = (np.linalg.norm(pts - self.position_i, axis=1) <= cutoff + 1e-9) | (
            np.linalg.norm(pts - self.position_j, axis=1) <= cutoff + 1e-9)
        pts = pts[near]
        taken = np.vstack([self.position_i, self.position_j, self.environment_positions])
        free = np.min(np.linalg.norm(pts[:, None] - taken[None], axis=-1), axis=1) > 1e-6
        return pts[free]
