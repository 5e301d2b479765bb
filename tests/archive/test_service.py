"""The archive service run by a real hub (``mlkkr hub``): authentication, the round trip alice → bob
through the CLI with a user server's own token, bad input, security, names and their owners, refused
uploads through the hub's proxy, concurrency, and a kill mid-publish.

One hub for the module; the tests run in file order and the last one kills the service.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import jsonschema
import psutil
import pytest
import requests
from archivelib import BIN, aiida_run

from mlkkr.archive.crate import read_crate
from mlkkr.archive.store import StoreReader

PROFILE_DATA = """
import json, hashlib
import numpy as np
from aiida import load_profile, orm
from aiida.engine import calcfunction
load_profile()

@calcfunction
def embed(potential: orm.ArrayData, shift: orm.Float) -> orm.ArrayData:
    out = orm.ArrayData()
    out.set_array("dv", potential.get_array("v") + shift.value)
    return out

rng = np.random.default_rng(11)
group = orm.Group(label="Fe in Bi2Te3 (model)").store()
nodes = [orm.Int(i).store() for i in range(6)]
arrays = []
for i in range(3):
    array = orm.ArrayData()
    array.set_array("v", rng.normal(size=(33, 4)))
    arrays.append(array.store())
result = embed(arrays[0], orm.Float(0.25))
group.add_nodes([*nodes, *arrays, result])
"""

PROFILE_REPORT = """
import json, hashlib
from aiida import load_profile, orm
load_profile()
arrays = {}
for node in orm.QueryBuilder().append(orm.ArrayData).all(flat=True):
    digest = hashlib.sha256()
    for name in sorted(node.get_arraynames()):
        digest.update(name.encode() + node.get_array(name).tobytes())
    arrays[node.uuid] = digest.hexdigest()
# every profile holds the JuKKR codes registered at spawn: they are the profile's own, not published data
nodes = orm.QueryBuilder().append(orm.Node).all(flat=True)
uuids = sorted(node.uuid for node in nodes if not isinstance(node, orm.AbstractCode))
codes = sorted(node.full_label for node in nodes if isinstance(node, orm.AbstractCode))
print(json.dumps({"uuids": uuids, "count": len(uuids), "arrays": arrays, "codes": codes}))
"""

NODE_COUNT = "from aiida import load_profile, orm; load_profile(); print(orm.QueryBuilder().append(orm.Node).count())"


@pytest.fixture(scope="module")
def hub(hub_factory, tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "mlkkr.toml"
    # a 2 MiB upload limit, so that a refused (413) upload through the proxy takes a moment to send
    config.write_text("[hub]\nidle_timeout = 0\n\n[aiida]\ndaemon_workers = 0\n\n[archive]\nmax_upload_mb = 2\n")
    hub = hub_factory("--config", str(config))
    wait_for_service(hub)
    return hub


def wait_for_service(hub, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(api(hub) + "openapi.json", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the archive service did not answer in {timeout} s:\n{hub.log_tail()}")


@pytest.fixture(scope="module")
def users(hub):
    admin = hub.user("admin")
    people = {"admin": admin, "alice": hub.user("alice", admin=admin), "bob": hub.user("bob", admin=admin)}
    for client in people.values():
        client.make_token()
    return people


def api(hub) -> str:
    return f"{hub.url}/services/archive/api/"


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"token {token}"} if token else {}


def sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish_http(hub, token, name, path: Path, **params) -> requests.Response:
    query = {"title": "A test dataset", "licence": "CC-BY-4.0", "author": ["Test Author"], "sha256": sha(path)}
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    return requests.post(f"{api(hub)}items/{name}", params=query, data=path.read_bytes(), headers=auth(token),
                         timeout=120)


def hub_log(hub) -> list[str]:
    """Every line the hub and its services (the archive service writes to the hub's output) logged."""
    return (hub.data_dir.parent / f"hub-{hub.port}.log").read_text(errors="replace").splitlines()


def store_of(hub) -> Path:
    return hub.data_dir / "store"


def crate_folders(hub) -> list[str]:
    crates = store_of(hub) / "crates"
    return sorted(p.name for p in crates.iterdir()) if crates.is_dir() else []


def spec_validate(spec, instance, schema: str) -> None:
    jsonschema.validate(instance, {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]})


