"""The service's tornado app in this process, with a stand-in for the hub's token check (the real
hub is in test_service.py): the REST client end to end, upload limits, an aborted upload, names and their
owners, refused uploads that must not reset the connection, what the access log may show."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time

import pytest
import requests

from mlkkr.archive.client import ArchiveClient, RemoteSource, import_item, verify_item
from mlkkr.archive.names import PublishRequest
from mlkkr.archive.service import LINGER_SECONDS, make_app
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


@contextlib.contextmanager
def running_service(root, **app_options):
    """The service's app on a free loopback port, in a thread with its own event loop."""
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    store = Store(root)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    where = {}

    def run():
        asyncio.set_event_loop(loop)

        async def start():
            app = make_app(store, "/services/archive/", max_upload=MAX_UPLOAD, authenticate=fake_hub, **app_options)
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
    try:
        yield store, f"http://127.0.0.1:{where['port']}/services/archive/"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def service(tmp_path):
    with running_service(tmp_path / "store") as running:
        yield running


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


# -- names have owners (issue 15) --------------------------------------------------------------------


def test_a_name_is_its_first_publishers_and_only_an_admin_transfers_it(service, archive_files):
    store, url = service
    api = url + "api/"
    alice, bob, admin = (ArchiveClient(url, user) for user in ("alice", "bob", "admin"))
    request = PublishRequest.build(name="owned", title="Alice's set", licence="MIT", authors=["A"],
                                   sha256=archive_files.sha256)
    assert alice.publish(archive_files.good, request).ident == "owned-1"

    # bob's next version of alice's name: 403 naming the field and the owner; nothing stored
    raw = requests.post(api + "items/owned", params=dict(request.to_query()), data=archive_files.good.read_bytes(),
                        headers={"Authorization": "token bob"}, timeout=60)
    assert raw.status_code == 403, raw.text
    assert raw.json()["field"] == "name" and "belongs to alice" in raw.json()["error"]
    with pytest.raises(PermissionDenied) as info:
        bob.publish(archive_files.good, request)
    assert info.value.field == "name" and "belongs to alice" in str(info.value)
    assert [e.ident for e in bob.entries(include_withdrawn=True)] == ["owned-1"]
    assert list((store.root / ".staging").iterdir()) == [] and staging_fds(store) == []
    assert bob.owner("owned")["owner"] == "alice"

    # transferring is an admin's explicit act: not bob, not alice, not a GET; a browser-less token only
    for user in (bob, alice):
        with pytest.raises(PermissionDenied) as info:
            user.transfer("owned", "bob")
        assert info.value.field == "owner" and "only a hub admin" in str(info.value)
    assert requests.get(api + "items/owned/owner", params={"owner": "bob"}, timeout=30,
                        headers={"Authorization": "token admin"}).json()["owner"] == "alice"
    with pytest.raises(NotFoundError):
        admin.transfer("nobody-has-this", "bob")
    with pytest.raises(InputError) as info:
        admin.transfer("owned", "two words")
    assert info.value.field == "owner"
    moved = admin.transfer("owned", "bob")
    assert (moved["owner"], moved["previous_owner"], moved["transferred_by"]) == ("bob", "alice", "admin")
    import jsonschema

    spec = requests.get(api + "openapi.json", timeout=30).json()
    for answer in (moved, bob.owner("owned"), raw.json()):
        schema = "Error" if "error" in answer else "Owner"
        jsonschema.validate(answer, {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]})
    assert {"get", "post"} <= set(spec["paths"]["/items/{name}/owner"])
    assert bob.publish(archive_files.good, request).ident == "owned-2"
    with pytest.raises(PermissionDenied, match="belongs to bob"):
        alice.publish(archive_files.good, request)
    assert [(e.version, e.owner) for e in admin.entries()] == [(1, "alice"), (2, "bob")]


