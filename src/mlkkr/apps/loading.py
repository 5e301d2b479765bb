"""Load an app's AiiDA side after its first widgets are on screen.

Importing aiida-core's engine, aiidalab-widgets-base and loading the profile takes seconds (much more
on a busy machine). Voila shows a notebook's widgets only once its cells have run, so an app's cell
builds the light, pure-ipywidgets part of its form and returns at once; :class:`LazyApp` then loads the
profile and the heavy widgets in a background thread and swaps them in, with a progress bar meanwhile.
``wait_loaded()`` lets tests (and callers that need it) block until that is done.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import ipywidgets as ipw

from mlkkr.apps.widgets import STYLE, Progress, in_background


def awb_css() -> str:
    """aiidalab-widgets-base's style sheets, read without importing the package (slow)."""
    spec = importlib.util.find_spec("aiidalab_widgets_base")
    if spec is None or not spec.submodule_search_locations:
        return ""
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" / "styles"
    return "\n".join(p.read_text() for p in sorted(folder.glob("*.css"))) if folder.is_dir() else ""


def load_profile() -> Any:
    """Load the default AiiDA profile (once)."""
    from aiida import get_profile
    from aiida import load_profile as _load

    return get_profile() or _load()


class LazyApp(ipw.VBox):
    """Base of the apps: light widgets first, then ``_load()`` in a thread (``self.loading`` shows it)."""

    loading_message = "Loading the AiiDA profile and widgets …"

    def _init_loading(self) -> Progress:
        """Make ``self.loading`` (subclasses call this before building their children)."""
        if getattr(self, "loading", None) is None:
            self.loading = Progress()
        return self.loading

    def __init__(self, children: list[ipw.Widget], background: bool = True, **kwargs: Any) -> None:
        self._init_loading()
        self.loaded = threading.Event()
        self.load_error: BaseException | None = None
        css = ipw.HTML(STYLE + "<style>" + awb_css() + "</style>")
        super().__init__(children=[css, *children], **kwargs)
        self.add_class("mlkkr-app")
        self.loading.start(self.loading_message)
        if background:
            in_background(self._run_load, name=f"{type(self).__name__}-load")
        else:
            self._run_load()

    def _run_load(self) -> None:
        try:
            load_profile()
            self._load()
            self.loading.done("Ready.")
            self.loading.layout.display = "none"
            self.add_class("mlkkr-loaded")
        except BaseException as exc:  # noqa: BLE001 - shown on the page
            self.load_error = exc
            self.loading.fail(f"Could not load: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.loaded.set()

    def _load(self) -> None:  # pragma: no cover - overridden
        """Build the AiiDA-dependent widgets (runs in a thread)."""

    def wait_loaded(self, timeout: float = 300) -> None:
        if not self.loaded.wait(timeout):
            raise TimeoutError(f"{type(self).__name__} did not load in {timeout} s")
        if self.load_error is not None:
            raise self.load_error
