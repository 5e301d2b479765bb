"""Building blocks shared by the apps: fields that explain errors next to themselves, progress, tables.

* :class:`Field` — a labelled control with an error line under it; :class:`Form` routes an
  :class:`~mlkkr.errors.InputError` to the field it names (``impurities[1].site`` → the field
  registered as ``impurities[1]`` or ``impurities``), and anything it cannot place to its own line.
* :class:`Progress` — a progress bar with a status line for every long action (determinate when the
  total is known, a running stripe otherwise); ``done`` / ``fail`` leave the outcome visible.
* :func:`in_background` — run a slow step in a thread, reporting failure on a Progress instead of
  losing the traceback in a kernel log.
* :func:`html_table` — a plain HTML table (values escaped).

CSS classes (``mlkkr-*``) are what the browser tests look for.
"""

from __future__ import annotations

import html
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ipywidgets as ipw

from mlkkr.errors import InputError

STYLE = """
<style>
.mlkkr-app { max-width: 1200px; }
.mlkkr-header h2 { margin: 0.2em 0; }
.mlkkr-field-error { color: #c53030; font-size: 0.92em; min-height: 0; }
.mlkkr-field-invalid input, .mlkkr-field-invalid select, .mlkkr-field-invalid textarea
  { border-color: #c53030 !important; }
.mlkkr-help { color: #4a5568; font-size: 0.9em; }
.mlkkr-table { border-collapse: collapse; font-size: 0.9em; }
.mlkkr-table th, .mlkkr-table td { border: 1px solid #cbd5e0; padding: 2px 8px; text-align: right; }
.mlkkr-table th { background: #edf2f7; }
.mlkkr-status-ok { color: #2f855a; }
.mlkkr-status-failed { color: #c53030; }
.mlkkr-tile { border: 1px solid #cbd5e0; border-radius: 10px; padding: 10px; margin: 6px; width: 270px; }
.mlkkr-tile:hover { box-shadow: 0 2px 8px rgba(0,0,0,0.15); }
</style>
"""


def style() -> ipw.HTML:
    """The apps' CSS (a widget, so that it travels with the app's output)."""
    return ipw.HTML(STYLE)


def header(title: str, subtitle: str = "") -> ipw.HTML:
    sub = f'<div class="mlkkr-help">{html.escape(subtitle)}</div>' if subtitle else ""
    widget = ipw.HTML(f"<h2>{html.escape(title)}</h2>{sub}")
    widget.add_class("mlkkr-header")
    return widget


class Field(ipw.VBox):
    """A control with an explanation line under it that shows this field's error."""

    def __init__(self, name: str, control: ipw.Widget, help: str = "", **kwargs: Any) -> None:
        self.name = name
        self.control = control
        self.error = ipw.HTML("", layout={"display": "none"})
        self.error.add_class("mlkkr-field-error")
        self.error.add_class(f"mlkkr-error-{css_name(name)}")
        children = [control]
        if help:
            hint = ipw.HTML(f'<span class="mlkkr-help">{html.escape(help)}</span>')
            children.append(hint)
        children.append(self.error)
        super().__init__(children=children, **kwargs)
        self.add_class("mlkkr-field")
        self.add_class(f"mlkkr-field-{css_name(name)}")

    def set_error(self, message: str) -> None:
        self.error.value = html.escape(message)
        self.error.layout.display = None
        self.add_class("mlkkr-field-invalid")

    def clear(self) -> None:
        self.error.value = ""
        self.error.layout.display = "none"
        self.remove_class("mlkkr-field-invalid")

    @property
    def message(self) -> str:
        return html.unescape(self.error.value)


def css_name(name: str) -> str:
    """``impurities[1].site`` → ``impurities-1-site`` (for CSS classes)."""
    out = "".join(c if c.isalnum() else "-" for c in name)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def explain(exc: InputError) -> str:
    """The message shown next to a field: the reason and the allowed values, without the field name."""
    text = str(exc)
    prefix = f"{exc.field}: "
    return text[len(prefix):] if text.startswith(prefix) else text


