"""``mlkkr data from-archive`` / ``from-group``: finished aiida-kkr results → mlkkr HDF5 datasets.

``--kind exchange``: J_ij of ``kkr_jij_wc`` → ``mlkkr.exchange``; ``--kind potential``: the last
KKRimp potential of ``kkr_imp_wc`` / ``kkr_imp_sub_wc`` → ΔV(r) records (``mlkkr.radial``);
``--kind auto`` (default): the one kind the source holds. Every workflow looked at and not used is
listed with the reason. AiiDA is imported only when a command runs, so ``mlkkr --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlkkr.commands._common import emit, handle_errors, json_option


def _options(f):
    f = click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                     help="HDF5 file to write (mlkkr.exchange or mlkkr.radial; replaced atomically).")(f)
    f = click.option("--kind", type=click.Choice(["auto", "exchange", "potential"]), default="auto",
                     show_default=True, help="exchange: J_ij of kkr_jij_wc; potential: KKRimp ΔV(r) of "
                                             "kkr_imp_wc / kkr_imp_sub_wc; auto: the kind present.")(f)
    f = click.option("--env-cutoff", default=6.0, show_default=True, type=float,
                     help="exchange: atoms of the crystal within this distance (Å) of i or j are the pair's "
                          "environment.")(f)
    f = click.option("--include-unconverged", is_flag=True,
                     help="potential: also read KKRimp potentials whose self-consistency did not converge "
                          "(flagged converged=false); exchange: also read J_ij whose KKRhost runs are more than "
                          "0.5 electron per cell from neutral (provenance charge_error).")(f)
    f = click.option("--host", "host_label", default=None,
                     help="potential: host label stored in the records [default: the host's formula].")(f)
    return json_option(f)


def _check_output(output: str) -> Path:
    from mlkkr.errors import InputError

    out = Path(output)
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError("--output", output, reason=f"folder {str(out.parent)!r} does not exist")
    return out


def _write(records: list[Any], report: dict[str, Any], out: Path, params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from mlkkr import __version__
    from mlkkr.data.h5io import write_exchange, write_radial

    params = {**params, "mlkkr_version": __version__, "workflows": report["read"]}
    result: dict[str, Any] = {"output": str(out), "kind": report["kind"], "records": len(records),
                              "workflows": len(report["read"]), "skipped": report["skipped"]}
    if report["kind"] == "exchange":
        write_exchange(out, records, params)
        j = np.array([p.J for p in records])
        d = np.array([p.distance for p in records])
        shells: dict[str, Any] = {}
        for r in np.unique(d.round(3)):
            m = d.round(3) == r
            shells[f"{r:.3f}"] = {"pairs": int(m.sum()), "J_meV": float(j[m].mean())}
        result["tensor_parts"] = sorted({x for p in records for x in p.provenance.get("tensor_parts", [])})
        result["shells_angstrom"] = shells
    else:
        write_radial(out, records, params)
        result["impurities"] = [r.impurity for r in records]
        result["atoms"] = [len(r.z) for r in records]
        result["converged"] = [r.converged for r in records]
    return result


@click.command("from-archive")
@click.argument("archive", type=click.Path(dir_okay=False))
@_options
@handle_errors
def from_archive(archive: str, output: str, kind: str, env_cutoff: float, include_unconverged: bool,
                 host_label: str | None, as_json: bool) -> None:
    """Read the finished aiida-kkr results in ARCHIVE (an .aiida file) into OUTPUT.

    The archive is opened read-only (nothing is imported into your profile). J_ij are converted to
    mlkkr's convention: meV, J > 0 ferromagnetic, J = Tr/3, D = antisymmetric part (aiida-kkr's D / 2);
    potentials are ΔV = V_imp − V_host of KKRimp's stored spherical potentials (eV, the nuclear −2Z/r
    excluded) on each cluster atom's radial mesh (Å).
    """
    from mlkkr.aiida.readers_results import read_archive
    from mlkkr.data.h5io import file_sha256

    out = _check_output(output)
    records, report = read_archive(archive, kind, env_cutoff=env_cutoff, include_unconverged=include_unconverged,
                                   host=host_label)
    params = {"source": "aiida-kkr archive", "archive": Path(archive).name, "archive_sha256": file_sha256(archive),
              "env_cutoff": env_cutoff, "command": "mlkkr data from-archive"}
    emit(_write(records, report, out, params), as_json, _human)


@click.command("from-group")
@click.argument("group")
@_options
@click.option("--profile", default=None, help="AiiDA profile [default: the default profile].")
@handle_errors
def from_group(group: str, output: str, kind: str, env_cutoff: float, include_unconverged: bool,
               host_label: str | None, as_json: bool, profile: str | None) -> None:
    """Read the finished aiida-kkr results of GROUP (e.g. an impurity series' group) into OUTPUT."""
    from mlkkr.aiida import readers_results
    from mlkkr.aiida.launch import load_user_profile

    out = _check_output(output)
    load_user_profile(profile)
    records, report = readers_results.read(readers_results.group_nodes(group), kind, env_cutoff=env_cutoff,
                                           include_unconverged=include_unconverged, host=host_label,
                                           where=f"group {group!r}")
    params = {"source": "aiida-kkr results in a group", "group": group, "env_cutoff": env_cutoff,
              "command": "mlkkr data from-group"}
    emit(_write(records, report, out, params), as_json, _human)


def _human(s: dict[str, Any]) -> str:
    lines = [f"wrote {s['records']} {s['kind']} record(s) from {s['workflows']} workflow(s) to {s['output']}"]
    if s["kind"] == "exchange":
        lines[0] += f" (parts: {', '.join(s['tensor_parts'])})"
        lines.append(f"{'shell/Å':>9} {'pairs':>6} {'J/meV':>10}")
        for r, v in s["shells_angstrom"].items():
            lines.append(f"{r:>9} {v['pairs']:>6} {v['J_meV']:>10.3f}")
    else:
        for imp, n, c in zip(s["impurities"], s["atoms"], s["converged"], strict=True):
            lines.append(f"  {imp}: {n} atoms{'' if c else ' (NOT converged)'}")
    for sk in s["skipped"]:
        lines.append(f"  skipped {sk['process']}<{sk['pk']}>: {sk['reason']}")
    return "\n".join(lines)
