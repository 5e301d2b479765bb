"""On-disk cache of the host Green-function tables ``G0(d; z)`` (:meth:`mlkkr.greens.Engine.tables`).

Computing the tables (one diagonalisation per k, one FFT per energy and matrix element) is most of
the start-up of a short engine run — e.g. one batch job of a dataset work chain. The tables depend
only on the host, the k-grid settings and the contour, so they are kept on disk and loaded by the
next run with the same settings.

* **Where**: ``$MLKKR_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/mlkkr/greens``, else
  ``~/.cache/mlkkr/greens``; one file ``g0-<digest>.bin`` per set of settings.
* **Key**: everything the numbers depend on — the cache format, :data:`mlkkr.greens.ENGINE_VERSION`,
  the host parameters, the k-grid settings, the contour parameters and its energies, the k-grid of
  every energy, and the numerical stack (numpy version, BLAS/LAPACK library, version and CPU
  kernel, machine type) — as canonical JSON; ``<digest>`` is its SHA-256. The whole key is stored
  in the file and compared on load, not only its digest.
* **Validation**: a file is used only if its magic, its key, every array's shape and dtype, the
  file size and the SHA-256 of every array's bytes match. Anything else (a truncated, corrupt,
  foreign or stale file) is ignored, the tables are computed and the file is written again.
  So a cached run gives bit-for-bit the tables an uncached run computes on that machine.
* **Writing**: to a temporary file in the same folder, then ``os.replace`` — a reader sees the
  old file or the whole new one, never a partial one. Jobs that miss the same key at once take a
  per-key lock (``flock`` on ``g0-<digest>.lock``, an empty file): one computes and writes, the
  others wait for it and load (after :data:`LOCK_TIMEOUT` s they compute themselves; the lock only
  saves work, correctness never depends on it).
* **Footprint**: an entry is the size of the tables (default TI host: 88 MiB; metal: 34 MiB; at
  most the engine's in-memory limit, 512 MiB). After each write the least recently used entries
  (loads refresh a file's time) are removed until the folder holds at most ``$MLKKR_CACHE_MAX_MB``
  MiB (default 2048; the entry just written is always kept); temporary files left by killed
  writers are removed after an hour.
* **Off**: ``Engine(..., cache=False)`` (the library's default), ``--no-cache`` on the ``mlkkr``
  commands, or ``MLKKR_NO_CACHE=1`` in the environment (wins over everything). A cache folder that
  cannot be written is not an error: the tables are computed as without a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

#: Version of the file layout below; part of the key.
FORMAT = 1
MAGIC = b"MLKKRG0\x00"
_ALIGN = 64
#: Seconds a job waits for another job computing the same tables before it computes them itself.
LOCK_TIMEOUT = 600.0
#: Default bound of the cache folder (MiB); ``$MLKKR_CACHE_MAX_MB`` overrides it.
DEFAULT_MAX_MB = 2048
#: Temporary files older than this (s) are left-overs of killed writers and are removed.
STALE_TMP_SECONDS = 3600.0

ENV_DIR = "MLKKR_CACHE_DIR"
ENV_OFF = "MLKKR_NO_CACHE"
ENV_MAX_MB = "MLKKR_CACHE_MAX_MB"

Tables = dict[int, np.ndarray]


def disabled_by_env() -> bool:
    """``MLKKR_NO_CACHE`` set to anything but ``""``, ``0``, ``false`` or ``no``."""
    return os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no")


def default_folder() -> Path:
    """``$MLKKR_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlkkr/greens``, else ``~/.cache/mlkkr/greens``."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mlkkr" / "greens"


def resolve_folder(cache: bool | str | os.PathLike[str] | None) -> Path | None:
    """The cache folder for an engine's ``cache`` setting (None: no cache)."""
    if cache is None or cache is False or disabled_by_env():
        return None
    return default_folder() if cache is True else Path(cache).expanduser()


def max_bytes() -> int:
    """The size bound of the cache folder (bytes)."""
    try:
        mb = float(os.environ.get(ENV_MAX_MB, DEFAULT_MAX_MB))
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(mb, 0.0) * 2**20)


def numerics() -> dict[str, Any]:
    """The numerical stack that computes the tables: numpy and its BLAS/LAPACK (library, version, kernel)."""
    from mlkkr.greens._threads import _get_controller

    libs = sorted((str(i.get("internal_api")), str(i.get("version")), str(i.get("architecture")))
                  for i in _get_controller().info() if i.get("user_api") == "blas")
    return {"numpy": np.__version__, "blas": [list(x) for x in libs], "machine": platform.machine()}


def canonical(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(key).encode()).hexdigest()


def entry_path(folder: Path, key: dict[str, Any]) -> Path:
    return folder / f"g0-{digest(key)[:32]}.bin"


