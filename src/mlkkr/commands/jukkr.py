"""``mlkkr jukkr build|check|info``: the JuKKR codes (voronoi, KKRhost, KKRimp) of this platform.

Examples::

    mlkkr jukkr build --source ../shared/jukkr/jukkr-2a47b06b-src.tar.gz
    mlkkr jukkr check --json
    mlkkr jukkr info --json

The work is done by :mod:`mlkkr.jukkr.build` and :mod:`mlkkr.jukkr.check`; this module only parses
options and prints.
"""

from __future__ import annotations

import sys

import click

from mlkkr.commands._common import emit, handle_errors, json_option

_prefix = click.option("--prefix", type=click.Path(file_okay=False), default=None,
                       help="Installation folder [env MLKKR_JUKKR_PREFIX; default: <this environment>/opt/jukkr].")


@click.group("jukkr")
def jukkr() -> None:
    """Build, check and describe the JuKKR codes (voronoi, KKRhost kkr.x, KKRimp kkrflex.exe)."""


@jukkr.command("build")
@_prefix
@click.option("--source", type=click.Path(dir_okay=False), default=None,
              help="The pinned source tarball [env MLKKR_JUKKR_SOURCE; default: download the pinned commit].")
@click.option("--march", default="native", show_default=True,
              help="gfortran -march: native for this machine, x86-64-v2 (or v3) for images that travel.")
@click.option("--code", "codes", multiple=True, type=click.Choice(["voronoi", "kkrhost", "kkrimp"]),
              help="Build only these codes (repeat the option) [default: all three].")
@click.option("--jobs", "-j", type=int, default=None, help="Parallel compile jobs [default: the CPU count].")
@click.option("--force", is_flag=True, help="Rebuild even when the installation is up to date.")
@json_option
@handle_errors
def build(prefix, source, march, codes, jobs, force, as_json):
    """Build voronoi, KKRhost and KKRimp from the pinned source into the prefix (idempotent)."""
    from mlkkr.jukkr.build import BuildOptions
    from mlkkr.jukkr.build import build as run_build

    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    options = BuildOptions(march=march, codes=tuple(codes) or BuildOptions.codes)
    report = run_build(prefix, source, options, jobs=jobs, force=force, progress=not as_json, say=say)
    if as_json:
        emit(report, True)


def _check_human(report) -> str:
    lines = []
    for case in report["cases"]:
        lines.append(f"{'✔' if case['ok'] else '✘'} {case['case']} ({case['seconds']:.1f} s)")
        for row in case["checks"]:
            mark = "ok " if row["ok"] else "BAD"
            tol = f" ± {row['tolerance']:g}" if row["tolerance"] is not None else ""
            lines.append(f"    {mark} {row['quantity']:<32} {row['value']}  (expected {row['expected']}{tol})")
    lines.append(("JuKKR check passed" if report["ok"] else "JuKKR check FAILED") + f": {report['kkr.x']}")
    return "\n".join(lines)


@jukkr.command("check")
@_prefix
@click.option("--tests", type=click.Path(dir_okay=False), default=None,
              help="The pinned regression-case tarball [env MLKKR_JUKKR_TESTS; default: beside the source "
                   "tarball, else download the pinned commit].")
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="Keep the run folders here.")
@json_option
@handle_errors
def check(prefix, tests, keep, as_json):
    """Run JuKKR's own regression cases with the built kkr.x; exit 0 only when every number matches."""
    from mlkkr.jukkr.check import check as run_check

    report = run_check(prefix, tests, keep)
    emit(report, as_json, _check_human)
    sys.exit(0 if report["ok"] else 1)


@jukkr.command("info")
@_prefix
@json_option
@handle_errors
def info(prefix, as_json):
    """Where the codes are, how they were built; exit 1 when there is no (intact) installation."""
    from mlkkr.jukkr.build import default_prefix, find_installation

    inst = find_installation(prefix)
    if inst is None:
        emit({"installed": False, "prefix": str(prefix or default_prefix())}, as_json,
             lambda d: f"no JuKKR build in {d['prefix']}: run `mlkkr jukkr build`")
        sys.exit(1)
    problems = inst.problems()
    data = {"installed": True, "prefix": str(inst.prefix), "problems": problems,
            "executables": {c: str(inst.executable(c)) for c in inst.manifest.get("executables", {})},
            **{k: inst.manifest.get(k) for k in ("commit", "blas", "compiler", "fortran_flags", "built_at")}}
    emit(data, as_json)
    sys.exit(1 if problems else 0)
