"""The shared store on disk: an SQLite catalog and one immutable RO-Crate folder per published version.

Layout (see :mod:`mlkkr.archive`)::

    <store>/catalog.sqlite                      catalog: one row per name+version (the truth)
    <store>/crates/<name>-<version>/            <name>-<version>.aiida + ro-crate-metadata.json
    <store>/.staging/                           a crate being assembled (for milliseconds); an upload's
                                                database while aiida's reader checks it; uploads on file
                                                systems without O_TMPFILE (all removed at start)
    <store>/.writer.lock                        held by the one running writer (the service)

How a publish stays atomic and safe under concurrent publishes:

1. the upload is received into an unnamed file (:class:`Upload`, ``O_TMPFILE`` in ``.staging/``),
   hashed on the way in, and validated (checksum, aiida's reader) — if the service dies here, the
   kernel frees the file: nothing is left anywhere;
2. under one SQLite ``BEGIN IMMEDIATE`` transaction (which serialises writers, across threads and
   processes): the version is chosen (the next free one unless the client asked for one; an existing
   name+version is refused), the archive is linked under its final name into a staging crate folder
   and the crate metadata written, both fsync'ed and made read-only, the catalog row is inserted, the
   folder is renamed to ``crates/<name>-<version>`` (one atomic ``rename``), and the transaction
   commits;
3. a crash inside that short window leaves at most a complete crate folder without a catalog row:
   it is never listed (readers go by the catalog) and :meth:`Store.recover` (run by the service at
   start) removes it. Hence: a catalog row exists => its crate is complete, and no partial file is
   ever in ``crates/``.

Names have an owner: the first user to publish a name owns it (table ``names``), and only they may
publish further versions of it (:class:`PermissionDenied` naming ``name`` and the owner otherwise); a
hub admin may hand a name to another user (:meth:`Store.transfer`). Catalogs of schema 1 (before
names had owners) are migrated in place when the service opens them: a name's owner is the publisher
of its earliest version.

Checking an upload unpacks its database (``db.sqlite3``) once, into ``.staging/`` (never the system's
temporary folder), and only when everything the zip holds unpacks to at most ``max_unpacked`` bytes
(setting ``archive.max_unpacked_mb``): a small upload cannot fill a disk. A service killed while the
database is unpacked leaves it in ``.staging/``, which :meth:`Store.recover` empties at the next start.

Withdrawing (owner or hub admin) marks the row ``withdrawn`` first, then removes the files; the
name+version stays taken, so a citation never points at different content.

Readers open the catalog read-only (``mode=ro``; rollback journal, not WAL, so that it works on a
read-only mount). The SQLite database uses POSIX locks; put the store on a local disk or a network
file system with working locks (NFSv4).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlkkr.archive.names import (
    MAX_VERSION,
    PublishRequest,
    validate_name,
    validate_username,
    validate_version,
)
from mlkkr.errors import InputError

CATALOG = "catalog.sqlite"
CRATES = "crates"
STAGING = ".staging"
WRITER_LOCK = ".writer.lock"
SCHEMA_VERSION = 2
#: The most an archive may unpack to (all zip members together), unless the service is told otherwise
#: (``--max-unpacked-mb``, from the setting ``archive.max_unpacked_mb``): 40 GiB, twice the largest
#: upload it takes by default.
DEFAULT_MAX_UNPACKED = 40 * 1024**3
MAX_UNPACKED_SETTING = "archive.max_unpacked_mb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    licence TEXT NOT NULL,
    authors TEXT NOT NULL,
    keywords TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    node_count INTEGER NOT NULL,
    groups_json TEXT NOT NULL,
    export_version TEXT NOT NULL,
    aiida_version TEXT NOT NULL,
    published TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'published' CHECK (status IN ('published', 'withdrawn')),
    withdrawn_by TEXT,
    withdrawn_at TEXT,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    since TEXT NOT NULL,
    transferred_by TEXT
);
"""

#: Schema 1 -> 2: every name gets the publisher of its earliest version as its owner.
_OWNERS_FROM_ITEMS = """
SELECT i.name AS name, i.owner AS owner, i.published AS since FROM items AS i
WHERE i.rowid = (SELECT j.rowid FROM items AS j WHERE j.name = i.name ORDER BY j.published, j.version LIMIT 1)
"""


class ConflictError(InputError):
    """The name+version exists already (published versions are immutable)."""


class NotFoundError(InputError):
    """No such item (or version) in the catalog."""


class GoneError(InputError):
    """The item was withdrawn: its metadata remains, its files do not."""