# -- file format ----------------------------------------------------------------------------------
# MAGIC | uint64 little-endian header length | header (canonical JSON) | zero padding to 64 bytes |
# the arrays' bytes (C order), each starting at a multiple of 64. The header holds the key and, per
# array, the grid size n, shape, dtype, offset, byte count and SHA-256.

def _pad(x: int) -> int:
    return -x % _ALIGN


def write_entry(path: Path, key: dict[str, Any], tables: Tables) -> None:
    """Write ``tables`` under ``key`` to ``path`` atomically (temporary file in the folder + os.replace)."""
    arrays = []
    offset = 0
    for n in sorted(tables):
        a = np.ascontiguousarray(tables[n])
        arrays.append({"n": int(n), "shape": list(a.shape), "dtype": a.dtype.str, "offset": offset,
                       "nbytes": int(a.nbytes), "sha256": hashlib.sha256(memoryview(a).cast("B")).hexdigest()})
        offset += a.nbytes + _pad(a.nbytes)
    header = canonical({"format": FORMAT, "key": key, "arrays": arrays}).encode()
    start = len(MAGIC) + 8 + len(header)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + len(header).to_bytes(8, "little") + header + b"\0" * _pad(start))
            for spec in arrays:
                a = np.ascontiguousarray(tables[spec["n"]])
                f.write(memoryview(a).cast("B"))
                f.write(b"\0" * _pad(a.nbytes))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_entry(path: Path, key: dict[str, Any]) -> Tables | None:
    """The tables stored at ``path`` if the file is whole and was written for exactly ``key``; else None."""
    try:
        with open(path, "rb") as f:
            return _read(f, os.fstat(f.fileno()).st_size, key)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _read(f: BinaryIO, size: int, key: dict[str, Any]) -> Tables | None:
    if f.read(len(MAGIC)) != MAGIC:
        return None
    length = int.from_bytes(f.read(8), "little")
    if not 0 < length < min(size, 1 << 26):
        return None
    header = json.loads(f.read(length))
    if header.get("format") != FORMAT or canonical(header.get("key")) != canonical(key):
        return None
    start = len(MAGIC) + 8 + length
    start += _pad(start)
    arrays = header["arrays"]
    end = start + sum(s["nbytes"] + _pad(s["nbytes"]) for s in arrays)
    if size != end:
        return None
    out: Tables = {}
    for spec in arrays:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(x) for x in spec["shape"])
        a = np.empty(shape, dtype)
        if a.nbytes != spec["nbytes"]:
            return None
        f.seek(start + spec["offset"])
        view = memoryview(a).cast("B")
        if f.readinto(view) != a.nbytes or hashlib.sha256(view).hexdigest() != spec["sha256"]:
            return None
        out[int(spec["n"])] = a
    return out


# -- locking, pruning -----------------------------------------------------------------------------

@contextlib.contextmanager
def _lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (yields True), or yield False after ``timeout`` s / if
    locks are not available. Only an optimisation: callers must be correct without it."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield False
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + timeout
        held = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            except OSError:  # a file system without locks
                break
        yield held
    finally:
        os.close(fd)  # releases the lock


def prune(folder: Path, keep: Path | None = None, limit: int | None = None) -> list[Path]:
    """Remove least recently used entries until ``folder`` holds at most ``limit`` bytes (default
    :func:`max_bytes`), never ``keep``; remove stale temporary files. Returns what was removed."""
    limit = max_bytes() if limit is None else limit
    removed: list[Path] = []
    now = time.time()
    entries = []
    for p in folder.iterdir():
        try:
            st = p.stat()
        except OSError:
            continue
        if p.name.startswith(".g0-") and p.name.endswith(".tmp"):
            if now - st.st_mtime > STALE_TMP_SECONDS:
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
        elif p.name.startswith("g0-") and p.suffix == ".bin":
            entries.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in entries)
    for _, size, p in sorted(entries):
        if total <= limit:
            break
        if keep is not None and p == keep:
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            p.with_suffix(".lock").unlink(missing_ok=True)
            removed.append(p)
        total -= size
    return removed


# -- the entry point ------------------------------------------------------------------------------

def load_or_compute(folder: Path, key: dict[str, Any], compute: Callable[[], Tables]) -> tuple[Tables, str]:
    """The tables for ``key``: loaded from ``folder`` if a valid entry is there ("hit"), else computed by
    ``compute()`` and stored ("miss"); "error" if the folder cannot be used (computed, not stored)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return compute(), "error"
    path = entry_path(folder, key)
    tables = read_entry(path, key)
    if tables is not None:
        _touch(path)
        return tables, "hit"
    with _lock(path.with_suffix(".lock")):
        tables = read_entry(path, key)  # written by the job that held the lock before us?
        if tables is not None:
            _touch(path)
            return tables, "hit"
        tables = compute()
        try:
            write_entry(path, key, tables)
        except OSError:
            return tables, "error"
    with contextlib.suppress(OSError):
        prune(folder, keep=path)
    return tables, "miss"


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)  # least-recently-used order for pruning
