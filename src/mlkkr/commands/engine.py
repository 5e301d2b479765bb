"""``mlkkr engine``: run the built-in model Green-function engine on an input file (TOML or YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlkkr.commands._common import emit, handle_errors, json_option
from mlkkr.errors import InputError

_OUT = click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
                    help="HDF5 file to write (replaced atomically; nothing is left on error).")
_CACHE = click.option("--cache/--no-cache", "use_cache", default=True, show_default=True,
                      help="Keep the host's Green-function tables in the on-disk cache ($MLKKR_CACHE_DIR, else "
                           "~/.cache/mlkkr/greens; MLKKR_NO_CACHE=1 also disables it). Results are identical.")


def check_output(output: str) -> Path:
    """Fail early, naming --output, if the target folder does not exist or the path is a folder."""
    path = Path(output)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError("--output", output, reason=f"folder {str(parent)!r} does not exist")
    if path.is_dir():
        raise InputError("--output", output, reason="is a folder; give a file name")
    return path


@click.group("engine")
def engine() -> None:
    """Run the model Green-function engine (hosts, embedding, screening, exchange tensors)."""


@engine.command("exchange")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@_OUT
@_CACHE
@json_option
@handle_errors
def exchange(input_file: str, output: str, use_cache: bool, as_json: bool) -> None:
    """Exchange tensors J_ij (meV) of the magnetic pairs of the cluster in INPUT."""
    from mlkkr.data.builders import exchange_records
    from mlkkr.data.h5io import write_exchange
    from mlkkr.greens.api import run_exchange
    from mlkkr.greens.inputs import load_input, parse_input

    out = check_output(output)
    spec = parse_input(load_input(input_file), "exchange", cache=use_cache)
    results, scr = run_exchange(spec.engine, spec.defects, spec.pairs, spec.scf if spec.screening else None)
    prov = {"source": "mlkkr.greens", **spec.parameters}
    records = exchange_records(spec.engine, spec.defects, results, prov)
    write_exchange(out, records, spec.parameters)
    rows = [{"i": r.i, "j": r.j, "species": [spec.defects[r.i].element, spec.defects[r.j].element],
             "distance_angstrom": round(p.distance, 6), "J_meV": p.J, "D_meV": p.D.tolist(),
             "tensor_meV": p.tensor.tolist()} for r, p in zip(results, records, strict=True)]
    summary: dict[str, Any] = {"output": str(out), "host": spec.engine.host.name, "pairs": rows,
                               "screening_iterations": None if scr is None else scr.iterations}
    emit(summary, as_json, _human_exchange)


def _human_exchange(s: dict[str, Any]) -> str:
    lines = [f"{'pair':>7}  {'species':<8} {'r (Å)':>8} {'J (meV)':>10} {'D (meV)':>28}"]
    for r in s["pairs"]:
        d = " ".join(f"{x:8.4f}" for x in r["D_meV"])
        lines.append(f"{r['i']:>3}-{r['j']:<3}  {'-'.join(r['species']):<8} {r['distance_angstrom']:8.3f} "
                     f"{r['J_meV']:10.4f} {d:>28}")
    lines.append(f"wrote {len(s['pairs'])} pair(s) to {s['output']}")
    return "\n".join(lines)


@engine.command("embed")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@_OUT
@_CACHE
@json_option
@handle_errors
def embed(input_file: str, output: str, use_cache: bool, as_json: bool) -> None:
    """Self-consistent ΔV (eV) and Δn on every site around the defect cluster in INPUT."""
    from mlkkr.data.builders import embedding_record
    from mlkkr.data.h5io import write_embeddings
    from mlkkr.greens.api import run_embedding
    from mlkkr.greens.inputs import load_input, parse_input

    out = check_output(output)
    spec = parse_input(load_input(input_file), "embed", cache=use_cache)
    res = run_embedding(spec.engine, spec.defects, spec.scf)
    prov = {"source": "mlkkr.greens", **spec.parameters}
    write_embeddings(out, [embedding_record(spec.engine, spec.defects, res, prov)], spec.parameters)
    summary = {"output": str(out), "host": spec.engine.host.name, "sites": len(res.sites),
               "iterations": res.iterations, "residual_eV": res.residual,
               "defects": [{"element": d.element, "position": list(d.site), "delta_v_eV": float(res.dv[k]),
                            "delta_n": float(res.dn[k])} for k, d in enumerate(spec.defects)],
               "net_charge": res.net_charge, "net_charge_bare": res.net_charge_bare}
    emit(summary, as_json, _human_embed)


def _human_embed(s: dict[str, Any]) -> str:
    lines = [f"converged in {s['iterations']} iterations (residual {s['residual_eV']:.1e} eV) on {s['sites']} sites"]
    for d in s["defects"]:
        lines.append(f"  {d['element']:<4} {str(d['position']):<12} ΔV = {d['delta_v_eV']:8.4f} eV  "
                     f"Δn = {d['delta_n']:8.4f}")
    lines.append(f"net displaced charge {s['net_charge']:.4f} e (bare potential: {s['net_charge_bare']:.4f} e)")
    lines.append(f"wrote {s['output']}")
    return "\n".join(lines)
