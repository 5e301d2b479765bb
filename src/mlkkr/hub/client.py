"""A small client of a running hub: its login forms (NativeAuthenticator) and its REST API.

Used by the benchmarks, the tests and admin scripts. It speaks to the hub exactly as a browser or
``curl`` would: sign-up and login forms with the ``_xsrf`` token, then API calls authenticated by a
token the user makes for themself (``POST /hub/api/users/<name>/tokens``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import requests

_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')


class HubError(RuntimeError):
    pass


@dataclass
class HubClient:
    """One user's session with the hub at ``url`` (e.g. ``http://127.0.0.1:8000``)."""

    url: str
    username: str
    password: str
    session: requests.Session = field(default_factory=requests.Session)
    token: str | None = None

    def _form(self, path: str, data: dict[str, str]) -> requests.Response:
        page = self.session.get(f"{self.url}{path}", timeout=30)
        match = _XSRF.search(page.text)
        payload = dict(data, _xsrf=match.group(1)) if match else data
        return self.session.post(f"{self.url}{path}", data=payload, timeout=60, allow_redirects=False)

    def signup(self) -> str:
        """Sign up; returns the page's message (success, or why not)."""
        response = self._form("/hub/signup", {"username": self.username, "signup_password": self.password,
                                              "signup_password_confirmation": self.password})
        text = re.sub(r"<[^>]+>", " ", response.text)
        return " ".join(text.split())

    def login(self) -> bool:
        """Log in through the form; True when the hub accepted (redirect away from the login page)."""
        response = self._form("/hub/login", {"username": self.username, "password": self.password})
        return response.status_code == 302 and "/hub/login" not in response.headers.get("Location", "")

    def xsrf(self) -> str:
        """This session's xsrf token (the ``_xsrf`` cookie the hub set at login), for POSTs by cookie."""
        return self.session.cookies.get("_xsrf", path="/hub/") or self.session.cookies.get("_xsrf") or ""

    def make_token(self, note: str = "mlkkr client") -> str:
        response = self.session.post(
            f"{self.url}/hub/api/users/{self.username}/tokens", json={"note": note, "expires_in": 3600},
            headers={"X-XSRFToken": self.xsrf()}, timeout=30)
        if response.status_code != 201:
            raise HubError(f"token for {self.username}: {response.status_code} {response.text[:200]}")
        self.token = response.json()["token"]
        return self.token

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        if self.token is None:
            self.make_token()
        headers = dict(kwargs.pop("headers", {}), Authorization=f"token {self.token}")
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kwargs)

    def authorize(self, username: str, action: str = "approve") -> None:
        """As an admin: approve (or ``action="unapprove"``) ``username``, as the buttons of /hub/authorize
        do: a POST with this session's xsrf token. Raises HubError with the hub's reason if refused."""
        return self._admin_post(f"/hub/authorize/{username}", {"action": action}, f"{action} {username}")

    def discard(self, username: str) -> None:
        """As an admin: delete the account ``username`` that was never approved (POST with the token)."""
        return self._admin_post(f"/hub/discard/{username}", {}, f"discard {username}")

    def _admin_post(self, path: str, data: dict[str, str], what: str) -> None:
        response = self.session.post(f"{self.url}{path}", data=dict(data, _xsrf=self.xsrf()), timeout=30,
                                     allow_redirects=False)
        if response.status_code >= 400:
            alert = re.search(r'id="authorize-message"[^>]*>([^<]*)<', response.text)
            text = alert.group(1) if alert else re.sub(r"<[^>]+>", " ", response.text)
            reason = " ".join(text.split())[-300:]
            raise HubError(f"{what}: {response.status_code} {reason}")

    def start_server(self, username: str | None = None) -> int:
        return self.api("POST", f"/users/{username or self.username}/server").status_code

    def stop_server(self, username: str | None = None) -> int:
        return self.api("DELETE", f"/users/{username or self.username}/server").status_code

    def server_state(self, username: str | None = None) -> dict:
        user = self.api("GET", f"/users/{username or self.username}").json()
        return user.get("servers", {}).get("", {})

    def wait_ready(self, username: str | None = None, timeout: float = 180) -> float:
        """Wait until the user's server is ready; returns seconds waited. Raises on failure."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            server = self.server_state(username)
            if server.get("ready"):
                return time.monotonic() - start
            if not server.get("pending") and not server.get("ready") and time.monotonic() - start > 5:
                raise HubError(f"server of {username or self.username} stopped while starting: {server}")
            time.sleep(0.25)
        raise HubError(f"server of {username or self.username} not ready after {timeout} s")

    def wait_stopped(self, username: str | None = None, timeout: float = 120) -> None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.server_state(username):
                return
            time.sleep(0.25)
        raise HubError(f"server of {username or self.username} still running after {timeout} s")


class HubProcess:
    """A hub started as a child process (``mlkkr hub`` or any ``jupyterhub`` command line).

    Waits until ``/hub/api`` answers; :meth:`stop` sends SIGTERM (the hub then stops its users'
    servers) and kills the process group if it does not exit in time. Logs go to ``log_path``.
    """

    def __init__(self, cmd: list[str], url: str, log_path, env: dict | None = None, cwd=None,
                 timeout: float = 90) -> None:
        import subprocess
        from pathlib import Path

        self.url = url
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HubError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/hub/api", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise HubError(f"hub did not answer in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 60) -> None:
        import os
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