class PermissionDenied(InputError, PermissionError):
    """The user may not do this to this item or name (it is someone else's): names the field (``name``,
    ``owner`` ...) and, where there is one, the owner (``.owner``)."""

    def __init__(self, field: str, value: object = None, *, reason: str, owner: str | None = None) -> None:
        super().__init__(field, value, reason=reason)
        self.owner = owner


def _not_owner(name: str, owner: str, user: str) -> PermissionDenied:
    return PermissionDenied("name", name, owner=owner, reason=f"{name!r} belongs to {owner}, who published it "
                            f"first; only they may publish new versions of it ({user} may not). Publish under "
                            "another name, or ask a hub admin to transfer the name")


@dataclass
class Entry:
    """One published (or withdrawn) name+version, as the catalog records it."""

    name: str
    version: int
    owner: str
    title: str
    licence: str
    authors: list[dict[str, Any]]
    sha256: str
    size: int
    node_count: int
    export_version: str
    aiida_version: str
    published: str
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    groups: list[dict[str, str]] = field(default_factory=list)
    status: str = "published"
    withdrawn_by: str | None = None
    withdrawn_at: str | None = None

    @property
    def ident(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def archive_file(self) -> str:
        return f"{self.ident}.aiida"

    @property
    def folder(self) -> str:
        """The crate folder, relative to the store root."""
        return f"{CRATES}/{self.ident}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["archive_file"] = self.archive_file
        data["folder"] = self.folder
        return data

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        return cls(name=row["name"], version=row["version"], owner=row["owner"], title=row["title"],
                   description=row["description"], licence=row["licence"],
                   authors=json.loads(row["authors"]), keywords=json.loads(row["keywords"]),
                   sha256=row["sha256"], size=row["size"], node_count=row["node_count"],
                   groups=json.loads(row["groups_json"]), export_version=row["export_version"],
                   aiida_version=row["aiida_version"], published=row["published"], status=row["status"],
                   withdrawn_by=row["withdrawn_by"], withdrawn_at=row["withdrawn_at"])


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _conflict(name: str, version: int, row: sqlite3.Row) -> ConflictError:
    return ConflictError("version", version, reason=f"{name}-{version} exists already (published by "
                         f"{row['owner']}, {row['status']}); published versions are immutable: publish a "
                         "new version (leave out --version to get the next one)")


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_writable(path: Path) -> None:
    """Undo the read-only bits a published crate gets, so that it can be removed."""
    if not path.exists():
        return
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o644)


def _remove_tree(path: Path) -> None:
    _make_writable(path)
    shutil.rmtree(path, ignore_errors=True)


