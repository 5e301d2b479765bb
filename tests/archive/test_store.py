"""The store without a hub: publish, immutability, bad archives, RO-Crate, concurrency and crashes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from mlkkr.archive.crate import read_crate
from mlkkr.archive.names import PublishRequest
from mlkkr.archive.store import (
    ConflictError,
    GoneError,
    NotFoundError,
    PermissionDenied,
    Store,
    StoreReader,
    Upload,
)
from mlkkr.errors import InputError

AUTHORS = ["Josiah Carberry <0000-0002-1825-0097>", "Ada Lovelace"]


def request(files, name="fe-set", **overrides) -> PublishRequest:
    fields = dict(name=name, title="Fe exchange pairs", licence="CC-BY-4.0", authors=AUTHORS,
                  sha256=files.sha256, description="Test data", keywords=["kkr", "exchange"])
    fields.update(overrides)
    return PublishRequest.build(**fields)


def store_files(root: Path) -> list[str]:
    """Every file and folder under the store, except the catalog's own files and the writer lock."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if not p.name.startswith("catalog.sqlite") and p.name != ".writer.lock")


def test_publish_writes_an_immutable_crate_and_a_catalog_row(tmp_path, archive_files):
    store = Store(tmp_path / "store")
    entry = store.publish(archive_files.good, request(archive_files), "alice")

    assert (entry.name, entry.version, entry.owner) == ("fe-set", 1, "alice")
    assert entry.node_count == archive_files.node_count and entry.sha256 == archive_files.sha256
    assert entry.groups[0]["label"] == "fixture-set"
    folder = store.crate_dir(entry)
    assert folder == tmp_path / "store" / "crates" / "fe-set-1"
    assert sorted(p.name for p in folder.iterdir()) == ["fe-set-1.aiida", "ro-crate-metadata.json"]
    assert (folder / "fe-set-1.aiida").read_bytes() == archive_files.good.read_bytes()
    assert all(not os.access(p, os.W_OK) or os.geteuid() == 0 for p in folder.iterdir())
    assert oct((folder / "fe-set-1.aiida").stat().st_mode & 0o777) == "0o444"
    assert store_files(tmp_path / "store") == [".staging", "crates", "crates/fe-set-1",
                                               "crates/fe-set-1/fe-set-1.aiida",
                                               "crates/fe-set-1/ro-crate-metadata.json"]

    # The RO-Crate reads back (with the rocrate library) with every required field.
    crate = read_crate(folder)
    assert crate["title"] == "Fe exchange pairs" and crate["description"] == "Test data"
    assert crate["licence"] == "CC-BY-4.0" and crate["licence_url"] == "https://spdx.org/licenses/CC-BY-4.0"
    assert crate["authors"] == [{"name": "Josiah Carberry", "orcid": "https://orcid.org/0000-0002-1825-0097"},
                                {"name": "Ada Lovelace", "orcid": None}]
    assert crate["keywords"] == ["kkr", "exchange"] and crate["datePublished"] == entry.published
    assert crate["archive"]["sha256"] == archive_files.sha256
    assert crate["archive"]["contentSize"] == archive_files.good.stat().st_size
    assert crate["archive"]["node_count"] == archive_files.node_count
    assert crate["archive"]["groups"][0]["label"] == "fixture-set"
    assert crate["publisher"] == "alice" and crate["identifier"] == "fe-set-1" and crate["version"] == "1"
    assert set(crate["software"]) == {"aiida-core", "mlkkr", "Python"}
    raw = json.loads((folder / "ro-crate-metadata.json").read_text())
    assert raw["@context"] == "https://w3id.org/ro/crate/1.2/context"

    # Readers (read-only SQLite) see it.
    reader = StoreReader(tmp_path / "store")
    assert [e.ident for e in reader.entries()] == ["fe-set-1"]
    assert reader.get("fe-set").ident == reader.get("fe-set", 1).ident == "fe-set-1"
    assert reader.archive_path(entry).is_file()


