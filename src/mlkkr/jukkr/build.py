"""``mlkkr jukkr build``: voronoi, KKRhost and KKRimp from the pinned source, into a shared prefix.

What it does, in order (every step says what is missing when it cannot go on):

1. the tool chain: a Fortran compiler (``$FC`` or ``gfortran``), ``cmake``, ``make``, and LAPACK/BLAS
   that a Fortran program links against (a two-line program is linked to find out);
2. the source (:mod:`mlkkr.jukkr.source`): a checked local tarball or the mirror's archive, every built
   file compared with the pinned commit;
3. one CMake build folder per code, as JuKKR's own ``install.py`` does (``-DENABLE_MPI=OFF``, only that
   code's ``COMPILE_*`` switch on), JuKKR's release flags for gfortran (``-Ofast -fbacktrace``) with
   ``-march`` chosen by :class:`BuildOptions` (``native`` for this machine; a portable level such as
   ``x86-64-v2`` for images that travel);
4. the install: ``bin/`` (``voronoi.exe``, ``kkr.x``, ``kkrflex.exe``), ``share/ElementDataBase`` (voronoi's
   starting potentials), ``share/doc`` (licence, citation) and ``jukkr.json`` (the manifest: commit, tree
   checksum, options, compiler, the BLAS/LAPACK the codes load, each executable's SHA-256) are staged
   beside the prefix and moved into place in one rename: a killed build leaves no half-made prefix.

BLAS/LAPACK: the codes link against ``libblas.so.3``/``liblapack.so.3``, which Debian's alternatives
resolve to OpenBLAS when ``libopenblas0-serial`` is installed (kkr.x 2.1× faster per iteration than the
reference BLAS here, identical results; benchmarks/bench_jukkr.py measures it) and to the reference
BLAS otherwise. The manifest records which one.

Idempotent: when the prefix holds a build of the same commit, tree and options whose executables still
have their recorded checksums, nothing is done. Builds of one prefix are serialised by a lock file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlkkr import jukkr
from mlkkr.errors import InputError, ServiceError
from mlkkr.jukkr import source as jsource

MANIFEST = "jukkr.json"
MANIFEST_FORMAT = 1
_MARCH = re.compile(r"^[a-z0-9][a-z0-9_.+-]{0,31}$")
INSTALL_HINT = ("on Debian/Ubuntu: apt-get install gfortran g++ cmake make liblapack-dev libblas-dev "
                "libopenblas0-serial")


def default_prefix() -> Path:
    """``$MLKKR_JUKKR_PREFIX``, else ``<this Python environment>/opt/jukkr`` (shared by the hub and its users)."""
    env = os.environ.get("MLKKR_JUKKR_PREFIX")
    return Path(env).expanduser() if env else Path(sys.prefix) / "opt" / "jukkr"


@dataclass(frozen=True)
class BuildOptions:
    """How the codes are compiled. ``march``: gfortran's ``-march`` (``native``: this machine's CPU)."""

    march: str = "native"
    codes: tuple[str, ...] = tuple(jukkr.CODES)

    def check(self) -> None:
        if not _MARCH.fullmatch(self.march or ""):
            raise InputError("march", self.march, allowed="a gcc -march value such as native, x86-64-v2, x86-64-v3")
        unknown = [c for c in self.codes if c not in jukkr.CODES]
        if unknown or not self.codes:
            raise InputError("codes", list(self.codes), allowed=list(jukkr.CODES))

    @property
    def fortran_flags(self) -> str:
        return f"-Ofast -march={self.march} -fbacktrace"


@dataclass
class Installation:
    """A built prefix, as its manifest describes it."""

    prefix: Path
    manifest: dict[str, Any]

    def executable(self, code: str) -> Path:
        return self.prefix / "bin" / jukkr.CODES[code][0]

    @property
    def element_database(self) -> Path:
        return self.prefix / "share" / "ElementDataBase"

    def problems(self) -> list[str]:
        """What is wrong with the installed files (empty: all there, with their recorded checksums)."""
        out = []
        for code, info in self.manifest.get("executables", {}).items():
            path = self.prefix / info["path"]
            if not path.is_file():
                out.append(f"{code}: {path} is missing")
            elif not os.access(path, os.X_OK):
                out.append(f"{code}: {path} is not executable")
            elif jsource.file_sha256(path) != info["sha256"]:
                out.append(f"{code}: {path} differs from the build (SHA-256)")
        if not (self.element_database / "Cu29.pot").is_file():
            out.append(f"voronoi's ElementDataBase is missing in {self.element_database}")
        return out

    def matches(self, options: BuildOptions) -> bool:
        m = self.manifest
        return (m.get("format") == MANIFEST_FORMAT and m.get("commit") == jukkr.COMMIT
                and m.get("source_tree_sha256") == jukkr.SOURCE_TREE_SHA256
                and m.get("options", {}).get("march") == options.march
                and set(m.get("executables", {})) >= set(options.codes))


def find_installation(prefix: str | os.PathLike | None = None) -> Installation | None:
    """The installation in ``prefix`` (default :func:`default_prefix`), or None when there is none."""
    root = Path(prefix).expanduser() if prefix else default_prefix()
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return Installation(root.resolve(), manifest) if isinstance(manifest, dict) else None


# ------------------------------------------------------------------------------------------ tool chain


@dataclass
class Toolchain:
    fortran: str
    cmake: str
    make: str
    fortran_version: str = ""
    notes: list[str] = field(default_factory=list)


_LINK_TEST = """program t
  complex(kind=8) :: a(2,2)
  integer :: ipiv(2), info
  a = reshape([(2d0,0d0),(1d0,0d0),(1d0,0d0),(3d0,0d0)], [2,2])
  call zgetrf(2, 2, a, 2, ipiv, info)
  call zgemm('N', 'N', 2, 2, 2, (1d0,0d0), a, 2, a, 2, (0d0,0d0), a, 2)
