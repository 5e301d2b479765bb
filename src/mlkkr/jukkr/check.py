"""``mlkkr jukkr check``: JuKKR's own KKRhost regression cases, run with the installed ``kkr.x``.

The cases (``jukkr-2a47b06b-tests.tar.gz``, checked like the source: tarball SHA-256, else the mirror's
archive of the same commit with every case file compared) are ``test_01`` (fcc Au, 4 atoms in the cell,
lmax 2) and ``test_02`` (bcc Fe slab, magnetic). Each runs in a fresh folder from its ``inputcard``,
``potential`` and ``shapefun``; the outputs are read with masci-tools' ``parse_kkr_outputfile`` (the
parser aiida-kkr uses; the upstream runner ships a copy of it, which is not executed here).

Compared, per case:

* what JuKKR's upstream runner (``tests/KKRhost/tools/test_verify_results.py``, ``standard_verify``)
  compares: the output parses; the rms error of the first iteration is below its threshold (test_01
  5e-8, test_02 7e-8); the final rms below 1e-8; the charge neutrality within 1e-6;
* and the reference outputs shipped with each case (``ref/``): Fermi energy, total energy, valence and
  total charge per atom, spin moments per atom and in total, each within the tolerance of
  :data:`TOLERANCES` (the printed precision; test_02's E_F differs in the 9th digit with gfortran).

Exit status 0 only when every comparison holds.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlkkr import jukkr
from mlkkr.errors import ServiceError
from mlkkr.jukkr import source as jsource
from mlkkr.jukkr.build import Installation, find_installation
from mlkkr.jukkr.run import run_code

#: upstream's thresholds (standard_verify): rms of the first iteration, final rms, charge neutrality
UPSTREAM = {"test_01": (5e-8, 1e-8, 1e-6), "test_02": (7e-8, 1e-8, 1e-6)}
#: tolerances against the reference outputs (absolute; units of the output: Ry, e, μB)
TOLERANCES = {"fermi_energy": 1e-7, "total_energy_Ry": 1e-6, "charge_valence_states_per_atom": 1e-5,
              "total_charge_per_atom": 1e-5, "spin_moment_per_atom": 1e-4, "total_spin_moment": 1e-5}
_INPUTS = ("inputcard", "potential", "shapefun")


def parse_output(folder: Path) -> tuple[bool, list[str], dict[str, Any]]:
    """masci-tools' ``parse_kkr_outputfile`` on a KKRhost run folder (its chatter on stdout swallowed)."""
    from masci_tools.io.parsers.kkrparser_functions import parse_kkr_outputfile

    names = ("out_kkr", "output.0.txt", "output.000.txt", "out_timing.000.txt", "out_potential",
             "nonco_angle_out.dat")
    with contextlib.redirect_stdout(io.StringIO()):
        ok, messages, out = parse_kkr_outputfile({}, *(str(folder / n) for n in names))
    return bool(ok), list(messages), out


def _quantities(out: dict[str, Any]) -> dict[str, Any]:
    magnetism = out.get("magnetism_group") or {}
    values = {k: out.get(k) for k in ("fermi_energy", "total_energy_Ry", "charge_valence_states_per_atom",
                                       "total_charge_per_atom")}
    values["spin_moment_per_atom"] = magnetism.get("spin_moment_per_atom")
    values["total_spin_moment"] = magnetism.get("total_spin_moment")
    return {k: v for k, v in values.items() if v is not None}


def _row(quantity: str, value: Any, expected: Any, tolerance: float | None, ok: bool, kind: str) -> dict[str, Any]:
    return {"quantity": quantity, "kind": kind, "value": value, "expected": expected, "tolerance": tolerance,
            "ok": bool(ok)}


def check_case(name: str, case_dir: Path, kkr_x: Path, workdir: Path) -> dict[str, Any]:
    """Run one case in ``workdir/name`` and compare; returns the case's report."""
    run_dir = workdir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    for item in _INPUTS:
        shutil.copy(case_dir / item, run_dir / item)
    result = run_code(kkr_x, run_dir, timeout=900)
    rows: list[dict[str, Any]] = []
    if result.returncode != 0:
        rows.append(_row("exit status", result.returncode, 0, None, False, "run"))
        return {"case": name, "ok": False, "seconds": round(result.wall_seconds, 2), "checks": rows}
    ok, messages, out = parse_output(run_dir)
    rows.append(_row("output parses", ok, True, None, ok, "upstream"))
    rms_first, rms_end, neutrality = UPSTREAM[name]
    conv = out.get("convergence_group", {})
    first = (conv.get("rms_all_iterations") or [np.inf])[0]
    rows.append(_row("rms, first iteration", first, f"< {rms_first:g}", None, first < rms_first, "upstream"))
    final = conv.get("rms", np.inf)
    rows.append(_row("rms, final", final, f"< {rms_end:g}", None, final < rms_end, "upstream"))
    charge = conv.get("charge_neutrality", np.inf)
    rows.append(_row("charge neutrality", charge, f"|x| <= {neutrality:g}", None, abs(charge) <= neutrality,
                     "upstream"))
    _, _, ref = parse_output(case_dir / "ref")  # the reference folder lacks core-state output: numbers only
    mine, theirs = _quantities(out), _quantities(ref)
    for quantity, expected in theirs.items():
        tol = TOLERANCES[quantity]
        value = mine.get(quantity)
        same = value is not None and np.shape(value) == np.shape(expected) and \
            bool(np.all(np.abs(np.asarray(value, float) - np.asarray(expected, float)) <= tol))
        rows.append(_row(quantity, value, expected, tol, same, "reference"))
    return {"case": name, "ok": all(r["ok"] for r in rows), "seconds": round(result.wall_seconds, 2),
            "parser_messages": messages, "checks": rows}


def check(prefix: str | None = None, tests: str | None = None, keep: str | None = None,
          installation: Installation | None = None) -> dict[str, Any]:
    """Run every case of :data:`mlkkr.jukkr.TEST_CASES` with the installed ``kkr.x``; returns the report."""
    inst = installation or find_installation(prefix)
    if inst is None:
        raise ServiceError(f"no JuKKR build in {prefix or 'the default prefix'}: run `mlkkr jukkr build` first")
    problems = inst.problems()
    if problems:
        raise ServiceError("the JuKKR installation is broken: " + "; ".join(problems)
                           + " — run `mlkkr jukkr build --force`")
    kkr_x = inst.executable("kkrhost")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlkkr-jukkr-check-") as tmp:
        root = jsource.unpack(jsource.TESTS, tests, Path(tmp) / "src", progress=False)
        workdir = Path(keep).expanduser() if keep else Path(tmp) / "runs"
        workdir.mkdir(parents=True, exist_ok=True)
        cases = [check_case(name, root / rel, kkr_x, workdir) for name, rel in jukkr.TEST_CASES.items()]
    return {"ok": all(c["ok"] for c in cases), "kkr.x": str(kkr_x), "commit": jukkr.COMMIT,
            "blas": inst.manifest.get("blas"), "tests": jsource.describe(jsource.TESTS, tests),
            "seconds": round(time.monotonic() - t0, 2), "cases": cases}
