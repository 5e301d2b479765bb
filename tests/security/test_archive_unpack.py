"""Checking an upload unpacks its database: a 204 KB upload unpacked a 196 MiB database into the system's
temporary folder, without a bound, and a service killed at that moment left it there (issue 15).

Now what a zip says it unpacks to is bounded (``archive.max_unpacked_mb``) before anything is unpacked, the
database goes into the store's own ``.staging/`` (never the system's temporary folder), and the service
empties ``.staging/`` when it starts. The archives here are crafted in the test: a zip with a valid
``metadata.json`` and a large ``db.sqlite3`` of zeros that compresses to almost nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from mlkkr.archive.names import PublishRequest
from mlkkr.archive.service import open_store
from mlkkr.archive.store import MAX_UNPACKED_SETTING, Store, StoreReader
from mlkkr.errors import InputError

MiB = 1024**2


def bomb(path: Path, database_mib: int) -> Path:
    """A zip that looks like an AiiDA archive of the current format: metadata.json and a db.sqlite3 of
    ``database_mib`` MiB of zeros (deflated to about 1/1000 of that)."""
    from aiida.tools.archive.abstract import get_format

    metadata = {"export_version": get_format().latest_version, "aiida_version": "2.7.0", "key_format": "sha256"}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps(metadata))
        with archive.open("db.sqlite3", "w", force_zip64=True) as member:
            zeros = bytes(MiB)
            for _ in range(database_mib):
                member.write(zeros)
    return path


def request_for(path: Path, name: str = "bomb") -> PublishRequest:
    return PublishRequest.build(name=name, title="Looks small", licence="MIT", authors=["Mallory"],
                                sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def store_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if not p.name.startswith("catalog.sqlite") and p.name != ".writer.lock")


@pytest.fixture
def system_tmp(tmp_path, monkeypatch) -> Path:
    """The system's temporary folder of this process, empty at the start."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_an_archive_that_unpacks_to_more_than_the_limit_is_refused_before_unpacking(tmp_path, system_tmp):
    path = bomb(tmp_path / "bomb.aiida", 64)
    assert path.stat().st_size < 400 * 1024  # a small upload ...
    store = Store(tmp_path / "store", max_unpacked=8 * MiB)
    with pytest.raises(InputError) as info:
        store.publish(path, request_for(path), "mallory")
    message = str(info.value)
    assert info.value.field == "archive"
    # ... that says it unpacks to 64 MiB: refused, naming the setting and the limit
    with zipfile.ZipFile(path) as archive:
        total = sum(i.file_size for i in archive.infolist())
    assert 64 * MiB < total < 64 * MiB + 1024 and f"unpacks to {total} bytes (64.0 MiB)" in message, message
    assert MAX_UNPACKED_SETTING in message and f"= {8 * MiB} bytes (8.0 MiB)" in message, message
    assert "nothing was stored" in message
    # nothing anywhere: no catalog row, no name claimed, no file in the store or the system's temp folder
    assert store.entries(include_withdrawn=True) == [] and store.owner("bomb") is None
    assert store_files(tmp_path / "store") == [".staging", "crates"]
    assert list(system_tmp.iterdir()) == []


def test_the_database_is_unpacked_in_the_store_staging_folder_not_the_system_temp(tmp_path, system_tmp, monkeypatch):
    """Under the limit, the database is unpacked once, into .staging/ of the store, and removed after."""
    import mlkkr.archive.aiida_io as aiida_io

    path = bomb(tmp_path / "bomb.aiida", 3)
    store = Store(tmp_path / "store", max_unpacked=4 * MiB)
    seen = {}
    real = aiida_io._read_archive

    def spy(folder, label, field_name, archive_format):
        seen["folder"] = Path(folder)
        seen["files"] = {p.name: p.stat().st_size for p in Path(folder).iterdir()}
        seen["system_tmp"] = list(system_tmp.iterdir())
        return real(folder, label, field_name, archive_format)

    monkeypatch.setattr(aiida_io, "_read_archive", spy)
    with pytest.raises(InputError) as info:  # zeros are no SQLite database: aiida's reader refuses them
        store.publish(path, request_for(path), "mallory")
    assert info.value.field == "archive" and "aiida-core cannot read" in str(info.value)
    assert seen["folder"].parent == store.root / ".staging"
    assert seen["files"]["db.sqlite3"] == 3 * MiB and seen["system_tmp"] == []
    assert store_files(tmp_path / "store") == [".staging", "crates"]
    assert list(system_tmp.iterdir()) == [] and store.entries(include_withdrawn=True) == []


