"""Users are isolated at the HTTP level: anonymous requests and other users never reach a server."""

from __future__ import annotations

import requests


def test_anonymous_and_cross_user_requests_never_reach_alices_server(hub_factory):
    hub = hub_factory()
    admin = hub.user("admin")
    alice = hub.user("alice", admin=admin)
    bob = hub.user("bob", admin=admin)
    assert alice.start_server() in (201, 202)
    alice.wait_ready()
    secret = "alice-only-0xC0FFEE"
    (hub.home("alice") / "secret.txt").write_text(secret)
    contents = f"{hub.url}/user/alice/api/contents/secret.txt"

    # alice herself reads it through the proxy: opening her Lab runs the OAuth dance with the hub
    # and gives her browser session the server's cookie, which her API requests then carry.
    lab = alice.session.get(f"{hub.url}/user/alice/lab", timeout=30)
    assert lab.status_code == 200 and lab.url.endswith("/user/alice/lab")
    own = alice.session.get(contents, timeout=30)
    assert own.status_code == 200 and own.json()["content"] == secret

    # Anonymous: pages send to the login page; the API answers 403. Never the content.
    for path in ("/user/alice/", "/user/alice/lab", "/user/alice/tree"):
        response = requests.get(f"{hub.url}{path}", timeout=30)
        assert "/hub/login" in response.url, (path, response.url)
        assert secret not in response.text
    anonymous_api = requests.get(contents, timeout=30)
    assert anonymous_api.status_code == 403 and secret not in anonymous_api.text

    # bob's browser session (logged in at the hub) is refused by alice's server.
    for path in ("/user/alice/lab", "/user/alice/api/contents/secret.txt"):
        response = bob.session.get(f"{hub.url}{path}", timeout=30)
        assert response.status_code == 403 or "/user/alice" not in response.url, (path, response.url)
        assert secret not in response.text

    # bob's API token: refused by alice's server and by the hub's API for alice.
    bob_auth = {"Authorization": f"token {bob.make_token()}"}
    response = requests.get(contents, headers=bob_auth, timeout=30, allow_redirects=False)
    assert response.status_code in (302, 403) and secret not in response.text
    if response.status_code == 302:
        assert "/user/alice" not in response.headers["Location"]
    assert bob.api("GET", "/users/alice").status_code in (403, 404)
    assert bob.api("DELETE", "/users/alice/server").status_code in (403, 404)
    assert alice.server_state()["ready"], "bob's request must not have stopped alice's server"
