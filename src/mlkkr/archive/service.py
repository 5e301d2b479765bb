"""The archive service: the only writer of the shared store, run by the hub as a JupyterHub service.

``python -m mlkkr.archive.service [--store PATH]`` (default ``$MLKKR_STORE``; the hub starts it: see
:mod:`mlkkr.archive.hubservice`; the Helm chart runs it in its own pod).
It listens where ``$JUPYTERHUB_SERVICE_URL`` says, under ``$JUPYTERHUB_SERVICE_PREFIX``
(``/services/archive/``), and authenticates every request except the OpenAPI document with the hub:
a token (``Authorization: token ...``, e.g. a user server's ``$JUPYTERHUB_API_TOKEN``) or, for
browsers, the hub's OAuth login (``HubOAuth``). A caller needs the scope
``access:services!service=archive``; the hub gives it to every user and to their servers' tokens.

REST API under ``<prefix>api/`` (OpenAPI: ``api/openapi.json``): list, show, download, publish
(``POST api/items/<name>``, the archive as the body, streamed to disk), withdraw, and a name's owner
(``GET``; ``POST api/items/<name>/owner?owner=<user>``: hub admins hand a name to another user). Writes
need a token (not a browser cookie), so a web page cannot make a user publish or withdraw behind their
back. A name belongs to its first publisher: another user's publish is refused with 403.

A refused upload (401, 403, 413, bad metadata) is answered only after its body has been read and
thrown away (up to ``drain_limit`` bytes; a larger one gets its answer at once, with
``Connection: close``, and the connection is closed gently), so the connection is never reset under a
client or a proxy that is still sending: through the hub's proxy a reset turned into 503s for others.

The access log never shows the values of ``code``, ``state``, ``token`` (OAuth, tokens) in a query
string: they are written as ``[redacted]``.

At start it takes the store's writer lock and removes what an interrupted publish left (staging
content: an upload, a database being checked, a crate folder; a crate without a catalog row), so a
service killed mid-publish leaves nothing behind (:func:`open_store`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import html
import json
import logging
import os
import re
import socket
import sys
import time
from typing import Any
from urllib.parse import urlparse

from tornado import gen, httpserver, iostream, web
from tornado.log import access_log, app_log

from mlkkr import __version__
from mlkkr.archive.names import LICENCES, PublishRequest
from mlkkr.archive.store import (
    DEFAULT_MAX_UNPACKED,
    ConflictError,
    GoneError,
    NotFoundError,
    PermissionDenied,
    Store,
)
from mlkkr.errors import InputError, MlkkrError

DEFAULT_MAX_UPLOAD = 20 * 1024**3
#: The most of a refused upload's body that is read (and thrown away) before answering, so that the
#: connection stays usable; a larger body gets its answer at once and a gentle close.
DEFAULT_DRAIN_LIMIT = 64 * 1024**2
#: After answering a refused upload that is too large to drain: how long, and how much more, to keep
#: reading before closing (a client that reads the answer stops sending and closes first).
LINGER_SECONDS, LINGER_BYTES = 10.0, DEFAULT_DRAIN_LIMIT
_log = logging.getLogger("mlkkr.archive.service")

#: Query parameters whose values never reach a log: OAuth's code and state, tokens of any kind.
_SECRET_PARAMS = re.compile(r"(?i)(?<![a-z0-9_])((?:[a-z0-9_]*token|code|state|password|secret)=)[^&\s#'\"]*")


def redact(text: str) -> str:
    """``text`` with the values of secret query parameters (``code``, ``state``, ``*token``, ...) replaced
    by ``[redacted]``."""
    return _SECRET_PARAMS.sub(r"\1[redacted]", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secret query parameters in every record's message (tornado's
    uncaught-exception log prints the request with its full URI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def log_request(handler: web.RequestHandler) -> None:
    """The access log (tornado's format), with secret query parameters redacted."""
    status = handler.get_status()
    log = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    request = handler.request
    log("%d %s %s (%s) %.2fms", status, request.method, redact(request.uri or ""), request.remote_ip,
        1000.0 * request.request_time())


def _status_for(exc: BaseException) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, GoneError):
        return 410
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, InputError):
        return 400
    return 500


