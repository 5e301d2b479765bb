"""``mlkkr jukkr check``: JuKKR's own regression cases with the platform's kkr.x, every number compared;
a result that differs from the reference fails the check (exit 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile

import pytest

from mlkkr import jukkr
from mlkkr.jukkr.check import check_case
from support import BIN


def test_check_passes_with_every_upstream_and_reference_number(installation):
    result = subprocess.run([str(BIN / "mlkkr"), "jukkr", "check", "--json"], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["commit"] == jukkr.COMMIT
    cases = {c["case"]: {r["quantity"]: r for r in c["checks"]} for c in report["cases"]}
    assert set(cases) == {"test_01", "test_02"}
    # the upstream runner's comparisons
    for case in cases.values():
        for quantity in ("output parses", "rms, first iteration", "rms, final", "charge neutrality"):
            assert case[quantity]["ok"] and case[quantity]["kind"] == "upstream"
    # the reference outputs (fcc Au: E_F and total energy to every printed digit)
    au, fe = cases["test_01"], cases["test_02"]
    assert au["fermi_energy"]["value"] == pytest.approx(0.7177218252, abs=1e-9)
    assert au["total_energy_Ry"]["value"] == pytest.approx(-152010.76195102, abs=1e-8)
    assert fe["fermi_energy"]["value"] == pytest.approx(0.6505608991, abs=1e-7)
    assert fe["spin_moment_per_atom"]["value"] == pytest.approx([0.0499, 3.1828, 3.1828, 0.0499], abs=1e-4)
    assert fe["total_spin_moment"]["value"] == pytest.approx(6.465389, abs=1e-5)
    assert all(r["ok"] for case in cases.values() for r in case.values())


def test_a_result_that_differs_from_the_reference_fails(installation, tmp_path, source_tarball):
    """The same run against a reference whose Fermi energy was changed in the 6th digit: not ok."""
    tests = source_tarball.with_name(jukkr.TESTS_TARBALL)
    with tarfile.open(tests) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    case = tmp_path / "src" / "jukkr-tests" / jukkr.TEST_CASES["test_01"]
    for name in ("out_kkr", "output.000.txt"):  # where KKRhost prints the new Fermi level
        ref = case / "ref" / name
        text = ref.read_text()
        assert "new E FERMI   0.7177218252" in text
        ref.write_text(text.replace("0.7177218252", "0.7177298252"))
    report = check_case("test_01", case, installation.executable("kkrhost"), tmp_path / "runs")
    rows = {r["quantity"]: r for r in report["checks"]}
    assert report["ok"] is False and rows["fermi_energy"]["ok"] is False
    assert rows["rms, final"]["ok"] and rows["total_energy_Ry"]["ok"], "only the changed number is flagged"


def test_a_broken_or_missing_installation_is_a_clear_error(tmp_path, installation):
    missing = subprocess.run([str(BIN / "mlkkr"), "jukkr", "check", "--prefix", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 3 and "run `mlkkr jukkr build` first" in missing.stderr
    copy = tmp_path / "copy"
    shutil.copytree(installation.prefix, copy)
    (copy / "bin" / "kkr.x").write_bytes(b"#!/bin/sh\nexit 0\n")
    broken = subprocess.run([str(BIN / "mlkkr"), "jukkr", "check", "--prefix", str(copy)], capture_output=True,
                            text=True, timeout=60)
    assert broken.returncode == 3 and "differs from the build" in broken.stderr
