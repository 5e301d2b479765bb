"""The user's side of the store: the REST client, the read side, and publish / import / verify.

- :class:`ArchiveClient` speaks to the archive service (``$MLKKR_ARCHIVE_URL``) with a hub token
  (``$JUPYTERHUB_API_TOKEN`` in a user server; elsewhere ``$MLKKR_ARCHIVE_TOKEN`` or a file named by
  ``$MLKKR_ARCHIVE_TOKEN_FILE``: see :func:`resolve_token`). Publishing always goes through it.
- :class:`LocalSource` reads a store folder directly (``$MLKKR_STORE``, read-only in containers);
  :class:`RemoteSource` reads through the service. Both give ``entries``, ``get``, ``crate`` and
  ``fetch`` (a path to the archive: in the store itself, or downloaded and checked).
- :func:`publish_group`, :func:`import_item`, :func:`verify_item`, :func:`verify_file`: what
  ``mlkkr archive`` and the Data archive app call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mlkkr.archive.names import PublishRequest, slug, validate_name, validate_version
from mlkkr.archive.store import (
    ConflictError,
    Entry,
    GoneError,
    NotFoundError,
    PermissionDenied,
    StoreReader,
)
from mlkkr.errors import InputError, ServiceError

ENV_URL = "MLKKR_ARCHIVE_URL"
ENV_TOKEN = "MLKKR_ARCHIVE_TOKEN"
ENV_TOKEN_FILE = "MLKKR_ARCHIVE_TOKEN_FILE"
ENV_STORE = "MLKKR_STORE"


def entry_from_dict(data: dict[str, Any]) -> Entry:
    names = {f.name for f in dataclasses.fields(Entry)}
    return Entry(**{k: v for k, v in data.items() if k in names})


class _ProgressFile:
    """A file object for ``requests`` that reports what was read to a tqdm bar; has a length."""

    def __init__(self, path: Path, progress: bool) -> None:
        from mlkkr.archive.aiida_io import _bar

        self._handle = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size = path.stat().st_size
        self._bar_cm = _bar(progress, self._size, "upload")
        self._bar = self._bar_cm.__enter__()

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size if size and size > 0 else 1 << 20)
        self._bar.update(len(chunk))
        return chunk

    def close(self) -> None:
        self._handle.close()
        self._bar_cm.__exit__(None, None, None)


class ArchiveClient:
    """Client of the archive service's REST API (see ``api/openapi.json``)."""

    def __init__(self, url: str, token: str | None, timeout: float = 60) -> None:
        if not url:
            raise InputError("url", url, reason=f"the archive service's URL is unknown: set ${ENV_URL} (a user "
                             "server has it) or pass --url http://<hub>/services/archive/")
        self.url = url.rstrip("/") + "/"
        self.api = self.url + "api/"
        self.token = token
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def request(self, method: str, path: str, **kwargs: Any):
        import requests

        kwargs.setdefault("timeout", self.timeout)
        headers = {**kwargs.pop("headers", {}), **self._headers()}
        try:
            response = requests.request(method, self.api + path, headers=headers, **kwargs)
        except requests.ConnectionError as exc:
            raise ServiceError(f"the archive service at {self.url} is not reachable ({exc.__class__.__name__}); "
                               "is the hub running? (the hub starts the service)") from None
        except requests.Timeout:
            raise ServiceError(f"the archive service at {self.url} did not answer in {self.timeout} s") from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response) -> Exception:
        try:
            body = response.json()
            message, field = body.get("error") or response.reason, body.get("field")
        except ValueError:
            message, field = f"{response.status_code} {response.reason}", None
        status = response.status_code
        if status == 401:
            return InputError("token", reason=f"the archive service refused the request: {message}. In a user "
                              f"server $JUPYTERHUB_API_TOKEN is used; elsewhere set ${ENV_TOKEN}, or "
                              f"--token-file / ${ENV_TOKEN_FILE} to a file holding a hub token (hub → Token page)")
        if status == 403:
            error = PermissionDenied(field or "request", reason=message)
            error.args = (message,)  # the service's message names the field already
            return error
        if status >= 500:
            return ServiceError(f"the archive service failed ({status}): {message}")
        cls = {404: NotFoundError, 409: ConflictError, 410: GoneError}.get(status, InputError)
        error = cls(field or "request", reason=message)
        error.args = (message,)  # the service's message names the field already
        return error

    # -- reading ----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self.request("GET", "").json()

    def whoami(self) -> dict[str, Any]:
        return self.request("GET", "user").json()

    def entries(self, name: str | None = None, include_withdrawn: bool = False) -> list[Entry]:
        params = {"withdrawn": "true" if include_withdrawn else "false"}
        if name is not None:
            params["name"] = validate_name(name)
        return [entry_from_dict(e) for e in self.request("GET", "items", params=params).json()["items"]]

    def show(self, name: str, version: int | str | None = None) -> dict[str, Any]:
        version = "latest" if version in (None, "", "latest") else validate_version(version)
        return self.request("GET", f"items/{validate_name(name)}/{version}").json()

    def get(self, name: str, version: int | str | None = None) -> Entry:
        return entry_from_dict(self.show(name, version)["entry"])

    def download(self, entry: Entry, dest: Path, progress: bool = False, check: bool = True) -> Path:
        """Download the archive of ``entry`` to ``dest`` (a new file), checking its SHA-256."""
        from mlkkr.archive.aiida_io import _bar

        response = self.request("GET", f"items/{entry.name}/{entry.version}/archive", stream=True)
        digest = hashlib.sha256()
        with open(dest, "xb") as handle, _bar(progress, entry.size, "download") as bar:
            for chunk in response.iter_content(1 << 20):
                handle.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if check and digest.hexdigest() != entry.sha256:
            dest.unlink(missing_ok=True)
            raise InputError("archive", entry.archive_file, reason=f"the download's checksum {digest.hexdigest()} "
                             f"is not the catalog's {entry.sha256}: truncated or altered on the way")
        return dest

    # -- writing ----------------------------------------------------------------------------------

    def publish(self, path: str | os.PathLike, request: PublishRequest, progress: bool = False) -> Entry:
        """Upload the archive at ``path`` (streamed) with the metadata of ``request``."""
        body = _ProgressFile(Path(path), progress)
        try:
            response = self.request("POST", f"items/{request.name}", params=request.to_query(), data=body,
                                    headers={"Content-Type": "application/octet-stream"},
                                    timeout=(self.timeout, 3600))
        finally:
            body.close()
        return entry_from_dict(response.json())

    def owner(self, name: str) -> dict[str, Any]:
        """Who owns ``name`` (its first publisher, or whom a hub admin gave it to)."""
        return self.request("GET", f"items/{validate_name(name)}/owner").json()

    def transfer(self, name: str, owner: str) -> dict[str, Any]:
        """Give ``name`` to the user ``owner`` (hub admins only; others get PermissionDenied)."""
        return self.request("POST", f"items/{validate_name(name)}/owner", params={"owner": owner}).json()

    def withdraw(self, name: str, version: int | str) -> Entry:
        version = validate_version(version, required=True)
        return entry_from_dict(self.request("DELETE", f"items/{validate_name(name)}/{version}").json())

    def request_free(self, name: str, version: int | None) -> None:
        """ConflictError when ``name``-``version`` exists (checked before a long export)."""
        if version is None:
            return
        try:
            entry = self.get(name, version)
        except NotFoundError:
            return
        raise ConflictError("version", version, reason=f"{entry.ident} exists already (published by {entry.owner}, "
                            f"{entry.status}); published versions are immutable: leave out --version to get "
                            "the next one")