def test_versions_increment_and_an_existing_version_is_refused(tmp_path, archive_files):
    store = Store(tmp_path / "store")
    assert store.publish(archive_files.good, request(archive_files), "alice").version == 1
    assert store.publish(archive_files.good, request(archive_files), "alice").version == 2
    assert store.publish(archive_files.good, request(archive_files, version=7), "alice").version == 7
    assert store.publish(archive_files.good, request(archive_files), "alice").version == 8
    before = (tmp_path / "store" / "crates" / "fe-set-1" / "fe-set-1.aiida").read_bytes()
    with pytest.raises(ConflictError) as info:
        store.publish(archive_files.good, request(archive_files, version=1, title="Overwrite attempt"), "bob")
    assert info.value.field == "version" and "immutable" in str(info.value)
    assert (tmp_path / "store" / "crates" / "fe-set-1" / "fe-set-1.aiida").read_bytes() == before
    assert store.get("fe-set", 1).title == "Fe exchange pairs"
    assert [e.version for e in store.entries("fe-set")] == [1, 2, 7, 8]
    with pytest.raises(NotFoundError) as info:
        store.get("fe-set", 3)
    assert info.value.field == "version" and "1, 2, 7, 8" in str(info.value)
    with pytest.raises(NotFoundError):
        store.get("nothing-here")


def test_the_last_version_of_a_name_leaves_no_next_one_out_of_range(tmp_path, archive_files):
    """Publishing the last allowed version explicitly made the next automatic one MAX_VERSION + 1, which no
    later read accepts (issue 15): the next publish is refused, and nothing is stored."""
    from mlkkr.archive.names import MAX_VERSION

    store = Store(tmp_path / "store")
    assert store.publish(archive_files.good, request(archive_files, version=MAX_VERSION), "alice").version == \
        MAX_VERSION
    with pytest.raises(InputError, match="version.*used up its versions"):
        store.publish(archive_files.good, request(archive_files), "alice")
    assert [e.version for e in store.entries("fe-set")] == [MAX_VERSION]
    assert not any((tmp_path / "store" / ".staging").iterdir())

def test_a_name_belongs_to_its_first_publisher_and_an_admin_may_transfer_it(tmp_path, archive_files):
    """Anyone could publish the next version of another user's name and become its latest (issue 15)."""
    store = Store(tmp_path / "store")
    assert store.publish(archive_files.good, request(archive_files), "alice").version == 1
    before = store_files(tmp_path / "store")
    with pytest.raises(PermissionDenied) as info:
        store.publish(archive_files.good, request(archive_files, title="Hijacked"), "bob")
    assert info.value.field == "name" and info.value.owner == "alice" and "belongs to alice" in str(info.value)
    assert store_files(tmp_path / "store") == before and store.get("fe-set").owner == "alice"
    assert [e.version for e in store.entries("fe-set", include_withdrawn=True)] == [1]

    store.transfer("fe-set", "bob", "admin", admin=True)
    assert store.publish(archive_files.good, request(archive_files), "bob").ident == "fe-set-2"
    with pytest.raises(PermissionDenied, match="belongs to bob"):
        store.publish(archive_files.good, request(archive_files), "alice")
    assert store.withdraw("fe-set", 1, "alice").status == "withdrawn"  # her version stays hers
    assert [(e.version, e.owner) for e in store.entries("fe-set")] == [(2, "bob")]


@pytest.mark.parametrize("kind", ["truncated", "altered", "checksum", "not-aiida", "empty"])
def test_bad_archives_are_refused_and_leave_nothing(tmp_path, archive_files, kind):
    store = Store(tmp_path / "store")
    path, sha = {
        "truncated": (archive_files.truncated, None), "altered": (archive_files.altered, None),
        "checksum": (archive_files.good, "0" * 64),
    }.get(kind, (tmp_path / "bad.aiida", None))
    if kind == "not-aiida":
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("hello.txt", "not an AiiDA archive")
    elif kind == "empty":
        path.write_bytes(b"")
    from archivelib import sha256

    with pytest.raises(InputError) as info:
        store.publish(path, request(archive_files, sha256=sha or sha256(path)), "alice")
    message = str(info.value)
    expected = {"truncated": "truncated", "altered": "CRC", "checksum": "checksum mismatch",
                "not-aiida": "not an AiiDA archive", "empty": "truncated"}[kind]
    assert expected in message, message
    assert info.value.field == ("sha256" if kind == "checksum" else "archive")
    assert store_files(tmp_path / "store") == [".staging", "crates"]
    assert store.entries(include_withdrawn=True) == []


