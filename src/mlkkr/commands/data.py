"""``mlkkr data``: generate datasets with the built-in engine (more sources plug into this group)."""

from __future__ import annotations

import time
from typing import Any

import click

from mlkkr.cli import LazyGroup
from mlkkr.commands._common import emit, handle_errors, json_option
from mlkkr.commands.engine import check_output

#: Sub-commands registered lazily by other modules: name -> ("module:attribute", "one-line help").
DATA_COMMANDS: dict[str, tuple[str, str]] = {}


@click.group("data", cls=LazyGroup, lazy_commands=DATA_COMMANDS)
def data() -> None:
    """Build datasets (exchange pairs, impurity potentials) as HDF5 files."""


def _common(f):
    f = click.option("--n", "n", type=int, required=True, help="Number of records.")(f)
    f = click.option("--seed", type=int, required=True, help="Random seed (record r uses default_rng([seed, r])).")(f)
    f = click.option("--start", type=int, default=0, show_default=True,
                     help="Index of the first record: computes records START … START+N-1 of the seed's stream, "
                          "the same records (ids, values) as in one run of more records, whatever the batch.")(f)
    f = click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                     help="HDF5 file to write (replaced atomically; nothing is left on error).")(f)
    f = click.option("--host", default="ti", show_default=True, help="Host model: ti or metal.")(f)
    f = click.option("--kgrid", default=None, type=int, help="Base k points per direction [default: 24].")(f)
    f = click.option("--progress/--no-progress", default=True, show_default=True,
                     help="Show a progress bar on stderr.")(f)
    f = click.option("--cache/--no-cache", "use_cache", default=True, show_default=True,
                     help="Keep the host's Green-function tables in the on-disk cache ($MLKKR_CACHE_DIR, else "
                          "~/.cache/mlkkr/greens; MLKKR_NO_CACHE=1 also disables it). Results are identical.")(f)
    return json_option(f)


def _engine(host: str, kgrid: int | None, cache: bool):
    from mlkkr.greens import Engine, make_host

    return Engine(make_host(host), kgrid, cache=cache)


