"""The home launcher: one tile per app installed in ``~/apps`` (logo, title, start text, open link).

Tiles link to the apps' notebooks relative to the home launcher's own Voila URL
(``…/voila/render/apps/home/home.ipynb`` → ``…/voila/render/apps/<name>/<notebook>``), so the same
page works under any hub prefix. No AiiDA import: it renders at once.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import ipywidgets as ipw

from mlkkr.apps.registry import APPS_FOLDER, AppInfo, discover
from mlkkr.apps.widgets import STYLE, header


def _logo_uri(app: AppInfo) -> str:
    path = app.folder / app.logo
    mime = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg"}.get(path.suffix.lower(), "image/png")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _markdown(text: str) -> str:
    """The start tile's text: Markdown rendered when the package is there, else plain escaped text."""
    try:
        import markdown  # type: ignore[import-not-found]

        return markdown.markdown(text)
    except ImportError:
        return "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p.strip())


def tile_html(app: AppInfo, href: str) -> str:
    """One tile: the whole card is the link that opens the app."""
    cats = ", ".join(app.categories)
    return (f'<a class="mlkkr-tile-link" data-app="{html.escape(app.name)}" href="{html.escape(href)}" '
            f'style="text-decoration: none; color: inherit;">'
            f'<div class="mlkkr-tile mlkkr-tile-{html.escape(app.name)}">'
            f'<div style="display: flex; align-items: center; gap: 10px;">'
            f'<img src="{_logo_uri(app)}" width="48" height="48" alt="">'
            f'<div><b style="font-size: 1.15em;">{html.escape(app.title)}</b>'
            f'<div class="mlkkr-help">v{html.escape(app.version)} · {html.escape(cats)}</div></div></div>'
            f'<div style="margin-top: 6px;">{_markdown(app.start_md)}</div></div></a>')


class HomeLauncher(ipw.VBox):
    """Tiles of the apps in ``<home>/apps`` (the home launcher itself left out)."""

    def __init__(self, home: str | Path | None = None) -> None:
        root = Path(home) if home is not None else Path.home()
        self.apps = [a for a in discover(root / APPS_FOLDER) if a.name != "home"]
        tiles = [tile_html(a, f"../{a.name}/{a.notebook}") for a in self.apps]
        grid = ipw.HTML('<div class="mlkkr-tiles" style="display: flex; flex-wrap: wrap;">' + "".join(tiles)
                        + "</div>")
        if not self.apps:
            grid = ipw.HTML(f'<span class="mlkkr-help">No apps installed in {html.escape(str(root / APPS_FOLDER))}.'
                            "</span>")
        super().__init__([ipw.HTML(STYLE), header("mlkkr apps", "KKR Green-function simulations and machine "
                                                  "learning on AiiDA. Click a tile to open its app."), grid])
        self.add_class("mlkkr-app")
        self.add_class("mlkkr-home")