def test_withdraw_only_by_owner_or_admin_and_the_version_stays_taken(tmp_path, archive_files):
    store = Store(tmp_path / "store")
    store.publish(archive_files.good, request(archive_files), "alice")
    store.publish(archive_files.good, request(archive_files), "alice")
    with pytest.raises(PermissionDenied) as info:
        store.withdraw("fe-set", 1, "bob")
    assert isinstance(info.value, InputError) and info.value.field == "name" and info.value.owner == "alice"
    assert "published by alice" in str(info.value) and "bob may not" in str(info.value)
    assert (tmp_path / "store" / "crates" / "fe-set-1").is_dir()
    withdrawn = store.withdraw("fe-set", 1, "alice")
    assert (withdrawn.status, withdrawn.withdrawn_by) == ("withdrawn", "alice")
    assert not (tmp_path / "store" / "crates" / "fe-set-1").exists()
    assert store.withdraw("fe-set", 2, "admin", admin=True).status == "withdrawn"
    with pytest.raises(GoneError):
        store.archive_path(store.get("fe-set", 1))
    with pytest.raises(GoneError):
        store.withdraw("fe-set", 1, "alice")
    assert store.entries() == [] and len(store.entries(include_withdrawn=True)) == 2
    with pytest.raises(ConflictError):
        store.publish(archive_files.good, request(archive_files, version=1), "alice")
    assert store.publish(archive_files.good, request(archive_files), "alice").version == 3
    assert store_files(tmp_path / "store")[:2] == [".staging", "crates"]
    assert store.recover() == {"staging": [], "orphans": []}


def test_concurrent_publishes_in_threads_get_distinct_versions(tmp_path, archive_files):
    store = Store(tmp_path / "store")
    barrier = threading.Barrier(4)
    results, errors = [], []

    def publish(user):
        barrier.wait()
        try:
            results.append(store.publish(archive_files.good, request(archive_files), user).version)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=("alice",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and sorted(results) == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "store" / "crates").iterdir()) == [f"fe-set-{i}" for i in range(1, 5)]


PUBLISH_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from mlkkr.archive.names import PublishRequest
from mlkkr.archive.store import Store
root, archive, sha, user, go = sys.argv[1:6]
store = Store(root)
request = PublishRequest.build(name="shared", title="Concurrent set", licence="MIT", authors=[user], sha256=sha)
while not Path(go).exists():
    time.sleep(0.01)
try:
    print(json.dumps(store.publish(archive, request, user).as_dict()))
except PermissionError as exc:
    print(json.dumps({"refused": exc.field, "user": user, "owner": exc.owner, "error": str(exc)}))
