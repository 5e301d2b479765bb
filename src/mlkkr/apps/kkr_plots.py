"""Figures and tables of real JuKKR results (the summaries of :mod:`mlkkr.aiida.kkr_results`), in plotly.

Used by the KKR launcher app and the notebooks: convergence (rms per iteration, log scale), the DOS,
ΔV(r) of the impurity on its radial mesh, J_ij against distance, and a table of the numbers a KKR user
reads first (E_F, total energy, moments, charges).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlkkr.apps.widgets import html_table

_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 50}}


def convergence_figure(summary: dict[str, Any]):
    """rms error of the potential per iteration (log scale), with the criterion when known."""
    import plotly.graph_objects as go

    rms = summary.get("rms") or []
    fig = go.Figure(go.Scatter(x=list(range(1, len(rms) + 1)), y=rms, mode="lines+markers", name="rms",
                               marker={"size": 5}))
    if summary.get("criterion"):
        fig.add_hline(y=summary["criterion"], line={"dash": "dash", "color": "#e53e3e"},
                      annotation_text="criterion")
    code = "KKRhost" if summary["kind"] == "host" else "KKRimp"
    fig.update_layout(title=f"Convergence ({len(rms)} {code} iterations)", xaxis_title="iteration",
                      yaxis_title="rms error of the potential", yaxis_type="log", height=340, width=640, **_LAYOUT)
    return fig


def dos_figure(summary: dict[str, Any]):
    """DOS against E − E_F (eV): total, and spin up / down (down drawn negative) when spin-polarised."""
    import plotly.graph_objects as go

    dos = summary["dos"]
    e = dos["energy_ev"]
    fig = go.Figure()
    if dos.get("spin_per_ev"):
        up, down = dos["spin_per_ev"]
        fig.add_trace(go.Scatter(x=e, y=up, name="spin 1", mode="lines"))
        fig.add_trace(go.Scatter(x=e, y=[-v for v in down], name="spin 2", mode="lines"))
    else:
        fig.add_trace(go.Scatter(x=e, y=dos["total_per_ev"], name="total", mode="lines"))
    fig.add_vline(x=0, line={"dash": "dot", "color": "#718096"}, annotation_text="E_F")
    fig.update_layout(title=f"DOS of {summary.get('formula', '')}", xaxis_title="E − E_F (eV)",
                      yaxis_title="DOS (states/eV)", height=340, width=640, **_LAYOUT)
    return fig


def delta_v_figure(summary: dict[str, Any]):
    """ΔV(r) = V_imp − V_host (eV) on the radial mesh of each cluster atom (nuclear −2Z/r term excluded)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for k, atom in enumerate(summary["delta_v"]):
        name = f"{k}: {atom['species']} (was {atom['host_species']})"
        fig.add_trace(go.Scatter(x=atom["r_angstrom"], y=atom["delta_v_ev"], mode="lines", name=name))
    fig.update_layout(title="Impurity potential ΔV(r) on the KKR radial mesh", xaxis_title="r (Å)",
                      yaxis_title="ΔV (eV), without −2ΔZ/r", height=360, width=700, **_LAYOUT)
    return fig


def jij_figure(summary: dict[str, Any]):
    """J_ij (meV, positive: ferromagnetic) of every pair against its distance, shell averages as a line."""
    import plotly.graph_objects as go

    pairs, shells = summary["pairs"], summary["shells"]
    fig = go.Figure(go.Scatter(x=[p["distance_angstrom"] for p in pairs], y=[p["J_meV"] for p in pairs],
                               mode="markers", name="pairs", text=[f"{p['i']}–{p['j']}" for p in pairs]))
    fig.add_trace(go.Scatter(x=[s["distance_angstrom"] for s in shells], y=[s["J_meV"] for s in shells],
                             mode="lines", name="shell average"))
    fig.add_hline(y=0, line={"color": "#a0aec0", "width": 1})
    fig.update_layout(title="Exchange J_ij against distance", xaxis_title="distance (Å)", yaxis_title="J_ij (meV)",
                      height=360, width=700, **_LAYOUT)
    return fig


def _fmt(value: Any, digits: int = 6) -> str:
    if value is None:
        return "–"
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(_fmt(v, 4) for v in value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def summary_table_html(summary: dict[str, Any]) -> str:
    """The headline numbers of a summary as an HTML table (class ``mlkkr-kkr-summary``)."""
    rows: list[tuple[str, Any]] = [("work chain", f"{summary['kind']} <{summary['pk']}> {summary.get('label') or ''}"),
                                   ("converged", summary.get("converged"))]
    if summary.get("rms"):
        rows.append(("iterations, last rms", f"{len(summary['rms'])}, {summary['rms'][-1]:.3g}"))
    if summary["kind"] == "host":
        rows += [("E_F (Ry)", summary.get("fermi_energy_ry")), ("E_F (eV)", summary.get("fermi_energy_ev")),
                 ("total energy (Ry)", summary.get("total_energy_ry")),
                 ("spin moment per site (μB)", summary.get("spin_moment_per_atom")),
                 ("valence charge per site (e)", summary.get("charge_valence_per_atom"))]
    elif summary["kind"] == "impurity":
        rows += [("impurity Z, site, cluster radius (Å)",
                  f"{_fmt(summary.get('impurity_z'))}, {summary.get('site')}, {summary.get('radius_angstrom')}"),
                 ("cluster atoms", summary.get("n_cluster_atoms")),
                 ("spin moment (μB)", summary.get("total_spin_moment")),
                 ("valence charge per atom (e)", summary.get("charge_valence_per_atom"))]
    else:
        rows += [(f"J, shell at {s['distance_angstrom']:.3f} Å (×{s['n']}) (meV)", s["J_meV"])
                 for s in summary.get("shells", [])[:6]]
    return html_table(["quantity", "value"], [(k, _fmt(v)) for k, v in rows], css_class="mlkkr-kkr-summary")
