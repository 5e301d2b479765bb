"""AiiDA archives through aiida-core's own writer, reader and importer (never a hand-written format).

- :func:`export_group`: a Group (and the provenance aiida's default traversal rules pull in, as
  ``verdi archive create -G`` does) to an archive file, with a tqdm progress bar in a terminal.
- :func:`inspect_archive`: is this a readable archive of the current format? What it unpacks to
  (bounded), the zip's CRC of every member, then aiida's reader on the database, unpacked once into a
  folder of the caller's (the store's staging folder in the service): format version, metadata, node
  and group counts.
- :func:`import_checked`: checksum first, then aiida's importer (one database transaction: a bad
  archive leaves the profile's node count unchanged).
- :func:`sha256_file`: the checksum everything is keyed on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlkkr.errors import InputError

CHUNK = 1 << 20
#: What an archive may unpack to when the caller sets no limit (the store's own default is the same).
DEFAULT_MAX_UNPACKED = 40 * 1024**3
#: aiida's reader needs these two members; the repository files are read only on demand.
_METADATA, _DATABASE = "metadata.json", "db.sqlite3"


def sha256_file(path: str | os.PathLike, progress: bool = False, desc: str = "checksum") -> str:
    """SHA-256 of a file, read in 1 MiB chunks (with a tqdm bar when ``progress``)."""
    digest = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as handle, _bar(progress, size, desc) as bar:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _bar(progress: bool, total: int, desc: str) -> Iterator[Any]:
    if not progress:
        yield _NoBar()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
              file=sys.stderr) as bar:
        yield bar


@dataclass(frozen=True)
class ArchiveInfo:
    """What aiida's reader says about an archive."""

    export_version: str
    aiida_version: str
    created: str
    node_count: int
    groups: list[dict[str, str]] = field(default_factory=list)
    node_types: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_format_version() -> str:
    from aiida.tools.archive.abstract import get_format

    return get_format().latest_version


def inspect_archive(path: str | os.PathLike, field_name: str = "archive", *,
                    workdir: str | os.PathLike | None = None, max_unpacked: int = DEFAULT_MAX_UNPACKED,
                    limit_name: str = "max_unpacked") -> ArchiveInfo:
    """Open ``path`` as an AiiDA archive of the current format; raise InputError saying what is wrong.

    Checks, in order: a complete zip file (a truncated upload has no central directory), what all its
    members unpack to (at most ``max_unpacked`` bytes, named ``limit_name`` in the error: a zip bomb is
    refused before anything is unpacked), the CRC of every member (an altered byte fails here; read
    in memory, never more than each member's declared size), aiida-core's archive version (older
    archives must be migrated with ``verdi archive migrate`` first), aiida's reader on the metadata and
    the database, and at least one node.

    The database is unpacked once, into a fresh folder inside ``workdir`` (default: a temporary folder
    of the system), and removed afterwards; a process killed meanwhile leaves it there, so the store
    passes its staging folder, which it empties at start.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(field_name, str(path), reason="no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_unpacked_size(archive, path, field_name, max_unpacked, limit_name)
            bad = archive.testzip()
    except zipfile.BadZipFile:
        raise InputError(field_name, path.name, reason="not a complete zip file: the archive is truncated "
                         "or is not an AiiDA archive") from None
    except (OSError, EOFError, zlib.error, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise InputError(field_name, path.name, reason=f"the archive cannot be read ({type(exc).__name__}: {exc}): "
                         "it was altered or damaged") from None
    if bad is not None:
        raise InputError(field_name, path.name, reason=f"member {bad!r} fails its CRC check: the archive "
                         "was altered or damaged")

    from aiida.tools.archive.abstract import get_format

    archive_format = get_format()
    with _unpacked(path, field_name, workdir, max_unpacked, limit_name) as folder, _no_deprecation_noise():
        return _read_archive(folder, path.name, field_name, archive_format)


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _too_big(field_name: str, path: Path, size: int, max_unpacked: int, limit_name: str, how: str) -> InputError:
    return InputError(field_name, path.name, reason=f"the archive {how} {size} bytes ({_mib(size)}), more than "
                      f"{limit_name} = {max_unpacked} bytes ({_mib(max_unpacked)}) allows; nothing was stored. "
                      f"An honest archive that large needs {limit_name} raised by the store's administrator")


def _check_unpacked_size(archive: zipfile.ZipFile, path: Path, field_name: str, max_unpacked: int,
                         limit_name: str) -> None:
    """What the zip says its members unpack to, before any is read. zipfile never yields more than a
    member's declared size (and fails its CRC if the data would give more), so this bounds the work."""
    total = sum(info.file_size for info in archive.infolist())
    if total > max_unpacked:
        raise _too_big(field_name, path, total, max_unpacked, limit_name, "unpacks to")