"""


def test_concurrent_publishes_from_two_processes(tmp_path, archive_files):
    """Two processes (the SQLite lock spans processes) publish the same new name at the same moment: one
    of them claims it, the other is refused naming the field and the winner; nothing else is stored."""
    root, go = tmp_path / "store", tmp_path / "go"
    Store(root)
    procs = [subprocess.Popen([sys.executable, "-c", PUBLISH_SCRIPT, str(root), str(archive_files.good),
                               archive_files.sha256, user, str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for user in ("alice", "bob")]
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    published = [o for o in outputs if "refused" not in o]
    refused = [o for o in outputs if "refused" in o]
    assert len(published) == 1 and len(refused) == 1, outputs
    winner = published[0]["owner"]
    assert published[0]["version"] == 1 and winner in {"alice", "bob"}
    assert refused[0]["refused"] == "name" and refused[0]["owner"] == winner != refused[0]["user"]
    assert f"belongs to {winner}" in refused[0]["error"]
    with sqlite3.connect(root / "catalog.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1
        assert db.execute("SELECT name, owner FROM names").fetchall() == [("shared", winner)]
    assert sorted(p.name for p in (root / "crates").iterdir()) == ["shared-1"]
    assert list((root / ".staging").iterdir()) == []
    for entry in StoreReader(root).entries():
        assert read_crate(root / entry.folder)["publisher"] == entry.owner


CRASH_SCRIPT = """
import os, sys
from mlkkr.archive.names import PublishRequest
from mlkkr.archive.store import Store
root, archive, sha, where = sys.argv[1:5]
store = Store(root)
request = PublishRequest.build(name="crashy", title="Crash test", licence="MIT", authors=["x"], sha256=sha)
if where == "upload":
    # the service dies while receiving: half the archive is in an Upload
    upload = store.new_upload()
    data = open(archive, "rb").read()
    upload.write(data[: len(data) // 2])
    os._exit(9)
real_rename, real_execute = os.rename, None
def rename(src, dst, *args, **kwargs):
    real_rename(src, dst, *args, **kwargs)
    if where == "after-rename" and "/crates/" in str(dst):
        os._exit(9)  # the crate is in place, the catalog transaction is not committed
os.rename = rename
if where == "before-rename":
    import mlkkr.archive.store as module
    real_fsync = module._fsync_path
    calls = []
    def fsync(path, directory=False):
        real_fsync(path, directory)
        calls.append(path)
        if len(calls) == 2:
            os._exit(9)  # archive and crate written in staging, nothing renamed or committed
    module._fsync_path = fsync
store.publish(archive, request, "alice")
"""


@pytest.mark.parametrize("where", ["upload", "before-rename", "after-rename"])
def test_a_writer_killed_mid_publish_leaves_no_partial_file_and_no_catalog_row(tmp_path, archive_files, where):
    root = tmp_path / "store"
    store = Store(root)
    store.publish(archive_files.good, request(archive_files, name="kept"), "alice")
    before = store_files(root)
    result = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(root), str(archive_files.good),
                             archive_files.sha256, where], capture_output=True, text=True, timeout=180)
    assert result.returncode == 9, result.stderr

    # No catalog row, and readers (who go by the catalog) see only what was there.
    assert [e.ident for e in StoreReader(root).entries(include_withdrawn=True)] == ["kept-1"]
    leftovers = sorted(set(store_files(root)) - set(before))
    if where == "upload":
        assert leftovers == []  # an O_TMPFILE upload has no name: the kernel freed it
    else:
        # a complete crate folder without a catalog row, in staging or crates/: never partial
        assert leftovers, "expected the interrupted crate folder"
        archives = [root / p for p in leftovers if p.endswith(".aiida")]
        assert archives and all(p.read_bytes() == archive_files.good.read_bytes() for p in archives)
    # The service, at its next start, removes it.
    restarted = Store(root)
    restarted.acquire_writer_lock()
    restarted.recover()
    assert store_files(root) == before
    assert restarted.publish(archive_files.good, request(archive_files, name="crashy"), "bob").version == 1


def test_uploads_without_o_tmpfile_use_a_named_staging_file(tmp_path, archive_files, monkeypatch):
    """File systems without O_TMPFILE (NFS): a named file in .staging, removed on failure and by recover()."""
    root = tmp_path / "store"
    store = Store(root)
    monkeypatch.delattr(os, "O_TMPFILE")
    upload = store.new_upload()
    assert upload.named is not None and upload.named.parent == root / ".staging"
    upload.write(archive_files.good.read_bytes())
    entry = store.publish(upload, request(archive_files), "alice")
    assert entry.version == 1 and list((root / ".staging").iterdir()) == []
    broken = Upload.from_file(root / ".staging", archive_files.truncated)
    with pytest.raises(InputError):
        store.publish(broken, request(archive_files, sha256=broken.sha256), "alice")
    assert list((root / ".staging").iterdir()) == []
    left = store.new_upload()  # as if the service died here
    left.write(b"partial")
    os.close(left.fd)
    assert Store(root).recover()["staging"] == [left.named.name]
    assert list((root / ".staging").iterdir()) == []


def test_one_writer_per_store(tmp_path):
    root = tmp_path / "store"
    writer = Store(root)
    writer.acquire_writer_lock()
    script = textwrap.dedent(f"""
        from mlkkr.archive.store import Store
        from mlkkr.errors import InputError
        try:
            Store({str(root)!r}).acquire_writer_lock()
        except InputError as exc:
            print("REFUSED", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    assert "REFUSED" in out and "another archive service" in out
    assert writer.recover() == {"staging": [], "orphans": []}