end program t
"""


def find_toolchain() -> Toolchain:
    """The compiler and tools, and a proof that LAPACK/BLAS link; ServiceError naming what to install."""
    fc = os.environ.get("FC") or "gfortran"
    cxx = os.environ.get("CXX") or "c++"  # JuKKR's CMake project enables C++ as well
    tools = (("fortran", fc), ("C++ compiler", cxx), ("cmake", "cmake"), ("make", "make"))
    found = {name: shutil.which(cmd) for name, cmd in tools}
    missing = [f"{name} ({cmd})" for name, cmd in tools if found[name] is None]
    if missing:
        raise ServiceError(f"cannot build JuKKR: {', '.join(missing)} not found on PATH; {INSTALL_HINT}")
    chain = Toolchain(found["fortran"], found["cmake"], found["make"])
    version = subprocess.run([chain.fortran, "--version"], capture_output=True, text=True, timeout=30)
    chain.fortran_version = (version.stdout.splitlines() or ["?"])[0]
    if "GNU Fortran" not in chain.fortran_version:
        raise ServiceError(f"cannot build JuKKR with {chain.fortran} ({chain.fortran_version}): mlkkr builds it "
                           f"with gfortran; {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="mlkkr-linktest-") as tmp:
        (Path(tmp) / "t.f90").write_text(_LINK_TEST)
        link = subprocess.run([chain.fortran, "t.f90", "-o", "t", "-llapack", "-lblas"], cwd=tmp,
                              capture_output=True, text=True, timeout=120)
    if link.returncode != 0:
        missing = [lib for lib in ("lapack", "blas") if f"-l{lib}" in link.stderr]
        raise ServiceError(f"cannot build JuKKR: {chain.fortran} cannot link against "
                           f"{' and '.join(missing) or 'LAPACK/BLAS'} ({link.stderr.strip().splitlines()[-1:]}); "
                           f"{INSTALL_HINT}")
    return chain


# ------------------------------------------------------------------------------------------ building


@contextlib.contextmanager
def _prefix_lock(prefix: Path) -> Iterator[None]:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f".{prefix.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clean_stale(prefix: Path) -> None:
    """Staging and build folders of an earlier, killed build (only ours: ``.<name>.build-*`` etc.)."""
    for path in prefix.parent.glob(f".{prefix.name}.*-*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


_PERCENT = re.compile(r"^\[\s*(\d+)%\]")


def _run_logged(cmd: list[str], cwd: Path, log: Path, on_percent: Callable[[int], None] | None = None,
                env: dict[str, str] | None = None) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            match = _PERCENT.match(line)
            if match and on_percent is not None:
                on_percent(int(match.group(1)))
        code = proc.wait()
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise ServiceError(f"JuKKR build step failed ({' '.join(cmd[:2])} … exit {code}); log {log}:\n{tail}")


def _build_code(code: str, src: Path, build_dir: Path, chain: Toolchain, options: BuildOptions, jobs: int,
                log: Path, progress: bool) -> Path:
    from tqdm import tqdm

    exe, switch, _ = jukkr.CODES[code]
    build_dir.mkdir(parents=True)
    switches = [f"-D{s}={'ON' if s == switch else 'OFF'}" for _, s, _ in jukkr.CODES.values()]
    env = dict(os.environ, FC=chain.fortran)
    cmake = [chain.cmake, str(src), "-DENABLE_MPI=OFF", "-DENABLE_OMP=OFF", *switches,
             "-DCMAKE_BUILD_TYPE=MlkkrRelease", f"-DCMAKE_Fortran_FLAGS_MLKKRRELEASE={options.fortran_flags}"]
    with tqdm(total=100, desc=f"build {code:<8}", unit="%", disable=not progress, leave=True) as bar:
        _run_logged(cmake, build_dir, log, env=env)

        def advance(percent: int) -> None:
            bar.update(max(0, percent - bar.n))

        _run_logged([chain.make, f"-j{jobs}"], build_dir, log, advance, env=env)
        bar.update(100 - bar.n)
    built = build_dir / exe
    if not built.is_file():
        raise ServiceError(f"the JuKKR build of {code} made no {exe}; log {log}")
    return built


def _blas_libraries(executable: Path) -> list[str]:
    """The BLAS/LAPACK libraries ``executable`` loads (``ldd``), e.g. ``libblas.so.3 => …/openblas-serial/…``."""
    try:
        out = subprocess.run(["ldd", str(executable)], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return []
    return [" ".join(line.split()[:3]) for line in out.splitlines() if re.search(r"blas|lapack", line)]


def blas_flavour(libraries: list[str]) -> str:
    """``openblas`` or ``reference`` (what libblas.so.3 resolves to)."""
    blas = [line for line in libraries if line.startswith("libblas")]
    target = os.path.realpath(blas[0].split("=>")[-1].strip()) if blas and "=>" in blas[0] else ""
    return "openblas" if "openblas" in target else "reference" if target else "unknown"


def build(prefix: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
          options: BuildOptions | None = None, jobs: int | None = None, force: bool = False,
          progress: bool = True, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build and install JuKKR into ``prefix``; returns a report (``built`` False when it was up to date)."""
    options = options or BuildOptions()
    options.check()
    if jobs is not None and (isinstance(jobs, bool) or not 1 <= int(jobs) <= 256):
        raise InputError("jobs", jobs, allowed="1 to 256 parallel compile jobs")
    jobs = int(jobs or os.cpu_count() or 1)
    root = (Path(prefix).expanduser() if prefix else default_prefix()).absolute()
    if root.exists() and not root.is_dir():
        raise InputError("prefix", str(root), reason="exists and is not a folder")
    with _prefix_lock(root):
        _clean_stale(root)  # under the lock no other build runs: what is there was left by a killed one
        current = find_installation(root)
        if current is not None and not force and current.matches(options) and not current.problems():
            say(f"JuKKR {jukkr.SHORT} is up to date in {root} (nothing to do)")
            return {"built": False, "prefix": str(root), **current.manifest}
        if root.exists() and current is None and any(root.iterdir()):
            raise InputError("prefix", str(root), reason="the folder is not empty and holds no JuKKR build of "
                             "mlkkr (no jukkr.json): choose an empty or new folder")
        chain = find_toolchain()
        work = Path(tempfile.mkdtemp(prefix=f".{root.name}.build-", dir=root.parent))
        stage = Path(tempfile.mkdtemp(prefix=f".{root.name}.stage-", dir=root.parent))
        try:
            say(f"JuKKR {jukkr.SHORT}: source {jsource.describe(jsource.SOURCE, source)}")
            src = jsource.unpack(jsource.SOURCE, source, work, progress)
            say(f"source verified: {jukkr.SOURCE_FILES} files, tree SHA-256 {jukkr.SOURCE_TREE_SHA256[:16]}…")
            log = stage / "build.log"
            seconds: dict[str, float] = {}
            executables: dict[str, dict[str, str]] = {}
            (stage / "bin").mkdir()
            for code in options.codes:
                t0 = time.monotonic()
                built = _build_code(code, src, work / f"build-{code}", chain, options, jobs, log, progress)
                seconds[code] = round(time.monotonic() - t0, 1)
                target = stage / "bin" / built.name
                shutil.copy2(built, target)
                target.chmod(0o755)
                executables[code] = {"path": f"bin/{built.name}", "sha256": jsource.file_sha256(target)}
            (stage / "share" / "doc").mkdir(parents=True)
            shutil.copytree(src / "ElementDataBase", stage / "share" / "ElementDataBase")
            for name in ("LICENSE.md", "CITATION.cff"):
                shutil.copy2(src / name, stage / "share" / "doc" / name)
            libs = _blas_libraries(stage / executables[options.codes[0]]["path"])
            manifest = {
                "format": MANIFEST_FORMAT, "commit": jukkr.COMMIT, "source_tree_sha256": jukkr.SOURCE_TREE_SHA256,
                "source": jsource.describe(jsource.SOURCE, source), "options": asdict(options),
                "fortran_flags": options.fortran_flags, "compiler": chain.fortran_version,
                "blas": blas_flavour(libs), "libraries": libs, "executables": executables,
                "element_database": "share/ElementDataBase", "build_seconds": seconds, "jobs": jobs,
                "built_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            for path in [stage, *stage.rglob("*")]:
                path.chmod(0o755 if path.is_dir() or path.parent.name == "bin" else 0o644)
            _swap_into_place(stage, root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(stage, ignore_errors=True)
    say(f"JuKKR {jukkr.SHORT} installed in {root} ({manifest['blas']} BLAS; "
        + ", ".join(f"{c} {s:.0f} s" for c, s in seconds.items()) + ")")
    return {"built": True, "prefix": str(root), **manifest}


def _swap_into_place(stage: Path, root: Path) -> None:
    """``stage`` becomes ``root`` (an older build is moved aside first and removed after)."""
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.rename(root, old / "prev")
    os.rename(stage, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