@contextlib.contextmanager
def _unpacked(path: Path, field_name: str, workdir: str | os.PathLike | None, max_unpacked: int,
              limit_name: str) -> Iterator[Path]:
    """The archive's metadata and database in a new folder inside ``workdir`` (the layout aiida's
    reader also takes), removed on the way out; at most ``max_unpacked`` bytes are written."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="mlkkr-inspect-") as tmp:
            with _unpacked(path, field_name, tmp, max_unpacked, limit_name) as folder:
                yield folder
        return
    folder = Path(workdir) / f"inspect-{uuid.uuid4().hex}"
    folder.mkdir(mode=0o700)
    try:
        written = 0
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if _METADATA not in names:
                    raise InputError(field_name, path.name, reason=f"not an AiiDA archive: it has no {_METADATA}")
                # without a database (an archive of an older format) aiida's reader says what is wrong
                for member in (m for m in (_METADATA, _DATABASE) if m in names):
                    with archive.open(member) as source, open(folder / member, "xb") as target:
                        while chunk := source.read(CHUNK):
                            written += len(chunk)
                            if written > max_unpacked:
                                raise _too_big(field_name, path, written, max_unpacked, limit_name,
                                               "unpacked to more than")
                            target.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
            raise InputError(field_name, path.name, reason=f"the archive cannot be read ({type(exc).__name__}: "
                             f"{exc}): it was altered or damaged") from None
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _no_deprecation_noise() -> Iterator[None]:
    """aiida's QueryBuilder warns about its own internal use of a deprecated method when no profile
    is loaded; loading the config first (which installs aiida's filter), then ignoring, keeps it quiet."""
    import warnings

    from aiida.common.warnings import AiidaDeprecationWarning
    from aiida.manage.configuration import get_config_option

    get_config_option("warnings.showdeprecations")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AiidaDeprecationWarning)
        yield


