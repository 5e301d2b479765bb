"""Dataset builders: random co-doping configurations run through the engine.

* Exchange pairs: two magnetic defects from the 3d series (V … Ni), j at a random lattice vector
  of length ≤ ``cutoff`` from i (uniform over the lattice vectors), plus 0 – ``max_others`` other
  defects (non-magnetic dopants or vacancies) on distinct random sites within ``env_radius`` of i or
  j. Tensors with the bare defect potentials (force theorem), batched: one gather of G0 blocks and
  one ``numpy.linalg.solve`` per batch of equal-size clusters.
* Embeddings: 1 – 4 defects of any of the 12 species of the element table on distinct random sites
  within ``box_radius`` of the origin (the first at the origin), screened self-consistently.

Sample r of a run with seed S comes from ``numpy.random.default_rng([S, r])`` (its own stream,
``SeedSequence([S, r])``), so record r is a pure function of (seed, r) and the sampler, engine
and host parameters stored with it: it can be regenerated alone, and a dataset can be computed in
batches of any size — ``start=K, n=N`` gives records K … K+N−1, bit for bit the same records (same
sample indices, same provenance, hence the same record ids) as rows K … K+N−1 of one run of
``n ≥ K+N`` records. The tensor of a record does not depend on which other records share its
batched solve (each cluster is solved on its own; a test checks it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlkkr.data.schema import ExchangePair, ImpurityEmbedding
from mlkkr.errors import InputError
from mlkkr.greens import ENGINE_VERSION
from mlkkr.greens.defects import ELEMENTS, MAGNETIC, NONMAGNETIC, Defect
from mlkkr.greens.engine import Engine
from mlkkr.greens.exchange import exchange_tensor_batch
from mlkkr.greens.scf import ScfParams, screen

Progress = Callable[[int], None] | None


@functools.lru_cache(maxsize=32)
def _lattice_ball(radius: float, exclude_origin: bool = True) -> np.ndarray:
    """Integer vectors of length ≤ radius (read-only, cached)."""
    r = int(np.floor(radius))
    g = np.arange(-r, r + 1)
    v = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    d2 = np.einsum("ij,ij->i", v, v)
    keep = d2 <= radius**2 + 1e-9
    if exclude_origin:
        keep &= d2 > 0
    out = v[keep]
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class ExchangeSampler:
    """Sampler of exchange configurations (lengths in lattice units).

    ``n_others`` fixes the number of other defects (else uniform in 0 … ``max_others``).
    """

    cutoff: float = 3.0
    env_radius: float = 2.0
    max_others: int = 3
    n_others: int | None = None

    def validate(self, engine: Engine) -> None:
        if not 1.0 <= self.cutoff <= 8.0:
            raise InputError("cutoff", self.cutoff, allowed="a distance from 1 to 8 lattice constants")
        if not 1.0 <= self.env_radius <= 4.0:
            raise InputError("env_radius", self.env_radius, allowed="a distance from 1 to 4 lattice constants")
        if not 0 <= self.max_others <= 3:
            raise InputError("max_others", self.max_others, allowed="0, 1, 2 or 3")
        if self.n_others is not None and not 0 <= self.n_others <= 3:
            raise InputError("n_others", self.n_others, allowed="0, 1, 2 or 3")
        span = self.cutoff + 2 * self.env_radius
        if 2 * span >= engine.n:
            raise InputError("cutoff", self.cutoff, reason=f"clusters up to {span:.1f} lattice constants wide do "
                             f"not fit the k-grid n = {engine.n} (need n > {2 * span:.0f})")

    def sample(self, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        """One configuration: species (pair first) and integer sites (n, 3), i at the origin."""
        bonds = _lattice_ball(self.cutoff)
        d = bonds[rng.integers(len(bonds))]
        species = [MAGNETIC[i] for i in rng.integers(len(MAGNETIC), size=2)]
        k = self.n_others if self.n_others is not None else int(rng.integers(0, self.max_others + 1))
        sites = [np.zeros(3, int), d]
        if k:
            ball = _lattice_ball(self.env_radius)
            shifted = ball + d
            seen = {tuple(v) for v in ball}
            extra = [v for v in shifted if tuple(v) not in seen]
            cand = np.concatenate([ball, np.array(extra, int).reshape(-1, 3)])
            cand = cand[np.any(cand != 0, axis=1) & np.any(cand != d, axis=1)]  # not on i or j
            pick = rng.choice(len(cand), size=k, replace=False)
            sites += list(cand[np.sort(pick)])
            species += [NONMAGNETIC[i] for i in rng.integers(len(NONMAGNETIC), size=k)]
        return species, np.array(sites, int)


@dataclass(frozen=True)
class EmbeddingSampler:
    """Sampler of embeddings: 1 … ``max_defects`` defects within ``box_radius`` (lattice units)."""

    min_defects: int = 1
    max_defects: int = 4
    box_radius: float = 1.5

    def validate(self, engine: Engine, scf: ScfParams) -> None:
        if not 1 <= self.min_defects <= self.max_defects <= 4:
            raise InputError("max_defects", self.max_defects, allowed="1 <= min_defects <= max_defects <= 4")
        if not 1.0 <= self.box_radius <= 3.0:
            raise InputError("box_radius", self.box_radius, allowed="a distance from 1 to 3 lattice constants")
        span = 2 * self.box_radius + 2 * scf.radius
        if 2 * span >= engine.n:
            raise InputError("box_radius", self.box_radius,
                             reason=f"regions up to {span:.1f} lattice constants wide do not fit the k-grid "
                                    f"n = {engine.n}")

    def sample(self, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        k = int(rng.integers(self.min_defects, self.max_defects + 1))
        ball = _lattice_ball(self.box_radius)
        pick = rng.choice(len(ball), size=k - 1, replace=False)
        sites = np.concatenate([np.zeros((1, 3), int), ball[np.sort(pick)]]).astype(int)
        species = [str(rng.choice(list(ELEMENTS))) for _ in range(k)]
        return species, sites


def _cell(engine: Engine) -> np.ndarray:
    return engine.host.lattice_constant * np.eye(3)


#: Run parameters that say which records a run computed, not how a record was made: left out of each
#: record's provenance, so a record (and its id) is the same whichever batch computed it.
BATCH_KEYS = ("n", "start")


def run_parameters(engine: Engine, sampler: Any, seed: int, n: int, start: int = 0, **extra: Any) -> dict[str, Any]:
    """Every parameter of a dataset run (stored in the file; all but :data:`BATCH_KEYS` in each record)."""
    return {"source": "mlkkr.greens", "engine_version": ENGINE_VERSION, **engine.provenance(),
            "sampler": {"kind": type(sampler).__name__, **asdict(sampler)}, "seed": int(seed), "n": int(n),
            "start": int(start), **extra}


def record_provenance(params: dict[str, Any]) -> dict[str, Any]:
    """The provenance shared by every record of a run: its parameters without :data:`BATCH_KEYS`."""
    return {k: v for k, v in params.items() if k not in BATCH_KEYS}


def build_exchange(engine: Engine, n: int, seed: int, sampler: ExchangeSampler | None = None,
                   progress: Progress = None, batch: int = 32, start: int = 0
                   ) -> tuple[list[ExchangePair], dict[str, Any]]:
    """Exchange pairs ``start`` … ``start + n − 1`` of the seed's stream of random co-doping configurations.

    Returns (records, run parameters). Record r depends only on (seed, r), the sampler and the engine.
    """
    sampler = sampler if sampler is not None else ExchangeSampler()
    _check_n_seed(n, seed, start)
    sampler.validate(engine)
    engine.check_potentials(list(ELEMENTS))
    params = run_parameters(engine, sampler, seed, n, start)
    prov = record_provenance(params)
    configs = [sampler.sample(np.random.default_rng([seed, start + r])) for r in range(n)]
    tensors = np.empty((n, 3, 3))
    by_size: dict[int, list[int]] = {}
    for r, (sp, _) in enumerate(configs):
        by_size.setdefault(len(sp), []).append(r)
    for size in sorted(by_size):
        idx = by_size[size]
        for s in range(0, len(idx), batch):
            chunk = idx[s:s + batch]
            sites = np.stack([configs[r][1] for r in chunk])
            species = np.array([configs[r][0] for r in chunk])
            tensors[chunk] = exchange_tensor_batch(engine, sites, species)
            if progress is not None:
                progress(len(chunk))
    a = engine.host.lattice_constant
    out = []
    for r, (sp, sites) in enumerate(configs):
        out.append(ExchangePair(host=engine.host.name, species_i=sp[0], species_j=sp[1], position_i=sites[0] * a,
                                position_j=sites[1] * a, tensor=tensors[r], environment_species=sp[2:],
                                environment_positions=sites[2:] * a, cell=_cell(engine),
                                provenance={**prov, "sample_index": start + r}))
    return out, params


def build_embeddings(engine: Engine, n: int, seed: int, sampler: EmbeddingSampler | None = None,
                     scf: ScfParams | None = None, progress: Progress = None, start: int = 0
                     ) -> tuple[list[ImpurityEmbedding], dict[str, Any]]:
    """Screened embeddings ``start`` … ``start + n − 1`` of the seed's stream of random defect clusters.

    Returns (records, run parameters). Record r depends only on (seed, r), the sampler, SCF and engine.
    """
    sampler = sampler if sampler is not None else EmbeddingSampler()
    scf = scf if scf is not None else ScfParams()
    _check_n_seed(n, seed, start)
    sampler.validate(engine, scf)
    params = run_parameters(engine, sampler, seed, n, start, scf=scf.to_dict())
    prov = record_provenance(params)
    out = []
    for r in range(start, start + n):
        species, sites = sampler.sample(np.random.default_rng([seed, r]))
        defects = [Defect(s, tuple(int(x) for x in p)) for s, p in zip(species, sites, strict=True)]
        res = screen(engine, defects, scf)
        out.append(embedding_record(engine, defects, res, {**prov, "sample_index": r}))
        if progress is not None:
            progress(1)
    return out, params


def embedding_record(engine: Engine, defects: list[Defect], res: Any, provenance: dict[str, Any]) -> ImpurityEmbedding:
    """An :class:`ImpurityEmbedding` (Å, eV) from a screening result of the engine."""
    a = engine.host.lattice_constant
    return ImpurityEmbedding(host=engine.host.name, species=[d.element for d in defects],
                             positions=np.array([d.site for d in defects]) * a, grid=res.sites * a,
                             delta_v=res.dv, delta_n=res.dn, v_bare=res.v_bare, cell=_cell(engine),
                             converged=True, iterations=res.iterations, provenance=provenance)


def _check_n_seed(n: int, seed: int, start: int = 0) -> None:
    for name, value, low in (("n", n, 1), ("seed", seed, 0), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InputError(name, value, allowed=f"an integer >= {low}")


def exchange_records(engine: Engine, defects: list[Defect], results: list[Any],
                     provenance: dict[str, Any]) -> list[ExchangePair]:
    """:class:`ExchangePair` records (Å, meV) from :func:`mlkkr.greens.run_exchange` results."""
    a = engine.host.lattice_constant
    out = []
    for res in results:
        env = [k for k in range(len(defects)) if k not in (res.i, res.j)]
        out.append(ExchangePair(host=engine.host.name, species_i=defects[res.i].element,
                                species_j=defects[res.j].element, position_i=np.array(defects[res.i].site) * a,
                                position_j=np.array(defects[res.j].site) * a, tensor=res.tensor,
                                environment_species=[defects[k].element for k in env],
                                environment_positions=np.array([defects[k].site for k in env]).reshape(-1, 3) * a,
                                cell=_cell(engine), provenance={**provenance, "pair": [res.i, res.j]}))
    return out