class ApiError(web.HTTPError):
    """An HTTP error with a JSON body (``status``, ``error``, ``field``, ``allowed``)."""

    def __init__(self, status: int, message: str, field: str | None = None, allowed: str | None = None):
        super().__init__(status, reason=None)
        self.message, self.field, self.allowed = message, field, allowed

    @classmethod
    def from_exc(cls, exc: MlkkrError) -> ApiError:
        return cls(_status_for(exc), str(exc), getattr(exc, "field", None), getattr(exc, "allowed", None))


class BaseHandler(web.RequestHandler):
    """Authenticates with the hub in ``prepare``: 401 without a valid token, 403 without the scope."""

    public = False  # the OpenAPI document needs no login

    @property
    def store(self) -> Store:
        return self.settings["store"]

    @property
    def auth(self):
        return self.settings["hub_auth"]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def _request_summary(self) -> str:
        return redact(super()._request_summary())

    async def authenticate(self) -> dict[str, Any] | None:
        """The user model, or None when no valid credential came; raises 403 when not allowed."""
        authenticate = self.settings.get("authenticate")
        if authenticate is not None:  # tests without a hub inject their own
            return await authenticate(self)
        from jupyterhub.services.auth import UserNotAllowed

        try:
            model = await self.auth.get_user(self, sync=False)
        except Exception as exc:  # noqa: BLE001 - the hub is down or answered nonsense
            raise ApiError(503, f"the hub could not check the token: {exc}") from None
        if not model:
            return None
        scopes = self.settings["access_scopes"]
        try:
            if not self.auth.check_scopes(scopes, model):
                raise UserNotAllowed(model)
        except UserNotAllowed:
            raise ApiError(403, f"{model.get('kind', 'user')} {model.get('name')} lacks the scope "
                           f"{' or '.join(sorted(scopes))}") from None
        return model

    @property
    def token_authenticated(self) -> bool:
        return bool(getattr(self, "_token_authenticated", False)) or self.settings.get("authenticate") is not None

    async def prepare(self) -> None:
        if self.public:
            return
        model = await self.authenticate()
        if model is None:
            if self.request.method == "GET" and not self.request.path.startswith(self.settings["api_prefix"]):
                self.redirect(self.login_url())
                return
            raise ApiError(401, "authentication required: send a JupyterHub token "
                           "(Authorization: token <token>) with the scope access:services!service=archive")
        self.current_user = model

    def login_url(self) -> str:
        from tornado.httputil import url_concat

        state = self.auth.set_state_cookie(self, next_url=self.request.uri)
        return url_concat(self.auth.login_url, {"state": state})

    @property
    def username(self) -> str:
        return self.current_user["name"]

    @property
    def is_admin(self) -> bool:
        return bool(self.current_user.get("admin"))

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data, indent=1, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MlkkrError):
            exc = ApiError.from_exc(exc)
            self.set_status(exc.status_code)
        if isinstance(exc, ApiError):
            body = {"status": exc.status_code, "error": exc.message, "field": exc.field, "allowed": exc.allowed}
        else:
            body = {"status": status_code, "error": self._reason, "field": None, "allowed": None}
        if self.get_status() == 401:
            self.set_header("WWW-Authenticate", 'token realm="jupyterhub"')
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ApiError | MlkkrError):
            _log.warning("%s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)

    def require_token(self, what: str) -> None:
        """Writes need a token in the request, not a browser cookie (no cross-site publishing)."""
        if not self.token_authenticated:
            raise ApiError(403, f"{what} needs a token in the Authorization header, not a browser session")
        if self.current_user.get("kind", "user") != "user":
            raise ApiError(403, f"only users may {what}, not a {self.current_user.get('kind')}")

    def entry_or_error(self, name: str, version: str):
        try:
            return self.store.get(name, version)
        except MlkkrError as exc:
            raise ApiError.from_exc(exc) from None


class InfoHandler(BaseHandler):
    def get(self) -> None:
        from mlkkr.archive.aiida_io import current_format_version

        self.write_json({"service": "mlkkr-archive", "version": __version__,
                         "max_upload_bytes": self.settings["max_upload"], "licences": sorted(LICENCES),
                         "aiida_export_version": current_format_version(),
                         "openapi": self.settings["api_prefix"] + "openapi.json"})


class OpenAPIHandler(BaseHandler):
    public = True

    def get(self) -> None:
        from mlkkr.archive.openapi import openapi

        self.write_json(openapi(self.settings["api_prefix"]))


class UserHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"name": self.username, "kind": self.current_user.get("kind", "user"),
                         "admin": self.is_admin})


