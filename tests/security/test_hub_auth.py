"""The hub's login and approval pages against a real hub (``mlkkr hub``), as an attacker would try them
(issue 15):

- approval and discard changed state on GET (``/hub/authorize/<name>``, ``/hub/discard/<name>``), so any
  page an admin opened could approve an account or drop one; the hub's cookies had no SameSite;
- the lock-out after too many failed logins was reported as "Invalid username or password";
- bcrypt ran on the hub's event loop, so a burst of logins stalled every other request.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from mlkkr.hub.client import HubClient, HubError
from support import PASSWORD

#: what a browser sends when another site makes it navigate to, or submit a form at, the hub
CROSS_SITE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory()


@pytest.fixture(scope="module")
def admin(hub):
    return hub.user("admin")


def text(response: requests.Response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


def approved(hub, username: str) -> bool:
    """Whether ``username`` can log in (a fresh session)."""
    return hub.client(username).login()


def listed(admin: HubClient, username: str) -> bool:
    page = admin.session.get(f"{admin.url}/hub/authorize", timeout=30)
    assert page.status_code == 200, page.status_code
    return f'id="{username}"' in page.text


def set_cookies(response: requests.Response) -> dict[str, str]:
    """Set-Cookie headers of one response, by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.raw.headers.getlist("Set-Cookie")}


def test_hub_cookies_are_samesite_lax(hub, admin):
    """The login cookie, the session id and the _xsrf cookie are not sent with cross-site subrequests."""
    client = hub.client("admin")
    page = client.session.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = set_cookies(page)["_xsrf"]
    assert "samesite=lax" in xsrf.lower(), xsrf
    login = client._form("/hub/login", {"username": "admin", "password": PASSWORD})
    assert login.status_code == 302, text(login)
    cookies = set_cookies(login)
    assert {"jupyterhub-hub-login", "jupyterhub-session-id", "_xsrf"} <= set(cookies), cookies
    for name, header in cookies.items():
        assert "samesite=lax" in header.lower(), (name, header)


def test_get_on_authorize_and_discard_changes_nothing(hub, admin):
    """A link or an <img> in any page the admin opens (a GET with the admin's cookies) neither approves
    nor discards an account."""
    mallory = hub.client("mallory")
    mallory.signup()
    victim = hub.client("victim")
    victim.signup()
    assert not approved(hub, "mallory")
    for headers in (CROSS_SITE, {}):
        response = admin.session.get(f"{hub.url}/hub/authorize/mallory", headers=headers, timeout=30)
        assert response.status_code == 405, (response.status_code, text(response)[:300])
        assert "Nothing was changed" in text(response)
        response = admin.session.get(f"{hub.url}/hub/discard/victim", headers=headers, timeout=30)
        assert response.status_code == 405, (response.status_code, text(response)[:300])
    assert not approved(hub, "mallory"), "a GET approved an account"
    assert listed(admin, "victim"), "a GET discarded an account"


def test_post_without_the_xsrf_token_is_refused_and_changes_nothing(hub, admin):
    """A form another site submits with the admin's cookies has no valid token: 403, nothing changed."""
    eve = hub.client("eve")
    eve.signup()
    foreign = hub.client("x").session.get(f"{hub.url}/hub/login", timeout=30).cookies.get("_xsrf")
    for token in (None, "forged-token", foreign):
        data = {"action": "approve"} if token is None else {"action": "approve", "_xsrf": token}
        response = admin.session.post(f"{hub.url}/hub/authorize/eve", data=data, headers=CROSS_SITE,
                                      timeout=30, allow_redirects=False)
        assert response.status_code == 403, (token, response.status_code)
        assert "xsrf" in response.text.lower()
        response = admin.session.post(f"{hub.url}/hub/discard/eve", data={} if token is None else {"_xsrf": token},
                                      headers=CROSS_SITE, timeout=30, allow_redirects=False)
        assert response.status_code == 403, (token, response.status_code)
    assert not approved(hub, "eve")
    assert listed(admin, "eve")
    # With the session's own token (what the approval page's forms send) it works.
    admin.authorize("eve")
    assert approved(hub, "eve")
    admin.authorize("eve")  # idempotent: approving twice does not toggle it back
    assert approved(hub, "eve")
    admin.authorize("eve", action="unapprove")
    assert not approved(hub, "eve")
    admin.discard("eve")
    assert not listed(admin, "eve")
    assert "sent to the admin" in hub.client("eve").signup()  # the name is free again


def test_approval_page_uses_post_forms_with_the_token(hub, admin):
    hub.client("frank").signup()
    page = admin.session.get(f"{hub.url}/hub/authorize", timeout=30)
    assert page.status_code == 200
    html = page.text
    token = admin.xsrf()
    assert token and f'name="_xsrf" value="{token}"' in html
    for path in ("authorize/frank", "discard/frank", "authorize/admin"):
        assert re.search(rf'<form method="post" action="/hub/{path}"', html), path
        assert f'href="/hub/{path}"' not in html, f"a link still changes state: {path}"


