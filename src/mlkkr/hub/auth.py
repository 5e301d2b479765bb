"""The hub's authenticator: NativeAuthenticator, hardened.

:class:`MlkkrAuthenticator` keeps NativeAuthenticator's sign-up, admin approval, lock-out and 2FA, and
changes four things:

- **Approval and discard change state on POST only.** NativeAuthenticator toggles an account's approval
  on ``GET /hub/authorize/<name>`` and deletes it on ``GET /hub/discard/<name>``, so any page an admin
  visits could approve an account or drop one with a link or an ``<img>``. Here those URLs answer GET
  with 405 and change state on POST, which JupyterHub refuses (403) without the ``_xsrf`` token of the
  admin's session when the request is authenticated by cookie. The approval page
  (``templates/authorization-area.html``) uses POST forms carrying the token. A POST names what it
  wants (``action=approve|unapprove``), so a repeated request changes nothing more.
- **Admins cannot lock the hub out.** Withdrawing one's own approval, or that of the last approved
  admin, is refused with the reason.
- **Lock-out is said.** After ``allowed_failed_logins`` failures the login page says that the account is
  locked and in how many minutes it may try again, instead of "Invalid username or password".
- **bcrypt runs off the event loop.** A password check takes a few hundred milliseconds of CPU; in
  NativeAuthenticator it runs on the hub's event loop (twice for a failed login), so a burst of logins
  stalls every other request of the hub. Here only ``bcrypt.checkpw`` runs in a worker thread; every
  database access stays on the loop thread (the hub's SQLAlchemy session is not thread-safe). The
  checks of one username run one at a time, so concurrent guesses are counted exactly as sequential
  ones are.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from pathlib import Path

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import AuthorizationAreaHandler, admin_users_scope
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from tornado import web

#: mlkkr's templates; they come before NativeAuthenticator's in ``JupyterHub.template_paths``.
TEMPLATES = Path(__file__).resolve().parent / "templates"

ACTIONS = ("approve", "unapprove")


def check_password(password: str, hashed: bytes) -> bool:
    """bcrypt's check; no database access (it runs in a worker thread)."""
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed)
    except (ValueError, UnicodeEncodeError):  # longer than bcrypt's 72 bytes, or not encodable
        return False


def _refusal(status: int, message: str) -> web.HTTPError:
    error = web.HTTPError(status, message.replace("%", "%%"))
    error.jupyterhub_message = message  # what JupyterHub's error page shows
    return error