KILLED_WHILE_UNPACKED = """
import os, sys
from pathlib import Path
import hashlib
import mlkkr.archive.aiida_io as aiida_io
from mlkkr.archive.names import PublishRequest
from mlkkr.archive.store import Store
root, archive = sys.argv[1:3]
def die(folder, *args):
    os._exit(9)  # the service is killed while the database is unpacked
aiida_io._read_archive = die
store = Store(root, max_unpacked=8 * 1024**2)
sha = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
store.publish(archive, PublishRequest.build(name="bomb", title="Killed", licence="MIT", authors=["M"], sha256=sha),
              "mallory")
"""


def test_a_service_killed_while_the_database_is_unpacked_leaves_it_only_in_staging_and_start_removes_it(tmp_path):
    path = bomb(tmp_path / "bomb.aiida", 5)
    root, system_tmp = tmp_path / "store", tmp_path / "system-tmp"
    system_tmp.mkdir()
    result = subprocess.run([sys.executable, "-c", KILLED_WHILE_UNPACKED, str(root), str(path)],
                            env={**os.environ, "TMPDIR": str(system_tmp)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 9, result.stderr
    left = [p for p in store_files(root) if p.endswith("db.sqlite3")]
    assert len(left) == 1 and left[0].startswith(".staging/inspect-"), store_files(root)
    assert (root / left[0]).stat().st_size == 5 * MiB
    assert list(system_tmp.iterdir()) == []
    assert StoreReader(root).entries(include_withdrawn=True) == []

    store = open_store(root)  # what the service does when it starts
    assert store_files(root) == [".staging", "crates"]
    assert store.entries(include_withdrawn=True) == [] and store.owner("bomb") is None


def test_stale_staging_content_is_removed_when_the_service_starts(tmp_path):
    root = tmp_path / "store"
    Store(root)
    (root / ".staging" / "upload-0123.aiida").write_bytes(b"half an upload")
    (root / ".staging" / "inspect-dead").mkdir()
    (root / ".staging" / "inspect-dead" / "db.sqlite3").write_bytes(bytes(1024))
    (root / ".staging" / "crate-dead").mkdir(mode=0o555)
    store = open_store(root)  # kept: it holds the writer lock
    assert list((root / ".staging").iterdir()) == [] and store.entries(include_withdrawn=True) == []
    assert store_files(root) == [".staging", "crates"]
    # the service holds the writer lock from then on: a second service on the same store is refused
    script = f"from mlkkr.archive.service import open_store\nopen_store({str(root)!r})"
    refused = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "another archive service" in refused.stderr


def test_the_limit_is_a_setting_passed_to_the_service():
    from mlkkr.archive.hubservice import archive_service
    from mlkkr.settings import SCHEMA

    assert SCHEMA["archive"]["max_unpacked_mb"].default == 40960
    settings = {"archive": {"port": 12345, "max_upload_mb": 100, "max_unpacked_mb": 300}}
    service, _ = archive_service(settings, Path("/nonexistent/store"), Path(tempfile.mkdtemp()))
    assert "--max-unpacked-mb=300" in service["command"] and "--max-upload-mb=100" in service["command"]
    with pytest.raises(InputError, match=MAX_UNPACKED_SETTING):
        Store(Path(tempfile.mkdtemp()) / "store", max_unpacked=0)