class _NoBar:
    """Stands in for a disabled progress bar (a job's --no-progress run does not import tqdm)."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


def _bar(total: int, enabled: bool, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="rec", leave=False)


def _host_tables(eng: Any) -> dict[str, Any]:
    """How the run got its host tables (cache hit, miss, off, none) and how long it took, for the summary."""
    return {"cache": eng.cache_status, "seconds": round(eng.table_seconds, 3)}


@data.command("exchange")
@_common
@click.option("--cutoff", default=3.0, show_default=True, help="Largest pair distance (lattice constants).")
@click.option("--env-radius", default=2.0, show_default=True,
              help="Other defects lie within this distance of i or j (lattice constants).")
@click.option("--max-others", default=3, show_default=True, help="At most this many other defects (0-3).")
@click.option("--n-others", default=None, type=int, help="Exactly this many other defects (0-3).")
@handle_errors
def exchange(n: int, seed: int, start: int, output: str, host: str, kgrid: int | None, progress: bool, use_cache: bool,
             as_json: bool, cutoff: float, env_radius: float, max_others: int, n_others: int | None) -> None:
    """Exchange tensors of random co-doped magnetic pairs (two 3d defects + 0-3 others)."""
    import numpy as np

    from mlkkr.data.builders import ExchangeSampler, build_exchange
    from mlkkr.data.h5io import write_exchange

    out = check_output(output)
    eng = _engine(host, kgrid, use_cache)
    sampler = ExchangeSampler(cutoff=cutoff, env_radius=env_radius, max_others=max_others, n_others=n_others)
    t0 = time.perf_counter()
    with _bar(n, progress and not as_json, "exchange pairs") as bar:
        records, params = build_exchange(eng, n, seed, sampler, progress=bar.update, start=start)
    elapsed = time.perf_counter() - t0
    write_exchange(out, records, {**params, "command": "mlkkr data exchange"})
    j = np.array([r.J for r in records])
    dnorm = np.array([np.linalg.norm(r.D) for r in records])
    summary: dict[str, Any] = {
        "output": str(out), "records": n, "start": start, "host": host, "seconds": round(elapsed, 3),
        "host_tables": _host_tables(eng), "pairs_per_second": round(n / elapsed, 1) if elapsed > 0 else None,
        "J_meV": {"min": float(j.min()), "max": float(j.max()), "mean_abs": float(np.abs(j).mean())},
        "D_norm_meV": {"max": float(dnorm.max()), "mean": float(dnorm.mean())},
        "ferromagnetic_fraction": float((j > 0).mean()),
    }
    emit(summary, as_json, _human_exchange)


def _human_exchange(s: dict[str, Any]) -> str:
    return "\n".join([
        f"{s['records']} exchange pairs ({s['host']} host) in {s['seconds']} s ({s['pairs_per_second']} pairs/s)",
        f"J: {s['J_meV']['min']:.3f} … {s['J_meV']['max']:.3f} meV (mean |J| {s['J_meV']['mean_abs']:.3f} meV, "
        f"{100 * s['ferromagnetic_fraction']:.0f}% ferromagnetic)",
        f"|D|: mean {s['D_norm_meV']['mean']:.3f} meV, max {s['D_norm_meV']['max']:.3f} meV",
        f"wrote {s['output']}",
    ])


@data.command("potential")
@_common
@click.option("--max-defects", default=4, show_default=True, help="Defects per embedding: 1 to this (≤ 4).")
@click.option("--box-radius", default=1.5, show_default=True,
              help="Defects lie within this distance of the first (lattice constants).")
@click.option("--radius", default=None, type=float, help="Screening region radius (lattice constants) [default: 2].")
@handle_errors
def potential(n: int, seed: int, start: int, output: str, host: str, kgrid: int | None, progress: bool, use_cache: bool,
              as_json: bool, max_defects: int, box_radius: float, radius: float | None) -> None:
    """Self-consistent impurity potentials ΔV of random clusters of 1-4 defects (12 species)."""
    import numpy as np

    from mlkkr.data.builders import EmbeddingSampler, build_embeddings
    from mlkkr.data.h5io import write_embeddings
    from mlkkr.greens.scf import make_scf_params

    out = check_output(output)
    eng = _engine(host, kgrid, use_cache)
    scf = make_scf_params(**({} if radius is None else {"radius": radius}))
    sampler = EmbeddingSampler(max_defects=max_defects, box_radius=box_radius)
    t0 = time.perf_counter()
    with _bar(n, progress and not as_json, "embeddings") as bar:
        records, params = build_embeddings(eng, n, seed, sampler, scf, progress=bar.update, start=start)
    elapsed = time.perf_counter() - t0
    write_embeddings(out, records, {**params, "command": "mlkkr data potential"})
    its = np.array([r.iterations for r in records])
    dv = np.concatenate([r.delta_v for r in records])
    summary: dict[str, Any] = {
        "output": str(out), "records": n, "start": start, "host": host, "seconds": round(elapsed, 3),
        "host_tables": _host_tables(eng),
        "grid_points": int(dv.size), "species": sorted({s for r in records for s in r.species}),
        "scf_iterations": {"mean": float(its.mean()), "max": int(its.max())},
        "delta_v_eV": {"min": float(dv.min()), "max": float(dv.max())},
    }
    emit(summary, as_json, _human_potential)


def _human_potential(s: dict[str, Any]) -> str:
    return "\n".join([
        f"{s['records']} embeddings ({s['host']} host, {s['grid_points']} grid points) in {s['seconds']} s",
        f"SCF iterations: mean {s['scf_iterations']['mean']:.1f}, max {s['scf_iterations']['max']}",
        f"ΔV: {s['delta_v_eV']['min']:.3f} … {s['delta_v_eV']['max']:.3f} eV; species: {', '.join(s['species'])}",
        f"wrote {s['output']}",
    ])


DATA_COMMANDS["from-archive"] = ("mlkkr.commands.data_kkr:from_archive",
                                 "J_ij or KKRimp ΔV(r) of the aiida-kkr results in an archive.")
DATA_COMMANDS["from-group"] = ("mlkkr.commands.data_kkr:from_group",
                               "J_ij or KKRimp ΔV(r) of the aiida-kkr results in a Group of the profile.")