def server_env(hub, username: str) -> dict[str, str]:
    """The environment of the user's running server process (the local spawner runs it as us)."""
    home = str(hub.home(username))
    for proc in psutil.process_iter(["environ", "cmdline"]):
        try:
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get("JUPYTERHUB_USER") == username and env.get("AIIDA_PATH") == home and \
                "JUPYTERHUB_API_TOKEN" in env and "jupyterhub-singleuser" in " ".join(proc.info["cmdline"] or []):
            return dict(env)
    raise AssertionError(f"no running server process of {username}")


def mlkkr(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mlkkr"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def user_env(hub, username: str, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "MLKKR_"))}
    env.update(AIIDA_PATH=str(hub.home(username)), MLKKR_PROFILE=username, MLKKR_BROKER="none",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if token:
        env["MLKKR_ARCHIVE_TOKEN"] = token
    return env


# -- tests, in order -------------------------------------------------------------------------------


def test_service_is_wired_into_the_hub_and_describes_itself(hub, users):
    spec = requests.get(api(hub) + "openapi.json", timeout=30).json()  # public, no token
    assert spec["openapi"] == "3.1.0"
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    paths = {"/items", "/items/{name}", "/items/{name}/{version}", "/items/{name}/{version}/archive"}
    assert paths <= set(spec["paths"])
    assert set(spec["paths"]["/items/{name}"]) >= {"get", "post"}
    assert "delete" in spec["paths"]["/items/{name}/{version}"]

    alice = users["alice"]
    info = requests.get(api(hub), headers=auth(alice.token), timeout=30)
    assert info.status_code == 200, info.text
    spec_validate(spec, info.json(), "Info")
    me = requests.get(api(hub) + "user", headers=auth(alice.token), timeout=30).json()
    spec_validate(spec, me, "User")
    assert me["name"] == "alice"
    # The hub lists the service, and a browser without a session is sent to the hub's login.
    services = alice.api("GET", "/services")
    assert services.status_code in (200, 403)
    page = requests.get(f"{hub.url}/services/archive/", allow_redirects=False, timeout=30)
    assert page.status_code == 302 and "/hub/api/oauth2/authorize" in page.headers["Location"]
    # alice's browser session (hub login cookie) goes through the hub's OAuth and sees the catalog page
    page = alice.session.get(f"{hub.url}/services/archive/", timeout=60)
    assert page.status_code == 200 and "Signed in as alice" in page.text, page.text[:500]
    listed = alice.session.get(api(hub) + "items", timeout=30)
    assert listed.status_code == 200 and listed.json() == {"items": []}
    # ... but a browser session cannot publish (no cross-site writes): the hub's cookie is not accepted
    # for a POST without its XSRF token, and even with it the service wants a token
    refused = alice.session.post(f"{api(hub)}items/from-browser", data=b"x", timeout=30,
                                 params={"title": "From a page", "licence": "MIT", "author": "A", "sha256": "0" * 64})
    assert refused.status_code in (401, 403) and "token" in refused.json()["error"]
    # the OAuth login above passed a code and a state to the service: its access log shows neither
    service_lines = [line for line in hub_log(hub) if "/services/archive/oauth_callback" in line
                     and "JupyterHub" not in line and "ConfigProxy" not in line]
    assert service_lines, "the service logged no OAuth callback"
    for line in service_lines:
        assert "code=[redacted]" in line and "state=[redacted]" in line, line


def test_without_a_valid_token_the_service_refuses(hub, users, archive_files):
    alice = users["alice"]
    no_token = [
        requests.get(api(hub) + "items", timeout=30),
        requests.get(api(hub) + "items/any/1/archive", timeout=30),
        requests.delete(api(hub) + "items/any/1", timeout=30),
        publish_http(hub, None, "sneaky", archive_files.good),
        publish_http(hub, "not-a-real-token", "sneaky", archive_files.good),
    ]
    for response in no_token:
        assert response.status_code == 401, (response.request.method, response.request.url, response.text)
        assert "token" in response.json()["error"]
    assert no_token[0].headers.get("WWW-Authenticate", "").startswith("token")

    # A token of alice's that lacks access:services!service=archive is refused with 403.
    made = alice.api("POST", "/users/alice/tokens", json={"note": "narrow", "scopes": ["read:users:name!user=alice"]})
    assert made.status_code == 201, made.text
    narrow = made.json()["token"]
    for response in [requests.get(api(hub) + "items", headers=auth(narrow), timeout=30),
                     publish_http(hub, narrow, "sneaky", archive_files.good)]:
        assert response.status_code == 403, response.text
        assert "access:services!service=archive" in response.json()["error"]
    assert crate_folders(hub) == []


ROUND_TRIP: dict = {}


def test_round_trip_alice_publishes_from_her_server_with_its_own_token(hub, users):
    alice = users["alice"]
    assert alice.start_server() in (201, 202)
    alice.wait_ready()
    env = server_env(hub, "alice")
    # The hub told alice's server where the service and the store are; her server's own token is used.
    assert env["MLKKR_ARCHIVE_URL"].endswith("/services/archive/")
    assert env["MLKKR_STORE"] == str(store_of(hub))
    alice_report = json.loads(aiida_run(hub.home("alice"), PROFILE_DATA + PROFILE_REPORT))

    result = mlkkr(env, "archive", "publish", "Fe in Bi2Te3 (model)", "--title", "Fe impurities in a TI host",
                   "--licence", "CC-BY-4.0", "--author", "Josiah Carberry <0000-0002-1825-0097>",
                   "--author", "Alice Example", "--keyword", "KKR", "--keyword", "impurity",
                   "--description", "Model embeddings and screened potentials.", "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    entry = json.loads(result.stdout)
    assert (entry["name"], entry["version"], entry["owner"]) == ("fe-in-bi2te3-model", 1, "alice")
    assert entry["node_count"] == alice_report["count"]

    # The crate in the store reads back with the required fields.
    folder = store_of(hub) / entry["folder"]
    crate = read_crate(folder)
    assert crate["title"] == "Fe impurities in a TI host"
    assert crate["licence"] == "CC-BY-4.0"
    assert [a["name"] for a in crate["authors"]] == ["Josiah Carberry", "Alice Example"]
    assert crate["authors"][0]["orcid"] == "https://orcid.org/0000-0002-1825-0097"
    assert crate["keywords"] == ["KKR", "impurity"] and crate["publisher"] == "alice"
    assert crate["archive"]["sha256"] == entry["sha256"] == sha(folder / entry["archive_file"])
    assert crate["archive"]["node_count"] == alice_report["count"]
    assert crate["software"]["aiida-core"] and crate["datePublished"] == entry["published"]
    ROUND_TRIP.update(alice=alice_report, entry=entry, url=env["MLKKR_ARCHIVE_URL"])
    assert alice.stop_server() in (202, 204)


def test_round_trip_bob_imports_the_same_nodes_into_a_fresh_profile(hub, users):
    if not ROUND_TRIP:
        pytest.fail("needs test_round_trip_alice_publishes_from_her_server_with_its_own_token first (same module)")
    bob, alice_report, entry, url = users["bob"], ROUND_TRIP["alice"], ROUND_TRIP["entry"], ROUND_TRIP["url"]
    # bob: a fresh profile, then list/show/import through the service with his own token.
    setup = mlkkr(user_env(hub, "bob"), "setup", "--json")
    assert setup.returncode == 0, setup.stderr
    env_bob = user_env(hub, "bob", bob.token)
    fresh = json.loads(aiida_run(hub.home("bob"), PROFILE_REPORT))
    assert fresh["count"] == 0 and fresh["codes"] == ["kkrhost@localhost", "kkrimp@localhost", "voronoi@localhost"]
    listed = json.loads(mlkkr(env_bob, "archive", "list", "--url", url, "--json").stdout)
    assert [(e["name"], e["version"]) for e in listed] == [("fe-in-bi2te3-model", 1)]
    shown = mlkkr(env_bob, "archive", "show", "fe-in-bi2te3-model", "--url", url, "--json")
    assert json.loads(shown.stdout)["crate"]["title"] == "Fe impurities in a TI host"
    imported = mlkkr(env_bob, "archive", "import", "fe-in-bi2te3-model", "--url", url, "--json")
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert report["nodes_before"] == len(fresh["codes"]) and report["new_nodes"] == alice_report["count"]
    assert report["sha256"] == entry["sha256"]

    bob_report = json.loads(aiida_run(hub.home("bob"), PROFILE_REPORT))
    assert bob_report["uuids"] == alice_report["uuids"]
    assert bob_report["count"] == alice_report["count"]
    assert bob_report["arrays"] == alice_report["arrays"] and len(bob_report["arrays"]) == 4

    # verify from the store folder, as a user server reads its read-only mount
    checked = mlkkr(env_bob, "archive", "verify", "fe-in-bi2te3-model", "--store", str(store_of(hub)), "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"] is True, checked.stdout


def test_bad_uploads_are_refused_with_a_clear_message(hub, users, archive_files):
    spec = requests.get(api(hub) + "openapi.json", timeout=30).json()
    bob = users["bob"]
    before = crate_folders(hub)
    cases = {
        "truncated": (publish_http(hub, bob.token, "bad-one", archive_files.truncated), 400, "archive", "truncated"),
        "altered": (publish_http(hub, bob.token, "bad-one", archive_files.altered), 400, "archive", "CRC"),
        "checksum": (publish_http(hub, bob.token, "bad-one", archive_files.good, sha256="1" * 64), 400, "sha256",
                     "checksum mismatch"),
        "no title": (publish_http(hub, bob.token, "bad-one", archive_files.good, title=None), 400, "title", "title"),
        "no licence": (publish_http(hub, bob.token, "bad-one", archive_files.good, licence=None), 400, "licence",
                       "CC-BY-4.0"),
        "bad licence": (publish_http(hub, bob.token, "bad-one", archive_files.good, licence="WTFPL"), 400,
                        "licence", "allowed"),
        "no author": (publish_http(hub, bob.token, "bad-one", archive_files.good, author=None), 400, "author",
                      "author"),
    }
    for what, (response, status, field, words) in cases.items():
        assert response.status_code == status, (what, response.status_code, response.text)
        body = response.json()
        spec_validate(spec, body, "Error")
        assert body["field"] == field and words in body["error"], (what, body)
    empty = requests.post(f"{api(hub)}items/bad-one", params={"title": "Empty body", "licence": "MIT",
                          "author": "x", "sha256": "0" * 64}, data=b"", headers=auth(bob.token), timeout=30)
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    assert crate_folders(hub) == before
    assert list((store_of(hub) / ".staging").iterdir()) == []


def test_names_that_are_paths_are_refused_and_nothing_is_written_outside(hub, users, archive_files):
    bob = users["bob"]
    before = sorted(p.name for p in hub.data_dir.iterdir())
    for name in ["..%2Fevil", "%2Fetc%2Fpasswd", "a%2Fb", "%2E%2E%2F%2E%2E%2Fevil", ".hidden", "~root", "UPPER",
                 "x.aiida"]:
        response = publish_http(hub, bob.token, name, archive_files.good)
        assert response.status_code == 400, (name, response.status_code, response.text)
        assert response.json()["field"] == "name", response.text
    # dot segments in the path itself are resolved before the service (client or proxy): never a publish
    for path in ["items/..", "items/../../evil", "items/%2E%2E"]:
        query = {"title": "Dots", "licence": "MIT", "author": "x", "sha256": sha(archive_files.good)}
        raw = requests.post(f"{api(hub)}{path}", data=archive_files.good.read_bytes(), headers=auth(bob.token),
                            params=query, timeout=30)
        assert raw.status_code in (400, 404, 405), (path, raw.status_code, raw.text)
    assert sorted(p.name for p in hub.data_dir.iterdir()) == before
    assert not (hub.data_dir / "evil").exists() and not (store_of(hub) / "evil").exists()
    assert crate_folders(hub) == ["fe-in-bi2te3-model-1"]


def test_published_versions_are_immutable_and_only_the_owner_withdraws(hub, users, archive_files):
    alice, bob, admin = users["alice"], users["bob"], users["admin"]
    target = store_of(hub) / "crates" / "fe-in-bi2te3-model-1" / "fe-in-bi2te3-model-1.aiida"
    original = target.read_bytes()
    overwrite = publish_http(hub, bob.token, "fe-in-bi2te3-model", archive_files.good, version="1")
    assert overwrite.status_code == 409 and "immutable" in overwrite.json()["error"]
    assert target.read_bytes() == original
    # the name is alice's: bob cannot publish its next version (and become its "latest") either
    hijack = publish_http(hub, bob.token, "fe-in-bi2te3-model", archive_files.good)
    assert hijack.status_code == 403, hijack.text
    assert hijack.json()["field"] == "name" and "belongs to alice" in hijack.json()["error"]
    assert crate_folders(hub) == ["fe-in-bi2te3-model-1"]
    owner = requests.get(f"{api(hub)}items/fe-in-bi2te3-model/owner", headers=auth(bob.token), timeout=30)
    assert owner.json()["owner"] == "alice"
    refused = requests.post(f"{api(hub)}items/fe-in-bi2te3-model/owner", params={"owner": "bob"},
                            headers=auth(bob.token), timeout=30)
    assert refused.status_code == 403 and refused.json()["field"] == "owner"
    for token in (bob.token, None):
        refused = requests.delete(f"{api(hub)}items/fe-in-bi2te3-model/1", headers=auth(token), timeout=30)
        assert refused.status_code in ((403,) if token else (401,)), refused.text
    assert target.read_bytes() == original

    # alice's own second item: she may withdraw it; the name+version stays taken.
    made = publish_http(hub, alice.token, "alice-scratch", archive_files.good)
    assert made.status_code == 201, made.text
    assert made.headers["Location"].endswith("/items/alice-scratch/1")
    assert requests.delete(f"{api(hub)}items/alice-scratch/1", headers=auth(bob.token), timeout=30).status_code == 403
    gone = requests.delete(f"{api(hub)}items/alice-scratch/1", headers=auth(alice.token), timeout=30)
    assert gone.status_code == 200 and gone.json()["status"] == "withdrawn"
    assert not (store_of(hub) / "crates" / "alice-scratch-1").exists()
    download = requests.get(f"{api(hub)}items/alice-scratch/1/archive", headers=auth(alice.token), timeout=30)
    assert download.status_code == 410
    again = publish_http(hub, alice.token, "alice-scratch", archive_files.good, version="1")
    assert again.status_code == 409
    # a hub admin may withdraw anyone's item, and hand a name to another user
    other = publish_http(hub, bob.token, "bob-scratch", archive_files.good)
    assert other.status_code == 201
    assert requests.delete(f"{api(hub)}items/bob-scratch/1", headers=auth(admin.token), timeout=30).status_code == 200
    moved = requests.post(f"{api(hub)}items/bob-scratch/owner", params={"owner": "alice"}, headers=auth(admin.token),
                          timeout=30)
    assert moved.status_code == 200 and (moved.json()["owner"], moved.json()["previous_owner"]) == ("alice", "bob")
    assert publish_http(hub, alice.token, "bob-scratch", archive_files.good).json()["version"] == 2
    assert publish_http(hub, bob.token, "bob-scratch", archive_files.good).status_code == 403


def test_a_refused_upload_through_the_proxy_fails_no_other_request(hub, users, archive_files):
    """A refusal before the body is read (401, 413) used to close the connection under the proxy, which
    was still sending: the uploader got a reset and, through the hub's proxy, others got 503. Now the
    service reads the body (bounded) before answering: every request gets its own answer."""
    bob = users["bob"]
    stop, answers, errors = threading.Event(), [], []

    def browse():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    answers.append(session.get(api(hub) + "items", headers=auth(bob.token), timeout=30).status_code)
                except requests.RequestException as exc:
                    errors.append(repr(exc))

    readers = [threading.Thread(target=browse) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        big = bytes(24 * 1024**2)  # 12 times the limit of this hub (2 MiB)
        query = {"title": "Too big", "licence": "MIT", "author": "A", "sha256": "0" * 64}
        with requests.Session() as uploader:
            for token, status in ((None, 401), (users["alice"].token, 413), ("not-a-token", 401)) * 2:
                response = uploader.post(f"{api(hub)}items/too-big", params=query, data=big, headers=auth(token),
                                         timeout=120)
                assert response.status_code == status, (status, response.status_code, response.text[:300])
                assert response.json()["status"] == status
                # the uploader's own next request is served as well
                assert uploader.get(api(hub) + "openapi.json", timeout=30).status_code == 200
    finally:
        stop.set()
        for thread in readers:
            thread.join(60)
    assert errors == [] and answers and set(answers) == {200}, (errors, sorted(set(answers)))
    assert list((store_of(hub) / ".staging").iterdir()) == []


def test_import_refuses_an_altered_archive_and_leaves_the_profile_unchanged(hub, users, archive_files):
    bob = users["bob"]
    # bob's profile (idempotent: the round trip above may have made it already)
    assert mlkkr(user_env(hub, "bob"), "setup", "--json").returncode == 0
    made = publish_http(hub, bob.token, "tamper-me", archive_files.good)
    assert made.status_code == 201, made.text
    env = user_env(hub, "bob", bob.token)
    nodes = aiida_run(hub.home("bob"), NODE_COUNT).strip()

    # bit rot (or tampering) in the store: this test runs as the store's OS user, as everything does in
    # the local mode, so it can do what the service never does
    path = store_of(hub) / "crates" / "tamper-me-1" / "tamper-me-1.aiida"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    for where in (["--store", str(store_of(hub))], ["--url", f"{hub.url}/services/archive/"]):
        refused = mlkkr(env, "archive", "import", "tamper-me", *where)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "checksum" in refused.stderr, refused.stderr
    checked = mlkkr(env, "archive", "verify", "tamper-me", "--store", str(store_of(hub)))
    assert checked.returncode == 1 and "FAILED" in checked.stdout, checked.stdout + checked.stderr
    assert "catalog.sha256: expected" in checked.stdout
    assert aiida_run(hub.home("bob"), NODE_COUNT).strip() == nodes


def test_two_publishes_at_the_same_moment_get_distinct_versions(hub, users, archive_files):
    """alice publishes the same name twice at once (from two sessions), bob a name of his own: all succeed,
    alice's with distinct versions. The name is alice's, so bob's publish under it is refused."""
    barrier = threading.Barrier(3)
    responses = {}

    def publish(key, user, name):
        barrier.wait()
        responses[key] = publish_http(hub, users[user].token, name, archive_files.good)

    jobs = [("alice-1", "alice", "race"), ("alice-2", "alice", "race"), ("bob", "bob", "race-bob")]
    threads = [threading.Thread(target=publish, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert all(r.status_code == 201 for r in responses.values()), {u: r.text for u, r in responses.items()}
    assert sorted(responses[k].json()["version"] for k in ("alice-1", "alice-2")) == [1, 2]
    assert {r.json()["owner"] for r in responses.values()} == {"alice", "bob"}
    late = publish_http(hub, users["bob"].token, "race", archive_files.good)
    assert late.status_code == 403 and "belongs to alice" in late.json()["error"]
    listed = requests.get(api(hub) + "items", params={"name": "race"}, headers=auth(users["bob"].token),
                          timeout=30).json()["items"]
    assert [(e["version"], e["sha256"]) for e in listed] == [(1, archive_files.sha256), (2, archive_files.sha256)]
    with sqlite3.connect(f"{(store_of(hub) / 'catalog.sqlite').as_uri()}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for entry in StoreReader(store_of(hub)).entries("race"):
        assert read_crate(store_of(hub) / entry.folder)["publisher"] == entry.owner == "alice"


def open_paths(pid: int) -> list[str]:
    """What the process's file descriptors point at (unnamed O_TMPFILE files included)."""
    paths = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return paths


def service_process(hub) -> psutil.Process:
    store = str(store_of(hub))
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "mlkkr.archive.service" in cmd and store in cmd:
            return proc
    raise AssertionError("the archive service is not running")


def test_service_killed_mid_publish_leaves_no_partial_file_and_no_entry(hub, users, archive_files):
    alice = users["alice"]
    store = StoreReader(store_of(hub))
    entries_before = [e.ident for e in store.entries(include_withdrawn=True)]
    files_before = sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")
                          if not p.name.startswith("catalog.sqlite"))
    data = archive_files.good.read_bytes()
    half_sent, release = threading.Event(), threading.Event()

    def body():
        yield data[: len(data) // 2]
        half_sent.set()
        release.wait(60)
        yield data[len(data) // 2:]

    outcome = {}

    def upload():
        try:
            outcome["response"] = requests.post(
                f"{api(hub)}items/interrupted", headers=auth(alice.token),
                params={"title": "Never published", "licence": "MIT", "author": "A", "sha256": sha(archive_files.good)},
                data=body(), timeout=60)
        except requests.RequestException as exc:
            outcome["error"] = exc

    victim = service_process(hub)
    thread = threading.Thread(target=upload)
    thread.start()
    assert half_sent.wait(60)
    staging = str(store.root / ".staging")
    deadline = time.monotonic() + 30
    while not any(target.startswith(staging) for target in open_paths(victim.pid)):  # the upload is open
        assert time.monotonic() < deadline, "the service never opened an upload"
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    # dead: gone, or a zombie until the hub (its parent, which polls its services every 30 s) reaps it —
    # psutil's wait() on a process that is not our child counts a zombie as alive (CI timed out there once)
    deadline = time.monotonic() + 30
    while True:
        try:
            if victim.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        assert time.monotonic() < deadline, "the killed service is still running"
        time.sleep(0.1)
    release.set()
    thread.join(90)
    assert "response" not in outcome or outcome["response"].status_code >= 500, outcome

    # Right after the kill: no catalog row, and no file (partial or not) anywhere in the store.
    assert [e.ident for e in store.entries(include_withdrawn=True)] == entries_before
    files_after = sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")
                         if not p.name.startswith("catalog.sqlite"))
    assert files_after == files_before

    # What a service killed while checking an upload leaves (its unpacked database) is removed when the
    # hub restarts the service (it polls it every 30 s); the store works as before.
    stale = store.root / ".staging" / "inspect-killed"
    stale.mkdir()
    (stale / "db.sqlite3").write_bytes(bytes(4096))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if service_process(hub).pid != victim.pid:
                break
        except AssertionError:
            pass
        time.sleep(1)
    wait_for_service(hub, timeout=60)
    assert not stale.exists() and list((store.root / ".staging").iterdir()) == []
    again = publish_http(hub, alice.token, "interrupted", archive_files.good)
    assert again.status_code == 201 and again.json()["version"] == 1, again.text
