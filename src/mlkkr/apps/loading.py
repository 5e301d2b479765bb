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


def kernel_loop() -> Any:
    """The IPython kernel's main-thread IOLoop, or None outside a kernel."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    shell = get_ipython()
    return getattr(getattr(shell, "kernel", None), "io_loop", None)


def call_with_portal(fn: Any) -> Any:
    """Call ``fn()`` so that it may run AiiDA processes (a calcfunction) from a widget callback.

    In a kernel, a callback runs on the kernel's running event loop, where aiida-core runs a process
    only through a greenback portal; it opens one for cell executions, not for widget messages. So in
    a kernel ``fn`` runs in a task of that loop that opens the portal first (returns None); outside a
    kernel it is called at once (returns its result). ORM objects stay on the kernel's main thread.
    """
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return fn()

    async def run() -> None:
        from plumpy import ensure_portal

        await ensure_portal()
        fn()

    loop.create_task(run())
    return None


#: modules every app needs and that take seconds to import (imported in the background thread)
SLOW_IMPORTS = ("aiida.orm", "aiida.engine", "aiidalab_widgets_base", "plotly.graph_objects", "mlkkr.aiida.launch")


class LazyApp(ipw.VBox):
    """Base of the apps: light widgets first, then the AiiDA side (``self.loading`` shows progress).

    Loading has two steps. :meth:`_imports` runs in a background thread and only imports modules
    (seconds of CPU, no database). :meth:`_load` then runs on the kernel's main thread (scheduled on
    its IOLoop): it loads the profile and builds the widgets that query the database — AiiDA's ORM
    objects belong to the thread that loaded them, so everything the app's callbacks use must be
    made there. Outside a kernel (tests) or with ``background=False`` both steps run at once.
    """

    loading_message = "Loading the AiiDA profile and widgets …"
    slow_imports: tuple[str, ...] = SLOW_IMPORTS

    def _init_loading(self) -> Progress:
        """Make ``self.loading`` (subclasses call this before building their children)."""
        if getattr(self, "loading", None) is None:
            self.loading = Progress()
            self.loading.add_class("mlkkr-loading")
        return self.loading

    def __init__(self, children: list[ipw.Widget], background: bool = True, **kwargs: Any) -> None:
        self._init_loading()
        self.loaded = threading.Event()
        self.load_error: BaseException | None = None
        css = ipw.HTML(STYLE + "<style>" + awb_css() + "</style>")
        super().__init__(children=[css, *children], **kwargs)
        self.add_class("mlkkr-app")
        self.loading.start(self.loading_message)
        loop = kernel_loop() if background else None
        if loop is None:
            self._run_load()
        else:
            in_background(lambda: self._import_then(loop), name=f"{type(self).__name__}-imports")

    def _import_then(self, loop: Any) -> None:
        try:
            self._imports()
        except BaseException as exc:  # noqa: BLE001 - shown on the page by _run_load
            self.load_error = exc
        loop.add_callback(self._run_load)

    def _imports(self) -> None:
        """Import the slow modules (runs in a thread: no database access here)."""
        import importlib

        for name in self.slow_imports:
            importlib.import_module(name)

    def _run_load(self) -> None:
        try:
            if self.load_error is not None:
                raise self.load_error
            load_profile()
            self._load()
            self.loading.done("Ready.")
            self.loading.layout.display = "none"
            self.add_class("mlkkr-loaded")
        except BaseException as exc:  # noqa: BLE001 - shown on the page
            self.load_error = exc
            self.loading.fail(f"Could not load: {type(exc).__name__}: {exc}")
        finally:
            self.loaded.set()

    def _load(self) -> None:  # pragma: no cover - overridden
        """Build the AiiDA-dependent widgets (on the kernel's main thread)."""

    def check_ready(self) -> None:
        """For button callbacks (kernel main thread, which also runs the loading): raise if not loaded."""
        if not self.loaded.is_set():
            raise RuntimeError("the app is still loading: try again when its progress bar has gone")
        if self.load_error is not None:
            raise RuntimeError(f"the app could not load: {self.load_error}")

    def wait_loaded(self, timeout: float = 300) -> None:
        """Block until loaded (only from a thread other than the kernel's main one, or after loading)."""
        if not self.loaded.wait(timeout):
            raise TimeoutError(f"{type(self).__name__} did not load in {timeout} s")
        if self.load_error is not None:
            raise self.load_error
