"""The installed apps: their AiiDAlab-style metadata, and their installation into a user's home.

An app is a folder (``apps/<name>/`` in the repository; ``$MLKKR_APPS/<name>/`` in the images) with

* ``metadata.json`` — AiiDAlab's app metadata: ``title``, ``description``, ``version``, ``authors``,
  ``logo`` (a file in the folder), ``categories``, ``state``; plus mlkkr's ``notebook`` (the Voila
  entry notebook in the folder), ``order`` (the tile's place in the home launcher) and ``launcher``
  (whether JupyterLab's launcher gets a card for it);
* ``start.md`` — the start tile: a few lines of Markdown shown under the title in the home launcher;
* the logo, and the thin notebook that only imports its app from :mod:`mlkkr.apps`.

:func:`install_apps` copies the folders into ``<home>/apps/`` (AiiDAlab's place for apps; a folder is
replaced only when its version differs, so a user's own edits survive restarts) and writes the
``jupyter-app-launcher`` configuration that puts the apps into JupyterLab's launcher. This module
imports neither AiiDA nor ipywidgets: the hub calls it at every server start.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlkkr.errors import InputError

#: where a home keeps its apps (AiiDAlab's convention)
APPS_FOLDER = "apps"
#: the jupyter-app-launcher configuration file (the extension reads ``jp_app_launcher*.yaml`` from
#: ``<jupyter data dir>/jupyter_app_launcher/``; the user's data dir is ``~/.local/share/jupyter``)
LAUNCHER_CONFIG = Path(".local/share/jupyter/jupyter_app_launcher/jp_app_launcher_mlkkr.yaml")
#: Voila's configuration in the home (``~/.jupyter/voila.json``, read by the Voila server extension):
#: JupyterLab extensions that only make sense in JupyterLab are not loaded into app pages (they fail
#: there and slow the page down). Written once; a user's own file is never replaced.
VOILA_CONFIG = Path(".jupyter/voila.json")
VOILA_DENYLIST = ["jupyter_app_launcher", "@jupyterhub/jupyter-server-proxy", "@jupyter-notebook/lab-extension",
                  "@voila-dashboards/jupyterlab-preview"]
REQUIRED = ("title", "description", "version", "logo", "categories", "notebook")


@dataclass(frozen=True)
class AppInfo:
    """One app's metadata (``metadata.json``) and its folder."""

    name: str
    folder: Path
    title: str
    description: str
    version: str
    logo: str
    notebook: str
    categories: tuple[str, ...] = ()
    authors: str = ""
    state: str = "stable"
    order: int = 100
    launcher: bool = True
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def start_md(self) -> str:
        """The start tile's Markdown (empty when the app has none)."""
        path = self.folder / "start.md"
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def voila_path(self) -> str:
        """The entry notebook's path relative to the home (what Voila's ``/voila/render/`` takes)."""
        return f"{APPS_FOLDER}/{self.name}/{self.notebook}"


def read_app(folder: str | os.PathLike) -> AppInfo:
    """Read and check an app folder; InputError (field ``metadata.json:<key>``) when it is not an app."""
    folder = Path(folder)
    meta_path = folder / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("app", str(folder), reason="no metadata.json: not an app folder") from None
    except json.JSONDecodeError as exc:
        raise InputError("metadata.json", str(meta_path), reason=f"not valid JSON ({exc})") from None
    for key in REQUIRED:
        if not meta.get(key):
            raise InputError(f"metadata.json:{key}", meta.get(key), reason=f"missing in {meta_path}")
    for key in ("logo", "notebook"):
        if not (folder / meta[key]).is_file():
            raise InputError(f"metadata.json:{key}", meta[key], reason=f"no such file in {folder}")
    known = {"title", "description", "version", "logo", "notebook", "categories", "authors", "state", "order",
             "launcher"}
    return AppInfo(name=folder.name, folder=folder, title=meta["title"], description=meta["description"],
                   version=str(meta["version"]), logo=meta["logo"], notebook=meta["notebook"],
                   categories=tuple(meta["categories"]), authors=meta.get("authors", ""),
                   state=meta.get("state", "stable"), order=int(meta.get("order", 100)),
                   launcher=bool(meta.get("launcher", True)),
                   extra={k: v for k, v in meta.items() if k not in known})


