"""Figures of the radial ML-ES model on real KKRimp data (plotly): a held-out element's ΔV(r), predicted vs KKRimp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlkkr.errors import InputError


def heldout_figure(records: Sequence[Any], element: str, config: Any = None, *, converged_only: bool = True) -> Any:
    """ΔV(r) of ``element``'s embedding predicted by the radial model fitted on every other element, against
    KKRimp: the impurity site and its first neighbour (when the cluster has one); the stored ΔV without the
    exact −2ΔZ/r term (top) and the full ΔV for r ≥ 0.05 Å (bottom), on the KKR radial mesh."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from mlkkr.models.potential_radial import RadialPotentialModel

    held = next((r for r in records if r.impurity == element), None)
    if held is None:
        raise InputError("element", element, allowed=sorted({r.impurity for r in records}))
    train = [r for r in records if element not in r.impurity_elements and (r.converged or not converged_only)]
    model = RadialPotentialModel(config).fit(train)
    pred = model.predict_atoms(held)
    full = model.predict_total(held)
    sites = [int(held.defects[0])] + ([k for k in range(len(held.z)) if k not in held.defects][:1])
    names = [f"{held.species[k]} at {np.linalg.norm(held.positions[k]):.2f} Å" for k in sites]
    fig = make_subplots(rows=2, cols=len(sites), vertical_spacing=0.14,
                        subplot_titles=[f"{n}: stored ΔV (without −2ΔZ/r)" for n in names]
                        + [f"{n}: full ΔV, r ≥ 0.05 Å" for n in names])
    for c, k in enumerate(sites, start=1):
        far = held.r[k] >= 0.05
        for row, (x, true, guess) in enumerate(((held.r[k], held.delta_v[k], pred[k]),
                                                (held.r[k][far], held.delta_v_total(k)[far], full[k][far])), start=1):
            first = c == 1 and row == 1
            fig.add_trace(go.Scatter(x=x, y=true, name="KKRimp", mode="lines", line={"color": "#2b6cb0"},
                                     showlegend=first), row=row, col=c)
            fig.add_trace(go.Scatter(x=x, y=guess, name=f"ML-ES ({element} held out)", mode="lines",
                                     line={"color": "#dd6b20", "dash": "dash"}, showlegend=first), row=row, col=c)
            fig.update_xaxes(title_text="r (Å)", type="log", row=row, col=c)
            fig.update_yaxes(title_text="eV", row=row, col=c)
    fig.update_layout(title=f"{element} in {held.host}, held out: ΔV(r) on the KKR radial mesh",
                      template="plotly_white", height=720, width=520 * len(sites) + 200)
    return fig