def test_withdrawing_someone_elses_item_is_a_clear_error_in_the_cli(service, archive_files):
    from click.testing import CliRunner

    from mlkkr.cli import main

    store, url = service
    request = PublishRequest.build(name="hers", title="Alice's set", licence="MIT", authors=["A"],
                                   sha256=archive_files.sha256)
    ArchiveClient(url, "alice").publish(archive_files.good, request)
    result = CliRunner().invoke(main, ["archive", "withdraw", "hers", "--version", "1", "--url", url,
                                       "--token", "bob"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Error: name:" in result.output and "published by alice" in result.output
    assert "Traceback" not in result.output
    assert store.get("hers", 1).status == "published"


# -- the token, not on the command line -----------------------------------------------------------------


def test_the_token_can_come_from_a_file_or_the_environment(service, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mlkkr.cli import main

    _, url = service
    for name in ("MLKKR_ARCHIVE_TOKEN", "MLKKR_ARCHIVE_TOKEN_FILE", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    token_file = tmp_path / "token"
    token_file.write_text("carol\n")
    token_file.chmod(0o600)
    runner = CliRunner()

    def whoami(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(main, ["archive", "list", "--url", url, "--json", *args], env=env,
                             catch_exceptions=False)

    assert whoami("--token-file", str(token_file)).exit_code == 0
    assert whoami(env={"MLKKR_ARCHIVE_TOKEN_FILE": str(token_file)}).exit_code == 0
    assert whoami(env={"MLKKR_ARCHIVE_TOKEN": "carol"}).exit_code == 0
    refused = whoami()
    assert refused.exit_code == 2 and "--token-file" in refused.output and "MLKKR_ARCHIVE_TOKEN_FILE" in refused.output
    missing = whoami("--token-file", str(tmp_path / "no-such-file"))
    assert missing.exit_code == 2 and "token-file" in missing.output and "Traceback" not in missing.output
    (tmp_path / "empty").write_text("\n")
    assert "empty" in whoami("--token-file", str(tmp_path / "empty")).output

    from mlkkr.archive.client import resolve_token

    assert resolve_token(None, token_file) == "carol"
    monkeypatch.setenv("MLKKR_ARCHIVE_TOKEN_FILE", str(token_file))
    assert resolve_token() == "carol" and resolve_token("explicit") == "explicit"
    helptext = runner.invoke(main, ["archive", "publish", "--help"]).output
    assert "--token-file" in helptext and "Visible to every user" in helptext


# -- a refused upload must not reset the connection (issue 15) ---------------------------------------


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body, read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def send_post(sock: socket.socket, target: str, length: int, token: str | None, body_bytes: int | None = None,
              pause: float = 0.0) -> None:
    """Headers, then ``body_bytes`` (default: all ``length``) bytes of body; ``pause`` seconds after the first
    64 KiB of it (a slow sender)."""
    auth = f"Authorization: token {token}\r\n" if token else ""
    sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {length}\r\n\r\n".encode())
    left, zeros = length if body_bytes is None else body_bytes, bytes(1 << 16)
    while left > 0:
        if pause and left < (length if body_bytes is None else body_bytes):
            time.sleep(pause)
            pause = 0.0
        sock.sendall(zeros[: min(left, len(zeros))])
        left -= min(left, len(zeros))


def test_refused_uploads_are_read_and_answered_and_the_connection_stays_usable(service, archive_files):
    """Before, a refusal before the body (401, 413) closed the connection under the sending client: the
    client, or the hub's proxy in between, got a reset instead of the answer, and the proxy then gave
    others 503. Here the client sends its whole body first, as a proxy does, then reads."""
    store, url = service
    port = int(url.split(":")[2].split("/")[0])
    query = f"title=Big+one&licence=MIT&author=A&sha256={archive_files.sha256}"
    cases = [  # token, name, body length, expected status, expected field
        (None, "nobody", 3 * MAX_UPLOAD, 401, None),
        ("alice", "too-big", 4 * MAX_UPLOAD, 413, "archive"),
        ("alice", "Bad..Name", MAX_UPLOAD // 2, 400, "name"),
        ("bob", "alices", archive_files.good.stat().st_size, 403, "name"),
    ]
    ArchiveClient(url, "alice").publish(archive_files.good, PublishRequest.build(
        name="alices", title="Alice's", licence="MIT", authors=["A"], sha256=archive_files.sha256))
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        for token, name, length, status, field in cases:
            send_post(sock, f"/services/archive/api/items/{name}?{query}", length, token)
            got, headers, body = read_response(sock)
            assert (got, json.loads(body)["field"]) == (status, field), (name, got, body)
            assert headers.get("connection", "").lower() != "close"
            # the same connection serves the next request
            sock.sendall(b"GET /services/archive/api/items HTTP/1.1\r\nHost: x\r\nAuthorization: token bob\r\n\r\n")
            got, _, body = read_response(sock)
            assert got == 200 and [e["name"] for e in json.loads(body)["items"]] == ["alices"]
    assert store.entries(include_withdrawn=True)[0].ident == "alices-1" and len(store.entries()) == 1
    assert list((store.root / ".staging").iterdir()) == [] and staging_fds(store) == []


def test_a_refused_upload_beyond_the_drain_limit_is_answered_at_once_and_closed_gently(tmp_path):
    """A body larger than the drain limit is not read: the answer comes first, with Connection: close,
    and the service reads on until the client stops, so a client (curl, a proxy) that reads the answer
    while sending gets it, then a clean end of the connection, never a reset."""
    drain = 2 * 1024**2
    with running_service(tmp_path / "store", drain_limit=drain) as (store, url):
        port = int(url.split(":")[2].split("/")[0])
        target = "/services/archive/api/items/huge?title=Huge+one&licence=MIT&author=A&sha256=" + "0" * 64
        for token, status in ((None, 401), ("alice", 413)):
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                # announce 1 GiB, send 4 MiB of it (more than the drain limit), then read as curl does
                send_post(sock, target, 1024**3, token, body_bytes=4 * 1024**2)
                got, headers, body = read_response(sock)
                assert got == status and headers["connection"].lower() == "close", (got, headers)
                assert json.loads(body)["status"] == status
                sock.shutdown(socket.SHUT_WR)  # the client stops sending ...
                started = time.monotonic()
                assert sock.recv(65536) == b""  # ... and sees a clean end (ConnectionResetError before)
                assert time.monotonic() - started < LINGER_SECONDS
            # a proxy-like client that sends its whole (smaller than the linger bound) body, slowly, then reads
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                send_post(sock, target, 8 * 1024**2, token, pause=1.0)
                got, headers, _ = read_response(sock)
                assert got == status and headers["connection"].lower() == "close"
            # and every other connection is served as usual
            listed = requests.get(url + "api/items", headers={"Authorization": "token bob"}, timeout=30)
            assert listed.status_code == 200
        assert store.entries(include_withdrawn=True) == [] and list((store.root / ".staging").iterdir()) == []


# -- the access log (issue 15) --------------------------------------------------------------------------


def test_the_access_log_never_shows_oauth_codes_or_tokens(service, caplog):
    from mlkkr.archive.service import RedactingFilter

    _, url = service
    caplog.set_level(logging.INFO)
    secrets = {"code": "oauthCODE123", "state": "eyJTATE456", "token": "tok789", "access_token": "acc000"}
    for path in ("oauth_callback", "api/items"):
        requests.get(url + path, params={**secrets, "next": "/lab"}, headers={"Authorization": "token alice"},
                     timeout=30)
    time.sleep(0.2)  # the log line is written after the response
    access = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert len(access) == 2, access
    for line in access:
        assert "code=[redacted]" in line and "state=[redacted]" in line and "token=[redacted]" in line
        assert "next=/lab" in line or "next=%2Flab" in line
    assert not any(value in caplog.text for value in secrets.values()), caplog.text

    # any other log record that quotes a request (tornado's uncaught-exception log does) is redacted too
    record = logging.LogRecord("tornado.application", logging.ERROR, __file__, 1, "Uncaught exception GET %s",
                               ("/services/archive/oauth_callback?code=oauthCODE123&state=eyJTATE456",), None)
    assert RedactingFilter().filter(record) and "oauthCODE123" not in record.getMessage()
    assert record.getMessage().endswith("?code=[redacted]&state=[redacted]")