def discover(root: str | os.PathLike) -> list[AppInfo]:
    """The apps in the folders of ``root`` (folders without ``metadata.json`` are skipped), in tile order."""
    root = Path(root)
    if not root.is_dir():
        return []
    apps = [read_app(p) for p in sorted(root.iterdir()) if (p / "metadata.json").is_file()]
    return sorted(apps, key=lambda a: (a.order, a.name))


def source_dir() -> Path:
    """Where the platform's apps come from: ``$MLKKR_APPS`` (the images), else the repository's ``apps/``."""
    env = os.environ.get("MLKKR_APPS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "apps"


def _copy_app(app: AppInfo, dest: Path) -> None:
    """Replace ``dest`` by a copy of the app folder, atomically (copy next to it, then swap)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{app.name}.", dir=dest.parent))
    try:
        shutil.copytree(app.folder, tmp / app.name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        old = None
        if dest.exists():
            old = dest.with_name(f".{app.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
        os.replace(tmp / app.name, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def launcher_yaml(apps: list[AppInfo], base_url: str) -> str:
    """The jupyter-app-launcher configuration: one card per app in JupyterLab's launcher.

    Each card is of type ``url``: it opens the app rendered by the server's own Voila extension
    (``<base_url>voila/render/apps/<name>/<notebook>``) in a JupyterLab tab, with no extra server
    process per click. ``base_url`` is the server's prefix (``/user/<name>/`` under the hub).
    """
    import yaml

    base = base_url if base_url.endswith("/") else base_url + "/"
    entries = []
    for app in apps:
        if not app.launcher:
            continue
        entries.append({
            "title": app.title,
            "description": app.description,
            "type": "url",
            "source": f"{base}voila/render/{app.voila_path()}",
            "icon": str(app.folder / app.logo),
            "catalog": "AiiDAlab apps",
            "args": {"createNewWindow": False},
        })
    return yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)


def install_apps(home: str | os.PathLike, source: str | os.PathLike | None = None,
                 base_url: str | None = None) -> list[AppInfo]:
    """Install the platform's apps into ``<home>/apps/`` and JupyterLab's launcher; return them.

    An installed app is replaced only when its ``version`` differs from the platform's; apps the user
    added to ``<home>/apps/`` are left alone. ``base_url``: the server's URL prefix (default
    ``$JUPYTERHUB_SERVICE_PREFIX``, else ``/``). Safe to call at every start: it never raises (a server
    must start without its apps rather than not at all); problems are printed to stderr.
    """
    home = Path(home)
    target = home / APPS_FOLDER
    installed: list[AppInfo] = []
    try:
        apps = discover(source or source_dir())
    except (OSError, InputError) as exc:
        print(f"mlkkr: apps not installed: {exc}", file=sys.stderr, flush=True)
        return installed
    for app in apps:
        dest = target / app.name
        try:
            try:
                current = read_app(dest) if dest.exists() else None
            except InputError:
                current = None
            if current is None or current.version != app.version:
                _copy_app(app, dest)
            installed.append(read_app(dest))
        except (OSError, InputError) as exc:
            print(f"mlkkr: app {app.name} not installed: {exc}", file=sys.stderr, flush=True)
    base = base_url if base_url is not None else os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    config = home / LAUNCHER_CONFIG
    try:
        config.parent.mkdir(parents=True, exist_ok=True)
        tmp = config.with_suffix(".tmp")
        tmp.write_text(launcher_yaml(installed, base), encoding="utf-8")
        os.replace(tmp, config)
    except OSError as exc:
        print(f"mlkkr: JupyterLab launcher cards not written: {exc}", file=sys.stderr, flush=True)
    voila = home / VOILA_CONFIG
    if not voila.exists():
        try:
            voila.parent.mkdir(parents=True, exist_ok=True)
            voila.write_text(json.dumps({"VoilaConfiguration": {"extension_denylist": VOILA_DENYLIST}}, indent=2))
        except OSError as exc:
            print(f"mlkkr: {voila} not written: {exc}", file=sys.stderr, flush=True)
    return installed