class Upload:
    """An archive being received, on the store's file system (so that publishing is a rename).

    Where the file system supports it (Linux ``O_TMPFILE``: ext4, xfs, btrfs, tmpfs), the file has no
    name until it is published: if the service dies mid-upload the kernel frees it and nothing is left
    anywhere. Elsewhere (e.g. NFS) it is a named file in ``.staging/`` that :meth:`Store.recover`
    removes when the service starts again. The SHA-256 and size are computed as chunks arrive.
    """

    def __init__(self, staging: Path) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.named: Path | None = None
        self._sha256: str | None = None
        try:
            self.fd = os.open(staging, os.O_TMPFILE | os.O_RDWR, 0o600)
        except (OSError, AttributeError):
            self.named = staging / f"upload-{uuid.uuid4().hex}.aiida"
            self.fd = os.open(self.named, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)

    @classmethod
    def from_file(cls, staging: Path, path: str | os.PathLike) -> Upload:
        path = Path(path)
        if not path.is_file():
            raise InputError("archive", str(path), reason="no such file")
        upload = cls(staging)
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                upload.write(chunk)
        return upload

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.digest.update(chunk)
        self.size += len(chunk)

    @property
    def path(self) -> str:
        """A path to read the file by (in this process)."""
        return str(self.named) if self.named is not None else f"/proc/self/fd/{self.fd}"

    @property
    def sha256(self) -> str:
        return self._sha256 or self.digest.hexdigest()

    def finish(self) -> None:
        """All data is in: flush it to disk and fix the checksum."""
        if self._sha256 is None:
            os.fsync(self.fd)
            self._sha256 = self.digest.hexdigest()

    def link_to(self, dest: Path) -> None:
        """Give the file its final name ``dest`` (same file system)."""
        if self.named is not None:
            os.rename(self.named, dest)
            self.named = None
        else:
            # linkat(AT_SYMLINK_FOLLOW) on the /proc magic link gives the unnamed file a name; Python
            # calls linkat (not link, which would link the /proc entry itself) only when a dir fd is given.
            dir_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.link(f"/proc/self/fd/{self.fd}", dest.name, dst_dir_fd=dir_fd, follow_symlinks=True)
            finally:
                os.close(dir_fd)

    def close(self) -> None:
        """Release the file; an unpublished named file is removed."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.named is not None:
            self.named.unlink(missing_ok=True)
            self.named = None


class StoreReader:
    """Read-only access to a store: the catalog, the crate folders, the archives.

    Works on a read-only mount. ``root`` need not exist yet (then the store is empty).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        if not self.catalog_path.exists():
            yield None
            return
        db = sqlite3.connect(f"{self.catalog_path.as_uri()}?mode=ro", uri=True, timeout=60)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def entries(self, name: str | None = None, include_withdrawn: bool = False) -> list[Entry]:
        """All published versions (by name, then version), or those of ``name``."""
        query = "SELECT * FROM items"
        where, args = [], []
        if name is not None:
            where.append("name = ?")
            args.append(validate_name(name))
        if not include_withdrawn:
            where.append("status = 'published'")
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY name, version"
        with self._read() as db:
            return [] if db is None else [Entry.from_row(row) for row in db.execute(query, args)]

    def get(self, name: str, version: int | str | None = None) -> Entry:
        """The entry of ``name`` at ``version`` (default: its latest published version)."""
        name = validate_name(name)
        latest = version in (None, "", "latest")
        number = None if latest else validate_version(version)
        with self._read() as db:
            if db is None:
                rows = []
            elif latest:
                rows = db.execute("SELECT * FROM items WHERE name = ? AND status = 'published' "
                                  "ORDER BY version DESC LIMIT 1", (name,)).fetchall()
            else:
                rows = db.execute("SELECT * FROM items WHERE name = ? AND version = ?", (name, number)).fetchall()
            if not rows:
                versions = [] if db is None else [r[0] for r in db.execute(
                    "SELECT version FROM items WHERE name = ? AND status = 'published' ORDER BY version",
                    (name,))]
        if not rows:
            if latest or not versions:
                raise NotFoundError("name", name, reason="no such item in the store (see `mlkkr archive list`)")
            raise NotFoundError("version", number, reason=f"{name} has no version {number}", allowed=versions)
        return Entry.from_row(rows[0])

    def owner(self, name: str) -> dict[str, Any] | None:
        """Who owns ``name`` (``{"name", "owner", "since", "transferred_by"}``), or None for a free name.

        A catalog of schema 1 that the service has not migrated yet (a read-only mount) has no ``names``
        table: the owner is then the publisher of the name's earliest version, as the migration makes it.
        """
        name = validate_name(name)
        with self._read() as db:
            if db is None:
                return None
            try:
                row = db.execute("SELECT name, owner, since, transferred_by FROM names WHERE name = ?",
                                 (name,)).fetchone()
            except sqlite3.OperationalError:  # schema 1: no names table
                row = db.execute(_OWNERS_FROM_ITEMS + " AND i.name = ?", (name,)).fetchone()
                return None if row is None else {**dict(row), "transferred_by": None}
        return None if row is None else dict(row)

    def crate_dir(self, entry: Entry) -> Path:
        return self.root / entry.folder

    def archive_path(self, entry: Entry) -> Path:
        """The archive of a published entry (GoneError if withdrawn, InputError if the file is missing)."""
        if entry.status != "published":
            raise GoneError("version", entry.version, reason=f"{entry.ident} was withdrawn by "
                            f"{entry.withdrawn_by} on {entry.withdrawn_at}; its files are gone")
        path = self.crate_dir(entry) / entry.archive_file
        if not path.is_file():
            raise InputError("store", str(self.root), reason=f"the catalog lists {entry.ident} but its archive "
                             "is missing: the store was changed behind the service's back")
        return path