class ListHandler(BaseHandler):
    def get(self) -> None:
        name = self.get_argument("name", None)
        withdrawn = self.get_argument("withdrawn", "false").lower() in {"1", "true", "yes"}
        try:
            entries = self.store.entries(name, include_withdrawn=withdrawn)
        except MlkkrError as exc:
            raise ApiError.from_exc(exc) from None
        self.write_json({"items": [e.as_dict() for e in entries]})


@web.stream_request_body
class NameHandler(BaseHandler):
    """GET: the versions of a name. POST: publish (the body is streamed into an unnamed file).

    Every refusal of a publish (no or a bad token, too large, bad metadata, a name that is someone
    else's) is answered after the body has been read and thrown away, so that a client or proxy still
    sending is never reset; only a body larger than ``drain_limit`` is answered at once (see
    :meth:`_refuse`)."""

    _upload = None
    _request_error: ApiError | None = None

    async def prepare(self) -> None:
        if self.request.method != "POST":
            await super().prepare()
            return
        max_upload = self.settings["max_upload"]
        try:
            await super().prepare()
            self.require_token("publish")
            length = self.request.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_upload:
                raise ApiError(413, f"archive: {int(length)} bytes is more than this store takes ({max_upload})",
                               "archive", f"at most {max_upload} bytes")
            query = {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in self.request.query_arguments.items()}
            self._publish = PublishRequest.from_query(self.path_args[0], query)
            self.store.check_free(self._publish.name, self._publish.version)
            self.store.check_owner(self._publish.name, self.username)
        except (ApiError, MlkkrError) as exc:
            await self._refuse(exc if isinstance(exc, ApiError) else ApiError.from_exc(exc))
            return
        self.request.connection.set_max_body_size(max_upload)
        self._upload = self.store.new_upload()

    async def _refuse(self, error: ApiError) -> None:
        """Answer ``error`` without resetting the connection.

        A body of at most ``drain_limit`` bytes (or none) is read and thrown away first, and ``error``
        is the answer of :meth:`post`; the connection stays open for the next request. A larger one (or
        one of unknown length beyond the limit) is answered now, with ``Connection: close``; then the
        service stops writing, reads and discards what still arrives for up to ``LINGER_SECONDS`` (or
        ``LINGER_BYTES``) and closes: a client that reads the answer while sending stops and closes
        first, so it sees the answer rather than a reset.
        """
        drain_limit = self.settings["drain_limit"]
        length = self.request.headers.get("Content-Length")
        # no Content-Length: no body, or a chunked one (drained up to the limit; tornado refuses more)
        if length is None or not length.isdigit() or int(length) <= drain_limit:
            self._request_error = error
            self.request.connection.set_max_body_size(drain_limit)
            return
        _log.warning("%s %s: %s (answered before the %s-byte body; closing gently)", self.request.method,
                     self.request.path, error.message, length)
        stream = self.request.connection.detach()
        self._finished = True  # tornado's own flag: the response is ours, written below
        body = json.dumps({"status": error.status_code, "error": error.message, "field": error.field,
                           "allowed": error.allowed}).encode()
        from tornado.httputil import responses

        head = [f"HTTP/1.1 {error.status_code} {responses.get(error.status_code, 'Error')}",
                "Content-Type: application/json; charset=UTF-8", f"Content-Length: {len(body)}",
                "Cache-Control: no-store", "Connection: close"]
        if error.status_code == 401:
            head.append('WWW-Authenticate: token realm="jupyterhub"')
        task = asyncio.ensure_future(_answer_and_linger(stream, ("\r\n".join(head) + "\r\n\r\n").encode() + body))
        _LINGERING.add(task)
        task.add_done_callback(_LINGERING.discard)

    def data_received(self, chunk: bytes) -> None:
        if self._upload is not None:  # else: a refused upload's body, thrown away
            self._upload.write(chunk)

    def get(self, name: str) -> None:
        try:
            entries = self.store.entries(name)
        except MlkkrError as exc:
            raise ApiError.from_exc(exc) from None
        if not entries:
            raise ApiError(404, f"name: {name!r}: no such item in the store", "name")
        self.write_json({"items": [e.as_dict() for e in entries]})

    async def post(self, name: str) -> None:
        if self._request_error is not None:
            raise self._request_error
        upload, self._upload = self._upload, None
        if upload.size == 0:
            upload.close()
            raise ApiError(400, "archive: the request body is empty; send the .aiida file as the body", "archive")
        _log.info("publish %s by %s: %d bytes received", name, self.username, upload.size)
        try:
            entry = await asyncio.to_thread(self.store.publish, upload, self._publish, self.username)
        except MlkkrError as exc:
            raise ApiError.from_exc(exc) from None
        _log.info("published %s (%d nodes, %d bytes) by %s", entry.ident, entry.node_count, entry.size,
                  self.username)
        self.set_header("Location", f"{self.settings['api_prefix']}items/{entry.name}/{entry.version}")
        self.write_json(entry.as_dict(), status=201)

    def _cleanup(self) -> None:
        if self._upload is not None:
            self._upload.close()
            self._upload = None

    def on_finish(self) -> None:
        self._cleanup()

    def on_connection_close(self) -> None:
        """The client went away mid-upload: drop what was received."""
        self._cleanup()


