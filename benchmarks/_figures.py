"""Writing a benchmark's plotly figure: an HTML file always, a PNG when kaleido finds a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def save_figure(fig: Any, stem: str) -> None:
    """docs/figures/<stem>.html (plotly from its CDN) and docs/figures/<stem>.png."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.write_html(FIGURES / f"{stem}.html", include_plotlyjs="cdn")
    try:
        fig.write_image(FIGURES / f"{stem}.png")
    except Exception as exc:  # noqa: BLE001 - kaleido needs a browser (BROWSER_PATH); the HTML is written regardless
        print(f"(no PNG: {exc})")