# -- sources: where list/show/import/verify read from -----------------------------------------------


class LocalSource:
    """The store folder itself (read-only)."""

    kind = "store"

    def __init__(self, root: str | os.PathLike) -> None:
        self.reader = StoreReader(root)
        self.where = str(self.reader.root)

    def entries(self, name: str | None = None, include_withdrawn: bool = False) -> list[Entry]:
        return self.reader.entries(name, include_withdrawn)

    def get(self, name: str, version: int | str | None = None) -> Entry:
        return self.reader.get(name, version)

    def crate(self, entry: Entry) -> dict[str, Any]:
        from mlkkr.archive.crate import read_crate

        self.reader.archive_path(entry)  # GoneError if withdrawn
        return read_crate(self.reader.crate_dir(entry))

    @contextlib.contextmanager
    def fetch(self, entry: Entry, progress: bool = False, check: bool = True) -> Iterator[Path]:
        yield self.reader.archive_path(entry)


class RemoteSource:
    """The store through the archive service."""

    kind = "service"

    def __init__(self, client: ArchiveClient) -> None:
        self.client = client
        self.where = client.url

    def entries(self, name: str | None = None, include_withdrawn: bool = False) -> list[Entry]:
        return self.client.entries(name, include_withdrawn)

    def get(self, name: str, version: int | str | None = None) -> Entry:
        return self.client.get(name, version)

    def crate(self, entry: Entry) -> dict[str, Any]:
        crate = self.client.show(entry.name, entry.version)["crate"]
        if crate is None:
            raise GoneError("version", entry.version, reason=f"{entry.ident} was withdrawn")
        return crate

    @contextlib.contextmanager
    def fetch(self, entry: Entry, progress: bool = False, check: bool = True) -> Iterator[Path]:
        """Download to a temporary folder; ``check``: refuse a download whose checksum is wrong."""
        with tempfile.TemporaryDirectory(prefix="mlkkr-archive-") as tmp:
            yield self.client.download(entry, Path(tmp) / entry.archive_file, progress, check=check)