class OwnerHandler(BaseHandler):
    """GET: who owns a name. POST ``?owner=<user>``: a hub admin gives the name to another user."""

    def get(self, name: str) -> None:
        try:
            owner = self.store.owner(name)
        except MlkkrError as exc:
            raise ApiError.from_exc(exc) from None
        if owner is None:
            raise ApiError(404, f"name: {name!r}: no such item in the store", "name")
        self.write_json(owner)

    def post(self, name: str) -> None:
        self.require_token("transfer a name")
        try:
            result = self.store.transfer(name, self.get_argument("owner", ""), self.username, admin=self.is_admin)
        except MlkkrError as exc:
            raise ApiError.from_exc(exc) from None
        _log.info("name %s transferred from %s to %s by %s", name, result["previous_owner"], result["owner"],
                  self.username)
        self.write_json(result)


class ItemHandler(BaseHandler):
    def get(self, name: str, version: str) -> None:
        from mlkkr.archive.crate import read_crate

        entry = self.entry_or_error(name, version)
        crate = read_crate(self.store.crate_dir(entry)) if entry.status == "published" else None
        self.write_json({"entry": entry.as_dict(), "crate": crate})

    def delete(self, name: str, version: str) -> None:
        self.require_token("withdraw")
        try:
            entry = self.store.withdraw(name, version, self.username, admin=self.is_admin)
        except MlkkrError as exc:
            raise ApiError.from_exc(exc) from None
        _log.info("withdrawn %s by %s", entry.ident, self.username)
        self.write_json(entry.as_dict())