def test_an_admin_cannot_unapprove_themself_or_the_last_admin(hub, admin):
    with pytest.raises(HubError, match="own approval") as refused:
        admin.authorize("admin", action="unapprove")
    assert "409" in str(refused.value)
    assert approved(hub, "admin")
    # A second admin, carol: admin may withdraw carol's approval (admin stays approved) ...
    carol = hub.user("carol", admin=admin)
    assert admin.api("PATCH", "/users/carol", json={"admin": True}).status_code == 200
    admin.authorize("carol", action="unapprove")
    assert not approved(hub, "carol")
    # ... and carol's session, still open, cannot then withdraw the last approved admin's.
    with pytest.raises(HubError, match="last approved admin") as refused:
        carol.authorize("admin", action="unapprove")
    assert "409" in str(refused.value)
    assert approved(hub, "admin")
    # Re-approved, carol is an approved admin again, and the other admin's approval may be withdrawn.
    admin.authorize("carol")
    carol.authorize("admin", action="unapprove")
    assert not approved(hub, "admin")
    carol.authorize("admin")
    assert approved(hub, "admin")


def test_lockout_says_locked_and_for_how_long(hub, admin):
    dave = hub.user("dave", admin=admin)
    assert dave is not None
    wrong = hub.client("dave", password="not-the-password-1")
    for attempt in range(2):
        page = wrong._form("/hub/login", {"username": "dave", "password": wrong.password})
        assert page.status_code == 200 and "Invalid username or password" in text(page), attempt
    page = wrong._form("/hub/login", {"username": "dave", "password": wrong.password})
    message = text(page)
    # hub.allowed_failed_logins = 3, hub.lockout_seconds = 600 (the defaults)
    assert "locked" in message and "Try again in 10 minutes" in message, message
    # While locked, even the right password is refused, with the same message.
    right = hub.client("dave")
    page = right._form("/hub/login", {"username": "dave", "password": PASSWORD})
    assert page.status_code == 200
    assert "locked" in text(page) and re.search(r"Try again in (9|10) minutes", text(page)), text(page)
    # Unknown users and unapproved users keep their messages.
    page = right._form("/hub/login", {"username": "nobody", "password": PASSWORD})
    assert "Invalid username or password" in text(page)
    hub.client("gina").signup()
    page = hub.client("gina")._form("/hub/login", {"username": "gina", "password": PASSWORD})
    assert "has not been authorized by an administrator yet" in text(page)


def test_logins_do_not_stall_the_hub(hub, admin):
    """While a burst of logins with wrong passwords is checked, the hub answers other requests at once:
    the health check's latency during the burst is a small part of the burst's duration (measured in
    this run; bcrypt used to run on the event loop and held every request until the burst was done)."""
    users = [f"load{i}" for i in range(4)]
    for name in users:
        hub.client(name).signup()
    attempts = [name for name in users for _ in range(2)]  # 2 < allowed_failed_logins: no lock-out

    def wrong_login(name: str) -> float:
        client = hub.client(name, password="wrong-password-123")
        page = client.session.get(f"{hub.url}/hub/login", timeout=60)
        token = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        barrier.wait()
        start = time.monotonic()
        response = client.session.post(f"{hub.url}/hub/login", data={
            "username": name, "password": client.password, "_xsrf": token}, timeout=120, allow_redirects=False)
        assert response.status_code == 200 and "Invalid username or password" in text(response)
        return time.monotonic() - start

    latencies: list[float] = []
    done = threading.Event()

    def poll_health() -> None:
        barrier.wait()
        time.sleep(0.05)  # the logins are sent first
        while not done.is_set():
            start = time.monotonic()
            assert requests.get(f"{hub.url}/hub/health", timeout=120).status_code == 200
            latencies.append(time.monotonic() - start)
            time.sleep(0.02)

    barrier = threading.Barrier(len(attempts) + 1)
    with ThreadPoolExecutor(len(attempts) + 1) as pool:
        poller = pool.submit(poll_health)
        start = time.monotonic()
        durations = list(pool.map(wrong_login, attempts))
        burst = time.monotonic() - start
        done.set()
        poller.result()
    print(f"burst of {len(attempts)} logins: {burst:.2f} s; health latency during it: max {max(latencies):.3f} s, "
          f"{len(latencies)} requests")
    assert len(latencies) >= 2, (latencies, burst)
    assert max(durations) > 0.5, f"the burst did no real work ({durations}); the test measures nothing"
    assert max(latencies) < burst / 2, (
        f"the hub stalled: health took up to {max(latencies):.2f} s during a {burst:.2f} s burst of logins")
