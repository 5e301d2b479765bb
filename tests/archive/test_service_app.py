"""The service's tornado app in this process, with a stand-in for the hub's token check (the real
hub is in test_service.py): the REST client end to end, upload limits, an aborted upload."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest
import requests

from mlkkr.archive.client import ArchiveClient, RemoteSource, import_item, verify_item
from mlkkr.archive.names import PublishRequest
from mlkkr.archive.service import make_app
from mlkkr.archive.store import ConflictError, NotFoundError, PermissionDenied, Store
from mlkkr.errors import InputError

MAX_UPLOAD = 1_000_000


async def fake_hub(handler):
    """``Authorization: token <name>`` is user <name>; ``admin`` is an admin; no header: nobody."""
    header = handler.request.headers.get("Authorization", "")
    if not header.startswith("token "):
        return None
    name = header.split()[1]
    return {"name": name, "kind": "user", "admin": name == "admin", "scopes": []}


@pytest.fixture
def service(tmp_path):
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    store = Store(tmp_path / "store")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    where = {}

    def run():
        asyncio.set_event_loop(loop)

        async def start():
            app = make_app(store, "/services/archive/", max_upload=MAX_UPLOAD, authenticate=fake_hub)
            server = HTTPServer(app, max_body_size=MAX_UPLOAD)
            sockets = bind_sockets(0, "127.0.0.1")
            server.add_sockets(sockets)
            where["port"] = sockets[0].getsockname()[1]
            started.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30)
    yield store, f"http://127.0.0.1:{where['port']}/services/archive/"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def staging_fds(store: Store) -> list[str]:
    staging = str(store.root / ".staging")
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(staging):
            out.append(target)
    return out


def test_the_rest_client_against_the_service(service, archive_files, aiida_profile_clean, tmp_path):
    store, url = service
    alice, bob = ArchiveClient(url, "alice"), ArchiveClient(url, "bob")
    assert alice.whoami() == {"name": "alice", "kind": "user", "admin": False}
    assert alice.info()["max_upload_bytes"] == MAX_UPLOAD
    request = PublishRequest.build(name="set", title="A set", licence="MIT", authors=["A"],
                                   sha256=archive_files.sha256, keywords=["k"])
    entry = alice.publish(archive_files.good, request)
    assert (entry.ident, entry.owner, entry.node_count) == ("set-1", "alice", archive_files.node_count)
    assert [e.ident for e in bob.entries()] == ["set-1"]
    assert bob.show("set")["crate"]["keywords"] == ["k"]
    with pytest.raises(ConflictError):
        bob.request_free("set", 1)
    with pytest.raises(ConflictError):
        bob.publish(archive_files.good, PublishRequest.build(**{**request.as_dict(), "authors": ["B"], "version": 1}))
    with pytest.raises(NotFoundError):
        bob.get("set", 9)
    with pytest.raises(PermissionDenied):
        bob.withdraw("set", 1)
    with pytest.raises(InputError) as info:
        ArchiveClient(url, None).entries()
    assert info.value.field == "token"

    # download (checksum checked), verify and import through the service
    source = RemoteSource(bob)
    assert verify_item(source, "set")["ok"] is True
    report = import_item(source, "set")
    assert report["new_nodes"] == archive_files.node_count and report["version"] == 1
    assert alice.withdraw("set", 1).status == "withdrawn"
    assert bob.entries() == [] and staging_fds(store) == []


def test_limits_unknown_paths_and_an_aborted_upload(service, archive_files):
    store, url = service
    api = url + "api/"
    query = {"title": "Big", "licence": "MIT", "author": "A", "sha256": "0" * 64}
    big = requests.post(api + "items/big", params=query, headers={"Authorization": "token alice"},
                        data=b"\0" * (MAX_UPLOAD + 1), timeout=30)
    assert big.status_code == 413 and big.json()["field"] == "archive"
    unknown = requests.get(url + "nothing/here", timeout=30)
    assert unknown.status_code == 404 and "openapi.json" in unknown.json()["error"]
    assert requests.get(api + "items", timeout=30).status_code == 401

    # a client that sends half an upload and goes away: the service drops it (no file, no open fd)
    data = archive_files.good.read_bytes()
    target = f"/services/archive/api/items/aborted?title=Aborted&licence=MIT&author=A&sha256={archive_files.sha256}"
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: token alice\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data[: len(data) // 2])
        deadline = time.monotonic() + 10
        while not staging_fds(store):
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while staging_fds(store):
        assert time.monotonic() < deadline, "the aborted upload was not released"
        time.sleep(0.05)
    assert store.entries(include_withdrawn=True) == []
    assert list((store.root / ".staging").iterdir()) == [] and list((store.root / "crates").iterdir()) == []
