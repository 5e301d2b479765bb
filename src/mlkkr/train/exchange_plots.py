"""Parity plots of predicted vs true exchange tensors (plotly; HTML always, PNG through kaleido).

Three panels, all in meV: J; the three D components; the six independent elements of S. One colour
per model (e.g. the e3nn network and the distance-only baseline), the diagonal y = x for reference.
PNG export needs a Chrome/Chromium for kaleido: ``BROWSER_PATH`` if set, else ``MLKKR_CHROMIUM``, else
the first of chromium / chromium-browser / google-chrome on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mlkkr.train.exchange_metrics import parts

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def parity_figure(true: np.ndarray, preds: dict[str, np.ndarray], title: str = "") -> Any:
    """A plotly figure: true (x) vs predicted (y) J, D, S in meV, one colour per model in ``preds``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t = parts(true)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("J (meV)", "D components (meV)", "S elements (meV)"),
                        horizontal_spacing=0.07)
    items = list(enumerate(preds.items()))
    for k, (name, pred) in reversed(items):  # the first model is drawn last, on top
        p = parts(pred)
        for col, key in enumerate(("J", "D", "S"), start=1):
            fig.add_trace(go.Scattergl(x=t[key], y=p[key], mode="markers", name=name, legendgroup=name,
                                       showlegend=col == 1, marker={"size": 4, "opacity": 0.55,
                                                                     "color": COLOURS[k % len(COLOURS)]}),
                          row=1, col=col)
    for col, key in enumerate(("J", "D", "S"), start=1):
        vals = np.concatenate([t[key]] + [parts(p)[key] for p in preds.values()])
        lo, hi = float(np.min(vals)), float(np.max(vals))
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "black", "width": 1,
                                                                               "dash": "dot"},
                                 showlegend=False, hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(title_text="true", row=1, col=col)
        fig.update_yaxes(title_text="predicted", row=1, col=col)
    fig.update_layout(title=title, width=1350, height=470, template="plotly_white", legend={"traceorder": "reversed"})
    return fig


def find_browser() -> str | None:
    """The Chrome/Chromium kaleido will use (see module doc), or None."""
    for cand in (os.environ.get("BROWSER_PATH"), os.environ.get("MLKKR_CHROMIUM")):
        if cand and Path(cand).exists():
            return cand
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def write_parity(fig: Any, folder: str | Path, stem: str = "parity") -> dict[str, str | None]:
    """Write ``stem.html`` and ``stem.png`` into ``folder``; the PNG entry is None (with the reason
    under ``png_error``) when no browser is available for kaleido."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / f"{stem}.html"
    fig.write_html(html, include_plotlyjs=True)  # self-contained: works offline
    out: dict[str, str | None] = {"html": str(html), "png": None}
    browser = find_browser()
    if browser is None:
        out["png_error"] = "no Chrome/Chromium found for kaleido (set BROWSER_PATH)"
        return out
    os.environ["BROWSER_PATH"] = browser
    png = folder / f"{stem}.png"
    try:
        fig.write_image(png, width=1350, height=470, scale=1)
        out["png"] = str(png)
    except Exception as exc:  # noqa: BLE001 - kaleido reports browser problems with many exception types
        out["png_error"] = f"PNG export failed: {exc}"
    return out