class MlkkrAuthenticator(NativeAuthenticator):
    """NativeAuthenticator with POST-only approval, admin safeguards, a lock-out message and
    password checks off the event loop (see the module's doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._login_locks: dict[str, list] = {}  # username -> [lock, requests using it]

    def get_handlers(self, app):
        replaced = {
            r"/login": MlkkrLoginHandler,
            r"/authorize": MlkkrAuthorizationAreaHandler,
            r"/authorize/([^/]*)": ApprovalHandler,
            r"/discard/([^/]*)": DiscardHandler,
        }
        return [(route, replaced.get(route, handler)) for route, handler in super().get_handlers(app)]

    # -- login -------------------------------------------------------------------------------------

    def lockout_remaining(self, username: str) -> float:
        """Seconds until ``username`` may try again (0 when not locked)."""
        if not self.allowed_failed_logins or not self.is_blocked(username):
            return 0.0
        elapsed = (datetime.now() - self.login_attempts[username]["time"]).total_seconds()
        return max(self.seconds_before_next_try - elapsed, 0.0)

    async def authenticate(self, handler, data):
        """NativeAuthenticator's check with bcrypt in a worker thread.

        Records why a login failed on the handler (``handler.mlkkr_login_refusal``: ``"locked"`` or
        ``"unapproved"``) so that the login page can say it without checking the password again."""
        username = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        user = self.get_user(username)
        if not user:
            return None
        entry = self._login_locks.setdefault(username, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                return await self._check_login(handler, username, user, password, data)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._login_locks[username]

    async def _check_login(self, handler, username, user, password, data):
        if self.allowed_failed_logins and self.is_blocked(username):
            _note_refusal(handler, "locked")
            return None
        hashed = bytes(user.password)  # read on the loop thread; only bcrypt leaves it
        valid = await asyncio.to_thread(check_password, password, hashed)
        user = self.get_user(username)  # the session may have changed while bcrypt ran
        if user is None:
            return None
        validations = [user.is_authorized, valid]
        if user.has_2fa:
            validations.append(user.is_valid_token(data.get("2fa")))
        if all(validations):
            self.successful_login(username)
            return username
        self.add_login_attempt(username)
        if self.allowed_failed_logins and self.is_blocked(username):
            _note_refusal(handler, "locked")
        elif valid and not user.is_authorized:
            _note_refusal(handler, "unapproved")
        return None

    # -- approval ----------------------------------------------------------------------------------

    def is_hub_admin(self, handler, username: str) -> bool:
        if username in self.admin_users:
            return True
        user = handler.find_user(username)
        return bool(user is not None and user.admin)

    def approved_admins(self, handler) -> list[str]:
        return [info.username for info in UserInfo.all_users(self.db)
                if info.is_authorized and self.is_hub_admin(handler, info.username)]


def _note_refusal(handler, why: str) -> None:
    if handler is not None:
        handler.mlkkr_login_refusal = why


class MlkkrLoginHandler(NativeLoginHandler):
    """NativeAuthenticator's login page; the reason of a refusal comes from the one password check."""

    async def post(self):
        data = {arg: self.get_argument(arg, strip=False) for arg in self.request.arguments}
        self.mlkkr_login_refusal = None
        auth_timer = self.statsd.timer("login.authenticate").start()
        user = await self.login_user(data)
        auth_timer.stop(send=False)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        username = data.get("username", "")
        error = "Invalid username or password."
        if self.mlkkr_login_refusal == "locked":
            remaining = self.authenticator.lockout_remaining(self.authenticator.normalize_username(username))
            minutes = max(1, math.ceil(remaining / 60))
            error = (f"Too many failed logins: the account {username} is locked. "
                     f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.")
        elif self.mlkkr_login_refusal == "unapproved":
            error = f"User {username} has not been authorized by an administrator yet."
        html = await self._render(login_error=error, username=username)
        self.finish(html)


class MlkkrAuthorizationAreaHandler(AuthorizationAreaHandler):
    """The /hub/authorize page (mlkkr's template: POST forms with the xsrf token)."""

    @admin_users_scope
    async def get(self):
        await self.render_area()

    async def render_area(self, message: str = "", alert: str = "alert-info") -> None:
        html = await self.render_template(
            "authorization-area.html", ask_email=self.authenticator.ask_email_on_signup,
            users=self.db.query(UserInfo).all(), message=message, alert=alert)
        self.finish(html)


class _PostOnly(MlkkrAuthorizationAreaHandler):
    what = ""

    @admin_users_scope
    async def get(self, user_name):
        """405, and the approval page with the reason: a GET (a link, an image) changes nothing."""
        self.set_status(405)
        self.set_header("Allow", "POST")
        await self.render_area(f"Nothing was changed: {self.what} changes only with the buttons on this "
                               "page (a form sent with POST); a link cannot change it.", alert="alert-danger")


class ApprovalHandler(_PostOnly):
    """POST /hub/authorize/<name> with ``action=approve`` (default) or ``action=unapprove``."""

    what = "an account's approval"

    @admin_users_scope
    async def post(self, user_name):
        auth = self.authenticator
        action = self.get_body_argument("action", "approve")
        if action not in ACTIONS:
            raise _refusal(400, f"action: {action!r} is not allowed; allowed: {', '.join(ACTIONS)}")
        info = UserInfo.find(self.db, user_name)
        if info is None:
            raise _refusal(404, f"No account {user_name!r} has signed up.")
        if action == "unapprove" and info.is_authorized:
            me = self.current_user.name
            if user_name == me:
                return await self._refuse(
                    f"You cannot withdraw your own approval ({me}): you would lock yourself out. "
                    "Another admin can do it.")
            if auth.is_hub_admin(self, user_name) and auth.approved_admins(self) == [user_name]:
                return await self._refuse(
                    f"{user_name} is the last approved admin: withdrawing the approval would leave nobody "
                    "who can approve accounts. Approve another admin first.")
        want = action == "approve"
        if bool(info.is_authorized) != want:
            info.is_authorized = want
            self.db.commit()
            self.log.info("%s %s the account %s", self.current_user.name, f"{action}d", user_name)
        self.redirect(f"{self.hub.base_url}authorize#{user_name}")

    async def _refuse(self, message: str) -> None:
        self.set_status(409)
        await self.render_area(message, alert="alert-danger")


class DiscardHandler(_PostOnly):
    """POST /hub/discard/<name>: delete an account that was never approved."""

    what = "discarding an account"

    @admin_users_scope
    async def post(self, user_name):
        info = self.authenticator.get_user(user_name)
        if info is not None and not info.is_authorized:
            self.authenticator.delete_user(type("User", (), {"name": user_name}))
            if self.users.get(user_name) is not None:
                self.users.delete(user_name)
            self.log.info("%s discarded the account %s", self.current_user.name, user_name)
        self.redirect(f"{self.hub.base_url}authorize")
