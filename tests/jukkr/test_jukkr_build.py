"""``mlkkr jukkr build``: a real build (voronoi alone: seconds) into a fresh prefix, idempotency, repair of
a damaged build, a killed build, and the errors for a wrong source, a missing compiler or BLAS, and a
foreign folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from mlkkr import jukkr
from mlkkr.jukkr.build import find_installation
from mlkkr.jukkr.source import file_sha256
from support import BIN

MLKKR = str(BIN / "mlkkr")


def mlkkr(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([MLKKR, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_build_installs_a_working_code_and_a_second_call_does_nothing(tmp_path, source_tarball):
    prefix = tmp_path / "jukkr"
    first = mlkkr("jukkr", "build", "--prefix", str(prefix), "--source", str(source_tarball), "--code", "voronoi",
                  "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["built"] is True and report["commit"] == jukkr.COMMIT
    assert report["source_tree_sha256"] == jukkr.SOURCE_TREE_SHA256 and report["blas"] in ("openblas", "reference")
    exe = prefix / "bin" / "voronoi.exe"
    assert oct(exe.stat().st_mode & 0o777) == "0o755" and file_sha256(exe) == report["executables"]["voronoi"]["sha256"]
    assert (prefix / "share" / "ElementDataBase" / "Cu29.pot").is_file()
    assert (prefix / "share" / "doc" / "LICENSE.md").read_text().startswith("MIT") or \
        "MIT" in (prefix / "share" / "doc" / "LICENSE.md").read_text()
    # voronoi runs: without an inputcard it stops at once, saying so
    run = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "inputcard" in (run.stdout + run.stderr).lower()
    stale = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".jukkr.") and p.is_dir())
    assert stale == [], "no staging or build folders left beside the prefix"

    t0 = time.monotonic()
    second = mlkkr("jukkr", "build", "--prefix", str(prefix), "--source", str(source_tarball), "--code", "voronoi")
    assert second.returncode == 0 and "nothing to do" in second.stdout
    assert time.monotonic() - t0 < 30, "an up-to-date build does no work"
    assert file_sha256(exe) == report["executables"]["voronoi"]["sha256"]

    # a damaged executable is noticed and rebuilt
    with open(exe, "ab") as handle:
        handle.write(b"\0")
    assert find_installation(prefix).problems() == [f"voronoi: {exe} differs from the build (SHA-256)"]
    info = mlkkr("jukkr", "info", "--prefix", str(prefix), "--json")
    assert info.returncode == 1 and json.loads(info.stdout)["problems"]
    third = mlkkr("jukkr", "build", "--prefix", str(prefix), "--source", str(source_tarball), "--code", "voronoi")
    assert third.returncode == 0 and "installed" in third.stdout
    assert find_installation(prefix).problems() == []


def test_a_killed_build_leaves_the_old_installation_and_nothing_half_made(tmp_path, source_tarball):
    prefix = tmp_path / "jukkr"
    assert mlkkr("jukkr", "build", "--prefix", str(prefix), "--source", str(source_tarball),
                 "--code", "voronoi").returncode == 0
    before = json.loads((prefix / "jukkr.json").read_text())
    proc = subprocess.Popen([MLKKR, "jukkr", "build", "--prefix", str(prefix), "--source", str(source_tarball),
                             "--code", "voronoi", "--force"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(tmp_path.glob(".jukkr.build-*/build-voronoi/CMakeFiles")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert json.loads((prefix / "jukkr.json").read_text()) == before, "the installed build is untouched"
    assert find_installation(prefix).problems() == []
    # the next build cleans what the killed one left
    again = mlkkr("jukkr", "build", "--prefix", str(prefix), "--source", str(source_tarball), "--code", "voronoi")
    assert again.returncode == 0
    assert not any(p for p in tmp_path.iterdir() if p.name.startswith(".jukkr.") and p.is_dir())


def test_a_wrong_source_is_refused_before_anything_is_unpacked(tmp_path, source_tarball):
    bad = tmp_path / "jukkr-src.tar.gz"
    data = bytearray(source_tarball.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    result = mlkkr("jukkr", "build", "--prefix", str(tmp_path / "p"), "--source", str(bad))
    assert result.returncode == 2
    assert "source" in result.stderr and "SHA-256" in result.stderr and jukkr.SOURCE_SHA256 in result.stderr
    assert not (tmp_path / "p").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".p.")] in ([], [".p.lock"])
    missing = mlkkr("jukkr", "build", "--prefix", str(tmp_path / "p"), "--source", str(tmp_path / "nope.tar.gz"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def _tool_dir(tmp_path: Path, *tools: str) -> Path:
    """A PATH folder with only ``tools`` of this machine (and python for the mlkkr script)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        os.symlink(shutil.which(tool), folder / tool)
    return folder


def test_a_missing_compiler_or_blas_is_named_with_what_to_install(tmp_path, source_tarball):
    folder = _tool_dir(tmp_path, "cmake", "make", "c++")
    no_fc = mlkkr("jukkr", "build", "--prefix", str(tmp_path / "p"), "--source", str(source_tarball),
                  env={"PATH": str(folder), "FC": ""})
    assert no_fc.returncode == 3
    assert "fortran (gfortran) not found" in no_fc.stderr and "apt-get install gfortran" in no_fc.stderr
    # a compiler that cannot find LAPACK (as on a machine without liblapack-dev)
    wrapper = tmp_path / "fake-fc"
    wrapper.write_text(f"#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -llapack ] && "
                       f"{{ echo '/usr/bin/ld: cannot find -llapack: No such file or directory' >&2; exit 1; }}; done\n"
                       f"exec {shutil.which('gfortran')} \"$@\"\n")
    wrapper.chmod(0o755)
    no_blas = mlkkr("jukkr", "build", "--prefix", str(tmp_path / "p"), "--source", str(source_tarball),
                    env={"FC": str(wrapper)})
    assert no_blas.returncode == 3
    assert "cannot link against lapack" in no_blas.stderr and "liblapack-dev" in no_blas.stderr
    assert not (tmp_path / "p").exists()


def test_a_folder_that_is_not_a_jukkr_build_is_not_overwritten(tmp_path, source_tarball):
    prefix = tmp_path / "home"
    prefix.mkdir()
    (prefix / "thesis.tex").write_text("precious")
    result = mlkkr("jukkr", "build", "--prefix", str(prefix), "--source", str(source_tarball))
    assert result.returncode == 2 and "prefix" in result.stderr and "not empty" in result.stderr
    assert (prefix / "thesis.tex").read_text() == "precious"
    bad_march = mlkkr("jukkr", "build", "--prefix", str(tmp_path / "q"), "--march", "native; rm -rf /")
    assert bad_march.returncode == 2 and "march" in bad_march.stderr


def test_the_platform_installation_is_intact(installation):
    """What `make install` built for the hub and its users: all three codes, as recorded."""
    assert installation.problems() == []
    assert set(installation.manifest["executables"]) == {"voronoi", "kkrhost", "kkrimp"}
    assert installation.manifest["commit"] == jukkr.COMMIT
    for code in ("voronoi", "kkrhost", "kkrimp"):
        assert os.access(installation.executable(code), os.X_OK)
