"""``mlkkr data from-archive``: exchange pairs of aiida-kkr Jij workflows in an AiiDA archive → HDF5.

AiiDA is imported only when the command runs, so ``mlkkr --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

from mlkkr.commands._common import emit, handle_errors, json_option


@click.command("from-archive")
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HDF5 file to write (schema mlkkr.exchange; replaced atomically).")
@click.option("--env-cutoff", default=6.0, show_default=True, type=float,
              help="Atoms of the crystal within this distance (Å) of i or j are stored as the pair's environment.")
@json_option
@handle_errors
def from_archive(archive: str, output: str, env_cutoff: float, as_json: bool) -> None:
    """Read the J_ij of every finished kkr_jij_wc workflow in ARCHIVE (an .aiida file) into OUTPUT.

    The archive is opened read-only (nothing is imported into your profile). Values are converted
    to mlkkr's convention: meV, J > 0 ferromagnetic, J = Tr/3, D = antisymmetric part (aiida-kkr's D / 2).
    """
    from pathlib import Path

    import numpy as np

    from mlkkr import __version__
    from mlkkr.aiida.readers_jij import read_jij_archive
    from mlkkr.data.h5io import file_sha256, write_exchange
    from mlkkr.errors import InputError

    out = Path(output)
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError("--output", output, reason=f"folder {str(out.parent)!r} does not exist")
    pairs, summary = read_jij_archive(archive, env_cutoff)
    params = {"source": "aiida-kkr archive", "archive": Path(archive).name, "archive_sha256": file_sha256(archive),
              "env_cutoff": env_cutoff, "workflows": summary["workflows"], "mlkkr_version": __version__,
              "command": "mlkkr data from-archive"}
    write_exchange(out, pairs, params)
    j = np.array([p.J for p in pairs])
    d = np.array([p.distance for p in pairs])
    shells: dict[str, Any] = {}
    for r in np.unique(d.round(3)):
        m = d.round(3) == r
        shells[f"{r:.3f}"] = {"pairs": int(m.sum()), "J_meV": float(j[m].mean())}
    result = {"output": str(out), "records": len(pairs), "workflows": len(summary["workflows"]),
              "tensor_parts": sorted({x for p in pairs for x in p.provenance.get("tensor_parts", [])}),
              "shells_angstrom": shells}
    emit(result, as_json, _human)


def _human(s: dict[str, Any]) -> str:
    lines = [f"wrote {s['records']} exchange pairs from {s['workflows']} workflow(s) to {s['output']} "
             f"(parts: {', '.join(s['tensor_parts'])})", f"{'shell/Å':>9} {'pairs':>6} {'J/meV':>10}"]
    for r, v in s["shells_angstrom"].items():
        lines.append(f"{r:>9} {v['pairs']:>6} {v['J_meV']:>10.3f}")
    return "\n".join(lines)