class Form:
    """Fields by name, and a general error line for what no field claims."""

    def __init__(self, fields: Iterable[Field] = ()) -> None:
        self.fields: dict[str, Field] = {}
        self.general = ipw.HTML("")
        self.general.add_class("mlkkr-field-error")
        self.general.add_class("mlkkr-form-error")
        for f in fields:
            self.add(f)

    def add(self, field: Field) -> Field:
        self.fields[field.name] = field
        return field

    def remove(self, name: str) -> None:
        self.fields.pop(name, None)

    def clear(self) -> None:
        for f in self.fields.values():
            f.clear()
        self.general.value = ""

    def field_for(self, name: str) -> Field | None:
        """The registered field that best matches an error's field name (longest matching prefix)."""
        best = None
        for key, f in self.fields.items():
            if name == key or name.startswith(key + ".") or name.startswith(key + "["):
                if best is None or len(key) > len(best.name):
                    best = f
        return best

    def show(self, exc: InputError) -> Field | None:
        """Show ``exc`` next to its field (or on the general line); returns the field used."""
        field = self.field_for(exc.field)
        if field is not None:
            rest = exc.field[len(field.name):].lstrip(".")
            field.set_error(explain(exc) if not rest else f"{rest}: {explain(exc)}")
        else:
            self.general.value = html.escape(str(exc))
        return field

    def errors(self) -> dict[str, str]:
        """Field name → message, for the fields that show one (and ``""`` for the general line)."""
        out = {k: f.message for k, f in self.fields.items() if f.message}
        if self.general.value:
            out[""] = html.unescape(self.general.value)
        return out


class Progress(ipw.VBox):
    """A progress bar and a status line. ``start`` → ``update``* → ``done`` | ``fail``."""

    def __init__(self, **kwargs: Any) -> None:
        self.bar = ipw.FloatProgress(value=0, min=0, max=1, layout={"width": "420px"})
        self.status = ipw.HTML("")
        self.status.add_class("mlkkr-status")
        super().__init__(children=[ipw.HBox([self.bar, self.status])], **kwargs)
        self.add_class("mlkkr-progress")
        self.layout.display = "none"
        self.state = "idle"

    def start(self, message: str, total: float | None = None) -> None:
        self.layout.display = None
        self.state = "running"
        self._set_classes("mlkkr-progress-running")
        self.bar.bar_style = "info"
        self.bar.max = total if total else 1
        self.bar.value = 0 if total else 1  # no total: a full, striped "running" bar
        self.bar.style.bar_color = None
        self.status.value = html.escape(message)

    def update(self, value: float | None = None, message: str | None = None, total: float | None = None) -> None:
        if total is not None:
            self.bar.max = total
        if value is not None:
            self.bar.value = min(value, self.bar.max)
        if message is not None:
            self.status.value = html.escape(message)

    def done(self, message: str) -> None:
        self.state = "done"
        self._set_classes("mlkkr-progress-done")
        self.bar.bar_style = "success"
        self.bar.value = self.bar.max
        self.status.value = f'<span class="mlkkr-status-ok">{html.escape(message)}</span>'

    def fail(self, message: str) -> None:
        self.state = "failed"
        self._set_classes("mlkkr-progress-failed")
        self.bar.bar_style = "danger"
        self.bar.value = self.bar.max
        self.status.value = f'<span class="mlkkr-status-failed">{html.escape(message)}</span>'

    def _set_classes(self, cls: str) -> None:
        for c in ("mlkkr-progress-running", "mlkkr-progress-done", "mlkkr-progress-failed"):
            self.remove_class(c)
        self.add_class(cls)


def checked_submit(form: Form, progress: Progress, action: Callable[[], Any]) -> Any:
    """Clear ``form`` and run ``action`` (check, then submit); returns its result, or None when it raised: an
    :class:`InputError` is shown under its field, anything else on the form's general line, and ``progress``
    says that nothing was submitted."""
    form.clear()
    try:
        return action()
    except InputError as exc:
        form.show(exc)
        progress.fail("Not submitted: correct the field marked in red.")
    except Exception as exc:  # noqa: BLE001 - shown next to the button
        form.general.value = html.escape(f"{type(exc).__name__}: {exc}")
        progress.fail("Not submitted.")
    return None


def in_background(work: Callable[[], Any], progress: Progress | None = None,
                  on_error: Callable[[BaseException], None] | None = None, name: str = "mlkkr-app") -> threading.Thread:
    """Run ``work`` in a daemon thread; an exception goes to ``on_error`` or fails ``progress``."""

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - shown to the user, not swallowed
            if on_error is not None:
                on_error(exc)
            elif progress is not None:
                progress.fail(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], css_class: str = "mlkkr-table") -> str:
    """An HTML table; floats with 4 significant decimals."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