def _read_archive(path: Path, label: str, field_name: str, archive_format) -> ArchiveInfo:
    """aiida's reader on ``path`` (a zip file, or a folder with its metadata and database); ``label``:
    the archive's name in messages."""
    from aiida import orm
    from aiida.common.exceptions import AiidaException

    try:
        version = archive_format.read_version(path)
    except (AiidaException, KeyError, ValueError, OSError) as exc:
        raise InputError(field_name, label, reason=f"not an AiiDA archive: {exc}") from None
    if version != archive_format.latest_version:
        raise InputError(field_name, label, reason=f"archive format version {version!r}; the store takes "
                         f"{archive_format.latest_version!r}: migrate it with `verdi archive migrate`")
    engines: list[Any] = []
    try:
        with archive_format.open(path, "r") as reader:
            metadata = reader.get_metadata()
            backend = reader.get_backend()
            # aiida closes its session but not the engine's pooled connection, which would keep the
            # unpacked database open (and its disk space taken) after the file is removed
            engines.append(backend.get_session().get_bind())
            node_types: dict[str, int] = {}
            for (node_type,) in orm.QueryBuilder(backend=backend).append(
                    orm.Node, project=["node_type"]).iterall():
                node_types[node_type] = node_types.get(node_type, 0) + 1
            groups = [{"uuid": group_uuid, "label": group_label, "type_string": type_string}
                      for group_uuid, group_label, type_string in orm.QueryBuilder(backend=backend).append(
                          orm.Group, project=["uuid", "label", "type_string"]).all()]
    except (AiidaException, OSError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(field_name, label, reason=f"aiida-core cannot read the archive: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy and friends: any failure means unreadable
        raise InputError(field_name, label,
                         reason=f"aiida-core cannot read the archive: {type(exc).__name__}: {exc}") from None
    finally:
        for engine in engines:
            engine.dispose()
    node_count = sum(node_types.values())
    if node_count == 0:
        raise InputError(field_name, label, reason="the archive contains no nodes")
    return ArchiveInfo(export_version=version, aiida_version=str(metadata.get("aiida_version", "")),
                       created=str(metadata.get("ctime", "")), node_count=node_count, groups=groups,
                       node_types=dict(sorted(node_types.items())))


def load_group(identifier: str):
    """The Group with this label, pk or UUID in the loaded profile; InputError naming ``group`` if none."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        return orm.load_group(identifier)
    except NotExistent:
        labels = [g.label for g in orm.QueryBuilder().append(orm.Group, project=["*"]).all(flat=True)][:20]
        raise InputError("group", identifier, reason="no such group in this profile",
                         allowed=labels or "none: create one with `verdi group create`") from None
    except MultipleObjectsError:
        raise InputError("group", identifier, reason="several groups match; give its pk or UUID") from None


@contextlib.contextmanager
def _aiida_quiet(verbose: bool) -> Iterator[None]:
    """aiida's archive code reports to the 'aiida' logger; keep the terminal to our tqdm bars."""
    logger = logging.getLogger("aiida")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _progress(progress: bool) -> Iterator[None]:
    from aiida.common.progress_reporter import (
        get_progress_reporter,
        set_progress_bar_tqdm,
        set_progress_reporter,
    )

    previous = get_progress_reporter()
    if progress:
        set_progress_bar_tqdm(leave=False)
    else:
        set_progress_reporter(None)
    try:
        yield
    finally:
        set_progress_reporter(previous)


def export_group(group, path: str | os.PathLike, *, progress: bool = False, verbose: bool = False) -> Path:
    """Write the archive of ``group`` to ``path`` (must not exist) with aiida-core's writer.

    The default traversal rules apply (as ``verdi archive create -G``): the group's nodes and the
    provenance needed to make them consistent.
    """
    from aiida.tools.archive import create_archive

    path = Path(path)
    if path.exists():
        raise InputError("output", str(path), reason="exists already; archives are never overwritten")
    with _aiida_quiet(verbose), _progress(progress):
        return Path(create_archive([group], filename=path, overwrite=False))


def profile_node_count() -> int:
    from aiida import orm

    return orm.QueryBuilder().append(orm.Node).count()


def import_checked(path: str | os.PathLike, expected_sha256: str | None = None, *, progress: bool = False,
                   verbose: bool = False, field_name: str = "archive") -> dict[str, Any]:
    """Import ``path`` into the loaded profile, after checking its checksum and readability.

    Returns ``{"sha256", "nodes_before", "nodes_after", "new_nodes", "import_group"}``. Raises
    InputError on a checksum mismatch or an unreadable archive. aiida's importer reads the archive
    with the same reader :func:`inspect_archive` uses (CRC-checked zip members) and runs in one
    transaction, so the profile is unchanged on any failure (the tests show it); no second pass over
    the archive is needed here.
    """
    from aiida import orm
    from aiida.common.exceptions import AiidaException
    from aiida.tools.archive import import_archive

    path = Path(path)
    digest = sha256_file(path, progress=progress, desc="verify")
    if expected_sha256 is not None and digest != expected_sha256:
        raise InputError(field_name, path.name, reason=f"checksum mismatch: expected sha256 {expected_sha256}, "
                         f"the file has {digest}; it was altered or truncated, so it is not imported")
    before = profile_node_count()
    try:
        with _aiida_quiet(verbose), _progress(progress):
            group_pk = import_archive(path)
    except (AiidaException, zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise InputError(field_name, path.name, reason=f"aiida-core refused the archive ({type(exc).__name__}: "
                         f"{exc}); nothing was imported") from None
    after = profile_node_count()
    label = orm.load_group(group_pk).label if group_pk is not None else None
    return {"sha256": digest, "nodes_before": before, "nodes_after": after, "new_nodes": after - before,
            "import_group": label}