def read_token_file(path: str | os.PathLike, field_name: str = "token-file") -> str:
    """The token in ``path`` (its first line; surrounding blanks dropped)."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(field_name, str(path), reason=f"cannot read the token file ({exc.__class__.__name__}: "
                         f"{getattr(exc, 'strerror', None) or exc})") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise InputError(field_name, str(path), reason="the token file is empty")
    return token


def resolve_token(token: str | None = None, token_file: str | os.PathLike | None = None) -> str | None:
    """The hub token to use: ``token``; else the file ``token_file``; else ``$MLKKR_ARCHIVE_TOKEN``; else the
    file named by ``$MLKKR_ARCHIVE_TOKEN_FILE``; else ``$JUPYTERHUB_API_TOKEN`` (a user server's own).

    A token given on a command line is visible to other users of the machine (``ps``); a file or an
    environment variable is not.
    """
    if token:
        return token
    if token_file:
        return read_token_file(token_file)
    if os.environ.get(ENV_TOKEN):
        return os.environ[ENV_TOKEN]
    if os.environ.get(ENV_TOKEN_FILE):
        return read_token_file(os.environ[ENV_TOKEN_FILE], ENV_TOKEN_FILE)
    return os.environ.get("JUPYTERHUB_API_TOKEN") or None


def client_from_env(url: str | None = None, token: str | None = None,
                    token_file: str | os.PathLike | None = None) -> ArchiveClient:
    return ArchiveClient(url or os.environ.get(ENV_URL, ""), resolve_token(token, token_file))


def open_source(store: str | None = None, url: str | None = None, token: str | None = None):
    """The store folder when one is given or ``$MLKKR_STORE`` is readable, else the service."""
    if url is None and store is None:
        store = os.environ.get(ENV_STORE) or None
        if store is not None and not Path(store).is_dir():
            store = None
    if store is not None:
        if not Path(store).is_dir():
            raise InputError("store", store, reason="no such folder")
        return LocalSource(store)
    if not (url or os.environ.get(ENV_URL)):
        raise InputError("store", None, reason=f"nothing to read from: give the store folder (--store, "
                         f"${ENV_STORE}) or the archive service (--url, ${ENV_URL}); a user server has both")
    return RemoteSource(client_from_env(url, token))


# -- what the CLI and apps call -----------------------------------------------------------------------


def publish_group(group_identifier: str, *, client: ArchiveClient, title: str | None, licence: str | None,
                  authors: Iterable[str], name: str | None = None, description: str | None = None,
                  keywords: Iterable[str] = (), version: int | str | None = None, progress: bool = False,
                  workdir: str | os.PathLike | None = None) -> Entry:
    """Export a Group of the loaded profile with aiida-core and publish it through the service.

    Everything that can be checked is checked before the export (metadata, the token, a requested
    version being free); the archive is made in a temporary folder that is removed afterwards.
    """
    from mlkkr.archive.aiida_io import export_group, load_group, sha256_file

    group = load_group(group_identifier)
    if name is None:
        name = slug(group.label)
        if not name:
            raise InputError("name", group.label, reason="the group's label gives no valid item name: pass --name")
    request = PublishRequest.build(name=name, title=title, licence=licence, authors=list(authors),
                                   sha256="0" * 64, version=version, description=description,
                                   keywords=list(keywords))
    client.whoami()
    client.request_free(request.name, request.version)
    with tempfile.TemporaryDirectory(prefix="mlkkr-publish-", dir=workdir) as tmp:
        path = export_group(group, Path(tmp) / f"{request.name}.aiida", progress=progress)
        request = dataclasses.replace(request, sha256=sha256_file(path, progress=progress))
        return client.publish(path, request, progress=progress)


def import_item(source, name: str, version: int | str | None = None, progress: bool = False) -> dict[str, Any]:
    """Import a published item into the loaded profile: checksum first, then aiida's importer."""
    from mlkkr.archive.aiida_io import import_checked

    entry = source.get(name, version)
    with source.fetch(entry, progress) as path:
        report = import_checked(path, entry.sha256, progress=progress)
    return {"name": entry.name, "version": entry.version, "source": source.where, **report}


def import_file(path: str | os.PathLike, sha256: str | None = None, progress: bool = False) -> dict[str, Any]:
    from mlkkr.archive.aiida_io import import_checked
    from mlkkr.archive.names import validate_sha256

    expected = validate_sha256(sha256) if sha256 is not None else None
    return {"file": str(path), **import_checked(path, expected, progress=progress)}


def _checks(path: Path, expected: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Checksum, aiida's reader, and the expected values (``{"catalog.sha256": ..., "crate.node_count": ...}``)."""
    from mlkkr.archive.aiida_io import inspect_archive, sha256_file

    digest = sha256_file(path, progress=progress, desc="verify")
    problems = []
    try:
        info = inspect_archive(path)
    except InputError as exc:
        info = None
        problems.append(str(exc))
    found = {"sha256": digest, "node_count": info.node_count if info else None}
    for what, value in expected.items():
        got = found[what.split(".")[-1]]
        if got is not None and value != got:
            problems.append(f"{what}: expected {value}, found {got}")
    return {"ok": not problems, "readable": info is not None, "sha256": digest, "node_count": found["node_count"],
            "export_version": info.export_version if info else None, "problems": problems}


def verify_item(source, name: str, version: int | str | None = None, progress: bool = False) -> dict[str, Any]:
    """Recompute the checksum, read the archive with aiida, compare with the catalog and the crate."""
    entry = source.get(name, version)
    crate = source.crate(entry)
    expected = {"catalog.sha256": entry.sha256, "crate.sha256": crate["archive"]["sha256"],
                "catalog.node_count": entry.node_count, "crate.node_count": crate["archive"]["node_count"]}
    with source.fetch(entry, progress, check=False) as path:
        report = _checks(path, expected, progress)
    return {"name": entry.name, "version": entry.version, "source": source.where, **report}


def verify_file(path: str | os.PathLike, sha256: str | None = None, progress: bool = False) -> dict[str, Any]:
    from mlkkr.archive.names import validate_sha256

    expected = {"sha256": validate_sha256(sha256)} if sha256 is not None else {}
    return {"file": str(path), **_checks(Path(path), expected, progress)}
