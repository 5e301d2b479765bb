"""Run a JuKKR executable in a folder, the way the AiiDA codes' prepend text does.

Every JuKKR code needs an unlimited stack (kkr.x segfaults with the default 8 MB) and runs with one
OpenMP/BLAS thread per process here; voronoi needs ``ElementDataBase/`` in its working folder.
:data:`PREPEND_TEXT` is the shell form of exactly this, written into the AiiDA codes
(:mod:`mlkkr.aiida.jukkr_codes`); :func:`run_code` is the Python form (used by ``mlkkr jukkr check``
and by benchmarks/bench_jukkr.py to run the codes directly, outside AiiDA).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mlkkr.errors import ServiceError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def prepend_text(element_database: Path | None = None) -> str:
    """The shell lines an AiiDA code runs before a JuKKR executable (stack, threads, ElementDataBase)."""
    lines = ["ulimit -s unlimited", *(f"export {v}=1" for v in THREAD_VARIABLES)]
    if element_database is not None:
        lines.append(f"ln -sfn {element_database} ElementDataBase")
    return "\n".join(lines)


def _unlimited_stack() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_STACK)
    resource.setrlimit(resource.RLIMIT_STACK, (hard, hard))


@dataclass
class RunResult:
    returncode: int
    wall_seconds: float
    cpu_seconds: float
    max_rss_mb: float


def run_code(executable: Path, folder: Path, timeout: float = 3600, env: dict[str, str] | None = None,
             stdout_name: str = "out_kkr") -> RunResult:
    """Run ``executable`` in ``folder`` (stdout to ``stdout_name``); wall/CPU time of that process alone."""
    full_env = dict(os.environ, **{v: "1" for v in THREAD_VARIABLES})
    full_env.update(env or {})
    t0 = time.monotonic()
    with open(folder / stdout_name, "w") as out:
        try:
            proc = subprocess.Popen([str(executable)], cwd=folder, stdout=out, stderr=subprocess.STDOUT,
                                    env=full_env, preexec_fn=_unlimited_stack)
        except OSError as exc:
            raise ServiceError(f"cannot run {executable}: {exc}") from None
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                raise ServiceError(f"{executable.name} in {folder} did not finish in {timeout:.0f} s")
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return RunResult(proc.returncode, time.monotonic() - t0, usage.ru_utime + usage.ru_stime,
                     usage.ru_maxrss / 1024)