class FileHandler(BaseHandler):
    """Streams the archive, or the crate's metadata file, of one version."""

    async def get(self, name: str, version: str, what: str) -> None:
        entry = self.entry_or_error(name, version)
        try:
            archive = self.store.archive_path(entry)
        except MlkkrError as exc:
            raise ApiError.from_exc(exc) from None
        if what == "archive":
            path = archive
            self.set_header("Content-Type", "application/zip")
            self.set_header("Content-Disposition", f'attachment; filename="{entry.archive_file}"')
            self.set_header("X-Checksum-Sha256", entry.sha256)
        else:
            path = self.store.crate_dir(entry) / "ro-crate-metadata.json"
            self.set_header("Content-Type", "application/ld+json")
        self.set_header("Content-Length", str(path.stat().st_size))
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                self.write(chunk)
                await self.flush()
        self.finish()


class IndexHandler(BaseHandler):
    """A plain page for browsers: the catalog with download links (login through the hub)."""

    def get(self) -> None:
        rows = []
        api = self.settings["api_prefix"]
        for e in self.store.entries():
            link = f"{api}items/{e.name}/{e.version}"
            rows.append(f"<tr><td>{html.escape(e.name)}</td><td>{e.version}</td><td>{html.escape(e.title)}</td>"
                        f"<td>{html.escape(e.licence)}</td><td>{html.escape(e.owner)}</td><td>{e.node_count}</td>"
                        f"<td><a href='{link}/archive'>{html.escape(e.archive_file)}</a> · "
                        f"<a href='{link}/ro-crate-metadata.json'>RO-Crate</a></td></tr>")
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(
            "<!doctype html><html><head><meta charset='utf-8'><title>mlkkr shared store</title></head><body>"
            f"<h1>mlkkr shared store</h1><p>Signed in as {html.escape(self.username)}. Publish with "
            "<code>mlkkr archive publish GROUP --title ... --licence ... --author ...</code>; import with "
            f"<code>mlkkr archive import NAME</code>. API: <a href='{api}openapi.json'>OpenAPI</a>.</p>"
            "<table border='1' cellpadding='4'><tr><th>name</th><th>version</th><th>title</th><th>licence</th>"
            "<th>published by</th><th>nodes</th><th>files</th></tr>" + "".join(rows) + "</table></body></html>")


_LINGERING: set[asyncio.Future] = set()  # the tasks of _answer_and_linger (a task needs a reference)


async def _answer_and_linger(stream: iostream.IOStream, response: bytes) -> None:
    """Write ``response``, stop writing (FIN), read and discard for a while, close (see ``_refuse``)."""
    try:
        await stream.write(response)
        stream.socket.shutdown(socket.SHUT_WR)
        deadline, received = time.monotonic() + LINGER_SECONDS, 0
        while received < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
            # with_timeout takes a timedelta (a bare number would be an absolute IOLoop time)
            chunk = await gen.with_timeout(datetime.timedelta(seconds=left), stream.read_bytes(1 << 16, partial=True),
                                           quiet_exceptions=iostream.StreamClosedError)
            received += len(chunk)
    except (iostream.StreamClosedError, TimeoutError, OSError):
        pass
    finally:
        stream.close()


def make_app(store: Store, prefix: str = "/services/archive/", *, max_upload: int = DEFAULT_MAX_UPLOAD,
             hub_auth=None, authenticate=None, access_scopes: set[str] | None = None,
             drain_limit: int = DEFAULT_DRAIN_LIMIT) -> web.Application:
    """The tornado application. ``hub_auth``: a ``HubOAuth``; ``authenticate``: for tests without a hub;
    ``drain_limit``: the most of a refused upload's body read before answering (see ``NameHandler``)."""
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    api = prefix + "api/"
    name = r"([^/]+)"
    handlers: list[Any] = [
        (prefix, IndexHandler),
        (api, InfoHandler),
        (api + "openapi.json", OpenAPIHandler),
        (api + "user", UserHandler),
        (api + "items", ListHandler),
        (api + f"items/{name}", NameHandler),
        (api + f"items/{name}/owner", OwnerHandler),
        (api + f"items/{name}/{name}", ItemHandler),
        (api + f"items/{name}/{name}/(archive|ro-crate-metadata.json)", FileHandler),
    ]
    if hub_auth is not None:
        from jupyterhub.services.auth import HubOAuthCallbackHandler

        handlers.append((prefix + "oauth_callback", HubOAuthCallbackHandler))
    return web.Application(
        handlers,
        store=store,
        hub_auth=hub_auth,
        authenticate=authenticate,
        access_scopes=access_scopes or (set(hub_auth.access_scopes) if hub_auth is not None else set()),
        api_prefix=api,
        max_upload=max_upload,
        drain_limit=drain_limit,
        log_function=log_request,
        cookie_secret=os.urandom(32),
        default_handler_class=_NotFound,
        default_handler_args={},
    )