class Store(StoreReader):
    """The writer of a store: only the archive service uses it (and tests)."""

    def __init__(self, root: str | os.PathLike, *, max_unpacked: int = DEFAULT_MAX_UNPACKED) -> None:
        super().__init__(root)
        if not isinstance(max_unpacked, int) or max_unpacked < 1:
            raise InputError(MAX_UNPACKED_SETTING, max_unpacked, allowed="a positive number of bytes")
        self.max_unpacked = max_unpacked
        for folder in (self.root, self.root / CRATES, self.root / STAGING):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._writer_lock_handle = None
        self._init_schema()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.catalog_path, timeout=60, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _init_schema(self) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            (current,) = db.execute("PRAGMA user_version").fetchone()
            if current > SCHEMA_VERSION:
                db.execute("ROLLBACK")
                raise InputError("store", str(self.root), reason=f"catalog schema {current}, this mlkkr "
                                 f"knows {SCHEMA_VERSION}: upgrade mlkkr")
            for statement in _SCHEMA.split(";"):  # executescript would commit: one statement at a time
                if statement.strip():
                    db.execute(statement)
            if current < 2:  # new, or schema 1 (names had no owners): the first publisher owns a name
                db.execute("INSERT OR IGNORE INTO names (name, owner, since) " + _OWNERS_FROM_ITEMS)
            if current != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: a single writer at a time, across processes)."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # -- the single-writer lock and recovery ------------------------------------------------------

    def acquire_writer_lock(self) -> None:
        """Hold ``.writer.lock`` for the life of this process; fail if another writer holds it."""
        handle = open(self.root / WRITER_LOCK, "a+")  # noqa: SIM115 - held until the process exits
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InputError("store", str(self.root), reason="another archive service is writing this store "
                             "(it holds .writer.lock); run one service per store") from None
        self._writer_lock_handle = handle

    def recover(self) -> dict[str, list[str]]:
        """Remove what an interrupted publish or withdrawal left: staging folders, crates without a
        published catalog row. Call it only while holding the writer lock (the service does at start)."""
        removed: dict[str, list[str]] = {"staging": [], "orphans": []}
        for path in sorted((self.root / STAGING).iterdir()):
            _remove_tree(path) if path.is_dir() else path.unlink(missing_ok=True)
            removed["staging"].append(path.name)
        published = {e.ident for e in self.entries()}
        for path in sorted((self.root / CRATES).iterdir()):
            if path.name not in published:
                _remove_tree(path) if path.is_dir() else path.unlink(missing_ok=True)
                removed["orphans"].append(path.name)
        return removed

    # -- publish ----------------------------------------------------------------------------------

    def new_upload(self) -> Upload:
        """A file to receive one upload into (see :class:`Upload`)."""
        return Upload(self.root / STAGING)

    def check_free(self, name: str, version: int | None) -> None:
        """Refuse early (before an upload) a name+version that exists already."""
        if version is None:
            return
        with self._read() as db:
            row = None if db is None else db.execute(
                "SELECT owner, status FROM items WHERE name = ? AND version = ?", (name, version)).fetchone()
        if row is not None:
            raise _conflict(name, version, row)

    def check_owner(self, name: str, user: str) -> None:
        """Refuse early (before an upload) a name that another user owns."""
        found = self.owner(name)
        if found is not None and found["owner"] != user:
            raise _not_owner(name, found["owner"], user)

    def publish(self, upload: Upload | str | os.PathLike, request: PublishRequest, owner: str) -> Entry:
        """Validate the archive ``upload`` and publish it as ``request.name`` (atomically).

        ``upload``: an :class:`Upload` the service received (its checksum was computed on the way in;
        it is closed here), or the path of a file, which is copied into an Upload first. Raises
        InputError (checksum mismatch, unreadable archive, one that unpacks to more than
        ``max_unpacked`` bytes), ConflictError (name+version exists), PermissionDenied (the name is
        another user's).
        """
        from mlkkr.archive.aiida_io import inspect_archive
        from mlkkr.archive.crate import write_crate

        if not isinstance(upload, Upload):
            upload = Upload.from_file(self.root / STAGING, upload)
        staging = None
        try:
            upload.finish()
            if upload.sha256 != request.sha256:
                raise InputError("sha256", request.sha256, reason=f"checksum mismatch: declared {request.sha256}, "
                                 f"received {upload.sha256} ({upload.size} bytes); the upload was truncated or "
                                 "altered, nothing was stored")
            self.check_free(request.name, request.version)
            self.check_owner(request.name, owner)
            info = inspect_archive(upload.path, workdir=self.root / STAGING, max_unpacked=self.max_unpacked,
                                   limit_name=MAX_UNPACKED_SETTING)
            with self._lock, self._write() as db:
                version = request.version
                if version is None:
                    (top,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM items WHERE name = ?",
                                        (request.name,)).fetchone()
                    version = top + 1
                    if version > MAX_VERSION:  # someone published the last allowed version explicitly
                        raise InputError("version", None, reason=f"{request.name!r} has used up its versions (the "
                                         f"latest is {top}); publish under a new name")
                elif row := db.execute("SELECT owner, status FROM items WHERE name = ? AND version = ?",
                                       (request.name, version)).fetchone():
                    raise _conflict(request.name, version, row)
                # the first publisher of a name owns it; checked and claimed in this same transaction
                named = db.execute("SELECT owner FROM names WHERE name = ?", (request.name,)).fetchone()
                if named is None:
                    db.execute("INSERT INTO names (name, owner, since) VALUES (?, ?, ?)",
                               (request.name, owner, _now()))
                elif named["owner"] != owner:
                    raise _not_owner(request.name, named["owner"], owner)
                entry = Entry(
                    name=request.name, version=version, owner=owner, title=request.title,
                    description=request.description, licence=request.licence,
                    authors=[{"name": a.name, "orcid": a.orcid} for a in request.authors],
                    keywords=list(request.keywords), sha256=upload.sha256, size=upload.size,
                    node_count=info.node_count, groups=[{"label": g["label"], "uuid": g["uuid"]} for g in info.groups],
                    export_version=info.export_version, aiida_version=info.aiida_version, published=_now())
                # the crate is assembled in a staging folder (complete files only), then renamed
                staging = self.root / STAGING / f"crate-{uuid.uuid4().hex}"
                staging.mkdir(mode=0o755)
                final_archive = staging / entry.archive_file
                upload.link_to(final_archive)
                crate_file = write_crate(staging, entry.as_dict(), entry.archive_file)
                for path in (final_archive, crate_file):
                    _fsync_path(path)
                    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                db.execute(
                    "INSERT INTO items (name, version, owner, title, description, licence, authors, keywords, "
                    "sha256, size, node_count, groups_json, export_version, aiida_version, published) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (entry.name, entry.version, entry.owner, entry.title, entry.description, entry.licence,
                     json.dumps(entry.authors), json.dumps(entry.keywords), entry.sha256, entry.size,
                     entry.node_count, json.dumps(entry.groups), entry.export_version, entry.aiida_version,
                     entry.published))
                target = self.crate_dir(entry)
                os.rename(staging, target)  # the publish: one atomic rename, then the commit
                staging = target
                os.chmod(target, 0o555)
                _fsync_path(target.parent, directory=True)
            staging = None
            return entry
        finally:
            upload.close()
            if staging is not None:  # failed before the commit: nothing of it may stay
                _remove_tree(staging)

    # -- withdraw ---------------------------------------------------------------------------------

    def withdraw(self, name: str, version: int | str, user: str, *, admin: bool = False) -> Entry:
        """Withdraw a version: its owner or a hub admin only. The name+version stays taken."""
        entry = self.get(name, validate_version(version, required=True))
        if entry.owner != user and not admin:
            raise PermissionDenied("name", entry.name, owner=entry.owner, reason=f"{entry.ident} was published "
                                   f"by {entry.owner}; only its publisher or a hub admin may withdraw it "
                                   f"({user} may not)")
        if entry.status != "published":
            raise GoneError("version", entry.version, reason=f"{entry.ident} is withdrawn already")
        with self._lock, self._write() as db:
            when = _now()
            db.execute("UPDATE items SET status = 'withdrawn', withdrawn_by = ?, withdrawn_at = ? "
                       "WHERE name = ? AND version = ? AND status = 'published'",
                       (user, when, entry.name, entry.version))
        # the row says withdrawn: removing the files may now fail or be interrupted; recover() finishes
        trash = self.root / STAGING / f"withdrawn-{entry.ident}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(FileNotFoundError):
            _make_writable(self.crate_dir(entry))
            os.rename(self.crate_dir(entry), trash)
        _remove_tree(trash)
        return self.get(entry.name, entry.version)

    # -- transfer ---------------------------------------------------------------------------------

    def transfer(self, name: str, new_owner: str, by: str, *, admin: bool = False) -> dict[str, Any]:
        """Give ``name`` to ``new_owner`` (who may then publish its next versions): hub admins only.

        The versions already published keep their publisher (who may still withdraw them). Returns the
        name's new owner record with ``previous_owner``.
        """
        name = validate_name(name)
        new_owner = validate_username(new_owner, "owner")
        if not admin:
            raise PermissionDenied("owner", new_owner, reason=f"only a hub admin may transfer a name ({by} is not "
                                   "one)")
        with self._lock, self._write() as db:
            row = db.execute("SELECT owner FROM names WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFoundError("name", name, reason="no such item in the store (see `mlkkr archive list`)")
            db.execute("UPDATE names SET owner = ?, since = ?, transferred_by = ? WHERE name = ?",
                       (new_owner, _now(), by, name))
        return {**(self.owner(name) or {}), "previous_owner": row["owner"]}
