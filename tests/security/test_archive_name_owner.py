"""Archive names had no owner: any user could publish the next version of another user's name and become its
"latest" (issue 15). A name now belongs to its first publisher; others are refused naming the field ``name``
and the owner; a hub admin may transfer it. A catalog written before (schema 1) keeps working: it is
migrated in place, the owner of a name being the publisher of its earliest version.

The refusals here come before the upload is read as an archive, so a few plain bytes stand in for one (the
store's tests publish real archives).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from mlkkr.archive.names import PublishRequest
from mlkkr.archive.store import NotFoundError, PermissionDenied, Store, StoreReader
from mlkkr.errors import InputError

#: The catalog as mlkkr wrote it before names had owners (schema 1).
SCHEMA_1 = """
CREATE TABLE items (
    name TEXT NOT NULL, version INTEGER NOT NULL, owner TEXT NOT NULL, title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', licence TEXT NOT NULL, authors TEXT NOT NULL, keywords TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, node_count INTEGER NOT NULL, groups_json TEXT NOT NULL,
    export_version TEXT NOT NULL, aiida_version TEXT NOT NULL, published TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'published' CHECK (status IN ('published', 'withdrawn')),
    withdrawn_by TEXT, withdrawn_at TEXT, PRIMARY KEY (name, version)
);
PRAGMA user_version = 1;
"""

#: (name, version, publisher, published, status): bob published fe-set's version 1 explicitly *after* alice
#: published its version 3 (the first one); carol's only version of "old" is withdrawn.
ROWS = [
    ("fe-set", 3, "alice", "2025-01-01T10:00:00+00:00", "published"),
    ("fe-set", 1, "bob", "2025-01-02T10:00:00+00:00", "published"),
    ("fe-set", 4, "bob", "2025-01-03T10:00:00+00:00", "published"),
    ("old", 1, "carol", "2025-01-01T09:00:00+00:00", "withdrawn"),
]


def old_catalog(root: Path) -> Path:
    root.mkdir(parents=True)
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.executescript(SCHEMA_1)
        for name, version, owner, published, status in ROWS:
            db.execute("INSERT INTO items (name, version, owner, title, licence, authors, keywords, sha256, size, "
                       "node_count, groups_json, export_version, aiida_version, published, status) VALUES "
                       "(?, ?, ?, 'A set', 'MIT', '[]', '[]', ?, 1, 1, '[]', 'main_0001', '2.7', ?, ?)",
                       (name, version, owner, "0" * 64, published, status))
    db.close()
    return root


def fake_archive(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "upload.aiida"
    path.write_bytes(b"PK not really an archive")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def publish_request(name: str, sha: str, **extra) -> PublishRequest:
    return PublishRequest.build(name=name, title="Next version", licence="MIT", authors=["Someone"], sha256=sha,
                                **extra)


def store_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if not p.name.startswith("catalog.sqlite") and p.name != ".writer.lock")


def test_an_old_catalog_is_migrated_in_place_and_names_get_their_first_publisher(tmp_path):
    root = old_catalog(tmp_path / "store")
    # a reader of a not yet migrated catalog (a read-only mount) already sees the owners
    reader = StoreReader(root)
    assert reader.owner("fe-set")["owner"] == "alice" and reader.owner("old")["owner"] == "carol"
    assert reader.owner("nothing") is None

    store = Store(root)  # the service opens it: migrated in place
    with sqlite3.connect(root / "catalog.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("SELECT name, owner, since, transferred_by FROM names ORDER BY name").fetchall() == [
            ("fe-set", "alice", "2025-01-01T10:00:00+00:00", None),
            ("old", "carol", "2025-01-01T09:00:00+00:00", None)]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    # the existing rows keep working as before: listed, latest, each version's own publisher
    assert [(e.ident, e.owner) for e in store.entries()] == [("fe-set-1", "bob"), ("fe-set-3", "alice"),
                                                            ("fe-set-4", "bob")]
    assert store.get("fe-set").ident == "fe-set-4"
    Store(root)  # opening it again changes nothing
    assert StoreReader(root).owner("fe-set")["owner"] == "alice"


def test_another_user_cannot_publish_a_version_of_a_name_and_nothing_is_left(tmp_path):
    root = old_catalog(tmp_path / "store")
    store = Store(root)
    path, sha = fake_archive(tmp_path)
    before = store_files(root)
    for user, name in (("bob", "fe-set"), ("mallory", "fe-set"), ("mallory", "old")):
        with pytest.raises(PermissionDenied) as info:
            store.publish(path, publish_request(name, sha), user)
        error = info.value
        owner = "alice" if name == "fe-set" else "carol"
        assert isinstance(error, InputError) and error.field == "name" and error.owner == owner
        assert f"belongs to {owner}" in str(error) and f"({user} may not)" in str(error)
        assert "ask a hub admin to transfer" in str(error)
        with pytest.raises(PermissionDenied):
            store.check_owner(name, user)  # the service's early check, before it reads an upload
    store.check_owner("fe-set", "alice")
    store.check_owner("a-new-name", "mallory")
    # nothing written: no row, no file, the latest is still bob's version 4 made under alice's name
    assert store_files(root) == before == [".staging", "crates"]
    assert len(store.entries(include_withdrawn=True)) == len(ROWS) and store.get("fe-set").version == 4


def test_only_a_hub_admin_transfers_a_name(tmp_path):
    root = old_catalog(tmp_path / "store")
    store = Store(root)
    with pytest.raises(PermissionDenied) as info:
        store.transfer("fe-set", "mallory", "mallory")
    assert info.value.field == "owner" and "only a hub admin" in str(info.value)
    with pytest.raises(PermissionDenied):
        store.transfer("fe-set", "bob", "alice")  # not even its owner: an explicit admin operation
    assert store.owner("fe-set")["owner"] == "alice"
    with pytest.raises(NotFoundError) as info:
        store.transfer("no-such-name", "bob", "root", admin=True)
    assert info.value.field == "name"
    for bad in ("", "two words", "a/b", "x\n"):
        with pytest.raises(InputError) as info:
            store.transfer("fe-set", bad, "root", admin=True)
        assert info.value.field == "owner"

    moved = store.transfer("fe-set", "bob", "root", admin=True)
    assert (moved["name"], moved["owner"], moved["previous_owner"], moved["transferred_by"]) == \
        ("fe-set", "bob", "alice", "root")
    assert StoreReader(root).owner("fe-set")["owner"] == "bob"
    path, sha = fake_archive(tmp_path)
    with pytest.raises(PermissionDenied, match="belongs to bob"):
        store.publish(path, publish_request("fe-set", sha), "alice")
    store.check_owner("fe-set", "bob")
    # the versions already published keep their publisher
    assert store.get("fe-set", 3).owner == "alice"


def test_a_catalog_of_a_newer_schema_is_refused(tmp_path):
    root = tmp_path / "store"
    Store(root)
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.execute("PRAGMA user_version = 3")
    db.close()
    with pytest.raises(InputError, match="catalog schema 3"):
        Store(root)