class _NotFound(BaseHandler):
    public = True

    def prepare(self) -> None:
        raise ApiError(404, f"no such resource: {self.request.path} (see {self.settings['api_prefix']}openapi.json)")


def open_store(root: str | os.PathLike, *, max_unpacked: int = DEFAULT_MAX_UNPACKED) -> Store:
    """The store as the service opens it at start: made (or its catalog migrated) if needed, its writer
    lock taken, and what an interrupted publish left removed (staging content, orphaned crates)."""
    store = Store(root, max_unpacked=max_unpacked)
    store.acquire_writer_lock()
    removed = store.recover()
    if removed["staging"] or removed["orphans"]:
        _log.warning("removed what interrupted publishes left: %s", removed)
    return store


def install_log_redaction() -> None:
    """Redact secret query parameters in whatever the root logger's handlers write."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlkkr.archive.service", description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=os.environ.get("MLKKR_STORE"),
                        help="the shared store's folder, made if missing [env MLKKR_STORE]")
    parser.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD // 1024**2,
                        help="largest archive accepted, in MiB (setting archive.max_upload_mb)")
    parser.add_argument("--max-unpacked-mb", type=int, default=DEFAULT_MAX_UNPACKED // 1024**2,
                        help="the most an archive may unpack to, all its files together, in MiB (setting "
                             "archive.max_unpacked_mb)")
    args = parser.parse_args(argv)
    if not args.store:
        parser.error("--store (or $MLKKR_STORE) is required")
    for option, value in (("--max-upload-mb", args.max_upload_mb), ("--max-unpacked-mb", args.max_unpacked_mb)):
        if value < 1:
            parser.error(f"{option}: {value} is not allowed; allowed: a positive number of MiB")

    from jupyterhub.services.auth import HubOAuth
    from tornado.log import enable_pretty_logging

    enable_pretty_logging()
    install_log_redaction()
    logging.getLogger("mlkkr").setLevel(logging.INFO)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10202"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/archive/")
    try:
        store = open_store(args.store, max_unpacked=args.max_unpacked_mb * 1024**2)
    except MlkkrError as exc:
        print(f"mlkkr archive service: {exc}", file=sys.stderr)
        sys.exit(2)
    max_upload = args.max_upload_mb * 1024**2
    asyncio.run(_serve(store, prefix, max_upload, url.hostname or "127.0.0.1", url.port or 80,
                       HubOAuth.instance(cache_max_age=60)))


async def _serve(store: Store, prefix: str, max_upload: int, host: str, port: int, hub_auth) -> None:
    app = make_app(store, prefix, max_upload=max_upload, hub_auth=hub_auth)
    # bodies of other requests than a publish (which raises its own limit) are refused beyond this
    server = httpserver.HTTPServer(app, max_body_size=DEFAULT_DRAIN_LIMIT, max_buffer_size=64 * 1024**2,
                                   idle_connection_timeout=3600, body_timeout=3600)
    server.listen(port, host)
    app_log.info("mlkkr archive service %s: store %s (archives unpack to at most %d MiB), listening on %s:%s%s",
                 __version__, store.root, store.max_unpacked // 1024**2, host, port, prefix)
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
